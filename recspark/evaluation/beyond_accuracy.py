"""Beyond-accuracy metrics of recommendation lists: coverage, entropy, novelty, popularity,
intra-list diversity and serendipity. Each function runs one Spark job and returns a float;
its ``*_by`` twin returns the per-group values as a frame (``group_cols`` + ``value``).

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


def item_choice_popularity(
    train_interactions: DataFrame, user_col: str = "user_id", item_col: str = "item_id"
) -> DataFrame:
    """Per item of ``train_interactions``: ``n_users`` (distinct users who interacted with it)
    and ``popularity`` = ``n_users`` / distinct (user, item) pairs: the item's share of all
    interactions, Castells et al.'s *choice* model used by MS Recommenders' ``novelty``.
    Same columns as :func:`item_popularity`, so the ``*_by`` functions accept either."""
    require_columns(train_interactions, [user_col, item_col], "train_interactions")
    pairs = (
        train_interactions.where(F.col(user_col).isNotNull() & F.col(item_col).isNotNull())
        .select(user_col, item_col)
        .distinct()
    )
    n_pairs = pairs.agg(F.count(F.lit(1)).alias("_n_pairs"))
    return (
        pairs.groupBy(item_col)
        .agg(F.count(F.lit(1)).alias("n_users"))
        .crossJoin(F.broadcast(n_pairs))
        .select(item_col, "n_users", (F.col("n_users") / F.col("_n_pairs")).alias("popularity"))
    )


NOVELTY_MODELS = {"discovery": item_popularity, "choice": item_choice_popularity}


def novelty(
    recommendations: DataFrame,
    train_interactions: DataFrame,
    user_col: str = "user_id",
    item_col: str = "item_id",
    model: str = "discovery",
) -> float:
    """Mean self-information, in bits, of recommended items: the mean over recommendation rows of
    ``-log2 p(i)``.

    ``model="discovery"`` (default): ``p(i)`` = share of training users who interacted with item
    i (:func:`item_popularity`; Zhou et al. 2010). ``model="choice"``: ``p(i)`` = item i's share
    of all distinct training (user, item) pairs (:func:`item_choice_popularity`), MS
    Recommenders' ``novelty`` (Castells et al. 2011), equal to theirs whenever every recommended
    item was seen in training.

    Items unseen in training have no finite self-information: their rows are left out of the
    mean (MS Recommenders counts them as 0 in the mean instead; use :func:`catalog_coverage` or
    :func:`average_recommendation_popularity` to see them). NaN when no recommended item was
    seen in training.
    """
    if model not in NOVELTY_MODELS:
        raise ValueError(f"model must be one of {sorted(NOVELTY_MODELS)}, got {model!r}")
    require_columns(recommendations, [user_col, item_col], "recommendations")
    require_same_types(
        recommendations, train_interactions, [item_col], "recommendations", "train_interactions"
    )
    popularity = NOVELTY_MODELS[model](train_interactions, user_col, item_col)
    return _only_value(novelty_by(recommendations, [], popularity, item_col))


def novelty_by(
    recommendations: DataFrame, group_cols: Sequence[str], popularity: DataFrame, item_col: str
) -> DataFrame:
    """:func:`novelty` per group, given :func:`item_popularity` (discovery) or
    :func:`item_choice_popularity` (choice): ``group_cols`` + ``value``."""
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


RELEVANCE = "_relevance"  # the relevance column serendipity_by reads


def serendipity(
    recommendations: DataFrame,
    train_interactions: DataFrame,
    item_vectors: DataFrame,
    vector_col: str = "features",
    user_col: str = "user_id",
    item_col: str = "item_id",
    relevance_col: str | None = None,
    truth: DataFrame | None = None,
) -> float:
    """Serendipity as MS Recommenders' ``serendipity`` with ``item_sim_measure=
    "item_feature_vector"`` (Zhang et al. 2012, "Auralist"): the mean over users of the mean over
    their recommended items of

        ``(1 - mean over the user's training items h of cos(v_j, v_h)) * relevance(u, j)``.

    ``relevance``: ``relevance_col`` of ``recommendations``, or 1 when the (user, item) pair is
    in ``truth`` and 0 otherwise, or, with neither, 1 for every item (MS Recommenders' default,
    which makes this "unexpectedness"). Training pairs count once. As there, a pair without a
    similarity counts as 0: an item without a vector (or with a zero vector) is dissimilar to
    every other item, and users without training items are left out. Recommended items are
    expected to be unseen in training (MS Recommenders raises otherwise; here such an item simply
    counts its self-similarity 1). ``item_vectors`` maps item -> vector (``array<float|double>``
    or an ML ``Vector``); it is broadcast. NaN when no user is left.

    The mean of cosines is the dot product of ``v_j`` with the user's mean unit training vector,
    so the cost is (training pairs + recommendation rows) x the vector dimension.
    """
    if relevance_col is not None and truth is not None:
        raise ValueError("give relevance_col or truth, not both")
    require_columns(recommendations, [user_col, item_col] + ([relevance_col] if relevance_col else []),
                    "recommendations")
    require_columns(item_vectors, [item_col, vector_col], "item_vectors")
    require_same_types(recommendations, train_interactions, [user_col, item_col], "recommendations",
                       "train_interactions")
    require_same_types(recommendations, item_vectors, [item_col], "recommendations", "item_vectors")
    if truth is not None:
        require_same_types(recommendations, truth, [user_col, item_col], "recommendations", "truth")
    rated = with_relevance(recommendations, user_col, item_col, relevance_col, truth)
    return _only_value(serendipity_by(rated, [], train_interactions, item_vectors, vector_col, user_col, item_col))


def with_relevance(
    recommendations: DataFrame,
    user_col: str,
    item_col: str,
    relevance_col: str | None = None,
    truth: DataFrame | None = None,
) -> DataFrame:
    """``recommendations`` with the :data:`RELEVANCE` column :func:`serendipity_by` reads:
    ``relevance_col`` as a double, else 1.0 for pairs in ``truth`` and 0.0 for the others, else
    1.0."""
    if relevance_col is not None:
        return recommendations.withColumn(RELEVANCE, F.col(relevance_col).cast("double"))
    if truth is None:
        return recommendations.withColumn(RELEVANCE, F.lit(1.0))
    relevant = (
        truth.select(user_col, item_col).distinct().withColumn(RELEVANCE, F.lit(1.0))
    )
    return recommendations.join(relevant, [user_col, item_col], "left").withColumn(
        RELEVANCE, F.coalesce(F.col(RELEVANCE), F.lit(0.0))
    )


def serendipity_by(
    recommendations: DataFrame,
    group_cols: Sequence[str],
    train_interactions: DataFrame,
    item_vectors: DataFrame,
    vector_col: str,
    user_col: str,
    item_col: str,
) -> DataFrame:
    """:func:`serendipity` per group of ``recommendations`` that carry the :data:`RELEVANCE`
    column (see :func:`with_relevance`): ``group_cols`` + ``value``."""
    history = (
        train_interactions.where(F.col(user_col).isNotNull() & F.col(item_col).isNotNull())
        .select(user_col, item_col)
        .distinct()
    )
    units = F.broadcast(_unit_vectors(item_vectors, item_col, vector_col))
    history_sizes = history.groupBy(user_col).agg(F.count(F.lit(1)).cast("double").alias("_n_history"))
    # The sum of similarities of an item to the user's history is its dot product with the sum
    # of the history's unit vectors (the user's profile): one array per user, no row per dimension.
    profiles = history.join(units, item_col, "inner").groupBy(user_col).agg(
        F.collect_list("_unit").alias("_units")
    ).select(user_col, F.aggregate(
        F.slice("_units", 2, 1 << 30), F.col("_units")[0], lambda total, x: F.zip_with(total, x, lambda a, b: a + b)
    ).alias("_profile"))
    listed = recommendations.select(*group_cols, user_col, item_col, RELEVANCE).join(
        history_sizes, user_col, "inner"
    )
    dot = F.aggregate(F.zip_with("_unit", "_profile", lambda a, b: a * b), F.lit(0.0), lambda total, x: total + x)
    similarity_sums = (
        listed.select(*group_cols, user_col, item_col)
        .distinct()
        .join(units, item_col, "inner")
        .join(profiles, user_col, "inner")
        .select(*group_cols, user_col, item_col, dot.alias("_similarity_sum"))
    )
    mean_similarity = F.coalesce(F.col("_similarity_sum"), F.lit(0.0)) / F.col("_n_history")
    per_user = (
        listed.join(similarity_sums, [*group_cols, user_col, item_col], "left")
        .groupBy(*group_cols, user_col)
        .agg(F.avg((1.0 - mean_similarity) * F.col(RELEVANCE)).alias("_serendipity"))
    )
    return per_user.groupBy(*group_cols).agg(F.avg("_serendipity").alias(VALUE))
