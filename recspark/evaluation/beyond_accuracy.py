"""Beyond-accuracy metrics of recommendation lists: coverage, entropy, novelty, popularity and
intra-list diversity. Each function runs one Spark job and returns a float.

``recommendations`` has at least the user and item columns (one row per recommended item, as
produced for ranking evaluation); ranks and scores are not used.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.evaluation._checks import require_columns, require_same_types


# The metric column of the ``*_by`` functions' frames.
VALUE = "value"


def _as_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _only_value(frame: DataFrame) -> float:
    """The ``value`` of a ``*_by`` frame computed without groups (NaN when it has no row or null)."""
    row = frame.first()
    return math.nan if row is None else _as_float(row[VALUE])


def catalog_coverage(
    recommendations: DataFrame, n_catalog_items: int, item_col: str = "item_id"
) -> float:
    """Share of the catalog recommended to at least one user: distinct recommended items /
    ``n_catalog_items`` (MS Recommenders' ``catalog_coverage``, with the catalog size given
    instead of taken from the training frame). Null items are not counted."""
    require_columns(recommendations, [item_col], "recommendations")
    return _only_value(catalog_coverage_by(recommendations, [], n_catalog_items, item_col))


def catalog_coverage_by(
    recommendations: DataFrame, group_cols: Sequence[str], n_catalog_items: int, item_col: str
) -> DataFrame:
    """:func:`catalog_coverage` per group: ``group_cols`` + ``value``."""
    if n_catalog_items < 1:
        raise ValueError(f"n_catalog_items must be positive, got {n_catalog_items}")
    return recommendations.groupBy(*group_cols).agg(
        (F.countDistinct(item_col) / F.lit(float(n_catalog_items))).alias(VALUE)
    )


def distributional_coverage(recommendations: DataFrame, item_col: str = "item_id") -> float:
    """Shannon entropy, in bits, of how recommendations spread over items (MS Recommenders'
    ``distributional_coverage``): ``-sum_i p(i) log2 p(i)`` with ``p(i)`` = rows recommending
    item i / all recommendation rows. 0 when one item fills every list, ``log2(n)`` when n items
    are recommended equally often; NaN for an empty frame. Rows with a null item are ignored.

    Computed as ``log2(N) - sum_i c_i log2(c_i) / N`` from per-item counts ``c_i`` (N = sum c_i).
    """
    require_columns(recommendations, [item_col], "recommendations")
    return _only_value(distributional_coverage_by(recommendations, [], item_col))


def distributional_coverage_by(recommendations: DataFrame, group_cols: Sequence[str], item_col: str) -> DataFrame:
    """:func:`distributional_coverage` per group: ``group_cols`` + ``value`` (null: no rows)."""
    counts = (
        recommendations.where(F.col(item_col).isNotNull())
        .groupBy(*group_cols, item_col)
        .agg(F.count(F.lit(1)).cast("double").alias("n"))
    )
    total, n_log_n = F.sum("n"), F.sum(F.col("n") * F.log2("n"))
    return counts.groupBy(*group_cols).agg((F.log2(total) - n_log_n / total).alias(VALUE))


def item_popularity(
    train_interactions: DataFrame, user_col: str = "user_id", item_col: str = "item_id"
) -> DataFrame:
    """Per item of ``train_interactions``: ``n_users`` (distinct users who interacted with it)
    and ``popularity`` = ``n_users`` / distinct users in ``train_interactions``, in (0, 1].
    Repeated interactions of one user with one item count once."""
    require_columns(train_interactions, [user_col, item_col], "train_interactions")
    pairs = train_interactions.where(
        F.col(user_col).isNotNull() & F.col(item_col).isNotNull()
    ).select(user_col, item_col)
    n_train_users = pairs.agg(F.countDistinct(user_col).alias("_n_train_users"))
    return (
        pairs.groupBy(item_col)
        .agg(F.countDistinct(user_col).alias("n_users"))
        .crossJoin(F.broadcast(n_train_users))
        .select(item_col, "n_users", (F.col("n_users") / F.col("_n_train_users")).alias("popularity"))
    )


def novelty(
    recommendations: DataFrame,
    train_interactions: DataFrame,
    user_col: str = "user_id",
    item_col: str = "item_id",
) -> float:
    """Mean self-information, in bits, of recommended items: the mean over recommendation rows of
    ``-log2 p(i)`` with ``p(i)`` = share of training users who interacted with item i (see
    :func:`item_popularity`; Zhou et al. 2010). MS Recommenders' ``novelty`` instead uses
    ``p(i)`` = item i's share of all training interactions (Castells' choice model).

    Items unseen in training have no finite self-information: their rows are left out of the
    mean (use :func:`catalog_coverage` or :func:`average_recommendation_popularity` to see them).
    NaN when no recommended item was seen in training.
    """
    require_columns(recommendations, [user_col, item_col], "recommendations")
    require_same_types(
        recommendations, train_interactions, [item_col], "recommendations", "train_interactions"
    )
    popularity = item_popularity(train_interactions, user_col, item_col)
    return _only_value(novelty_by(recommendations, [], popularity, item_col))


def novelty_by(
    recommendations: DataFrame, group_cols: Sequence[str], popularity: DataFrame, item_col: str
) -> DataFrame:
    """:func:`novelty` per group, given :func:`item_popularity`: ``group_cols`` + ``value``."""
    return (
        recommendations.select(*group_cols, item_col)
        .join(popularity, item_col, "inner")
        .groupBy(*group_cols)
        .agg(F.avg(-F.log2("popularity")).alias(VALUE))
    )


def average_recommendation_popularity(
    recommendations: DataFrame,
    train_interactions: DataFrame,
    user_col: str = "user_id",
    item_col: str = "item_id",
) -> float:
    """Popularity bias: mean over recommendation rows of the recommended item's training
    popularity (share of training users who interacted with it, :func:`item_popularity`; items
    unseen in training count as 0). Between 0 and 1; higher means more popular items. This is
    ARP (Abdollahpouri et al. 2019) with popularity normalised by the number of training users
    and averaged over rows, which equals the per-user average when all lists have one length.
    NaN for an empty frame.
    """
    require_columns(recommendations, [user_col, item_col], "recommendations")
    require_same_types(
        recommendations, train_interactions, [item_col], "recommendations", "train_interactions"
    )
    popularity = item_popularity(train_interactions, user_col, item_col)
    return _only_value(average_recommendation_popularity_by(recommendations, [], popularity, item_col))


def average_recommendation_popularity_by(
    recommendations: DataFrame, group_cols: Sequence[str], popularity: DataFrame, item_col: str
) -> DataFrame:
    """:func:`average_recommendation_popularity` per group, given :func:`item_popularity`:
    ``group_cols`` + ``value``."""
    return (
        recommendations.select(*group_cols, item_col)
        .join(popularity, item_col, "left")
        .groupBy(*group_cols)
        .agg(F.avg(F.coalesce("popularity", F.lit(0.0))).alias(VALUE))
    )


def _unit_vectors(
    item_vectors: DataFrame, item_col: str, vector_col: str
) -> DataFrame:
    """(item, unit-length array<double>); zero, null or empty vectors are dropped."""
    vector = F.col(vector_col)
    if isinstance(item_vectors.schema[vector_col].dataType, VectorUDT):
        vector = vector_to_array(vector)
    vectors = item_vectors.select(item_col, vector.cast("array<double>").alias("_vector"))
    norm = F.sqrt(F.aggregate("_vector", F.lit(0.0), lambda total, x: total + x * x))
    return (
        vectors.withColumn("_norm", norm)
        .where(F.col("_norm") > 0)
        .select(item_col, F.transform("_vector", lambda x: x / F.col("_norm")).alias("_unit"))
    )


def intra_list_diversity(
    recommendations: DataFrame,
    item_vectors: DataFrame,
    vector_col: str = "features",
    user_col: str = "user_id",
    item_col: str = "item_id",
) -> float:
    """Mean over users of the mean pairwise cosine distance ``1 - cos(v_i, v_j)`` between the
    distinct items of the user's list (MS Recommenders' ``diversity`` with
    ``item_sim_measure="item_feature_vector"``).

    ``item_vectors`` maps item -> vector (``array<float|double>`` or an ML ``Vector``), one
    dimension for all items; it is broadcast, so it should be small (item embeddings or factors).
    Recommended items without a vector (or with a zero vector) are left out; users with fewer
    than two such items have no pairs and are left out of the mean. Distances lie in [0, 2].
    NaN when no user has a pair.
    """
    require_columns(recommendations, [user_col, item_col], "recommendations")
    require_columns(item_vectors, [item_col, vector_col], "item_vectors")
    require_same_types(recommendations, item_vectors, [item_col], "recommendations", "item_vectors")
    return _only_value(intra_list_diversity_by(recommendations, [], item_vectors, vector_col, user_col, item_col))


def intra_list_diversity_by(
    recommendations: DataFrame, group_cols: Sequence[str], item_vectors: DataFrame, vector_col: str, user_col: str,
    item_col: str,
) -> DataFrame:
    """:func:`intra_list_diversity` per group (each group's lists are its users' rows):
    ``group_cols`` + ``value``."""
    list_key = [*group_cols, user_col]
    listed = (
        recommendations.select(*list_key, item_col)
        .distinct()
        .join(F.broadcast(_unit_vectors(item_vectors, item_col, vector_col)), item_col, "inner")
    )
    left = listed.select(*list_key, F.col(item_col).alias("_item_a"), F.col("_unit").alias("_a"))
    right = listed.select(*list_key, F.col(item_col).alias("_item_b"), F.col("_unit").alias("_b"))
    cosine = F.aggregate(
        F.zip_with("_a", "_b", lambda x, y: x * y), F.lit(0.0), lambda total, xy: total + xy
    )
    per_user = (
        left.join(right, list_key, "inner")
        .where(F.col("_item_a") < F.col("_item_b"))
        .groupBy(*list_key)
        .agg(F.avg(1.0 - cosine).alias("_diversity"))
    )
    return per_user.groupBy(*group_cols).agg(F.avg("_diversity").alias(VALUE))
