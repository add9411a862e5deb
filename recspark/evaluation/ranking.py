"""Ranking metrics of top-k recommendation lists against held-out truth, computed in Spark.

Definitions follow Microsoft Recommenders' ``recommenders.evaluation.python_evaluation`` (which
follows Spark MLlib's ``RankingMetrics``) with binary relevance. For a user with recommended
positions ``1..n`` (position 1 is best), relevant set ``R`` and ``hits@k`` = relevant items at
positions ``<= k``:

* ``precision@k = hits@k / k`` (also when the list is shorter than k, so it can stay below 1);
* ``recall@k = hits@k / |R|``;
* ``f1@k`` = the harmonic mean of the user's precision@k and recall@k, ``2 hits@k / (k + |R|)``
  (0 without a hit), averaged over users like the others (so it is not the harmonic mean of the
  averaged precision and recall);
* ``ndcg@k = DCG@k / IDCG@k`` with ``DCG@k = sum over hits at position p <= k of 1 / log2(p + 1)``
  and ``IDCG@k = sum_{i=1..min(|R|, k)} 1 / log2(i + 1)``. (MS Recommenders' ``ndcg_at_k`` uses
  the natural log by default; for binary relevance the base cancels out.);
* ``map@k = sum over hits at position p <= k of precision@p / min(|R|, k)`` (MS Recommenders'
  ``map_at_k``, MLlib's ``meanAveragePrecisionAt``);
* ``map = sum over hits at any provided position p of precision@p / |R|``: the whole list is
  used, not only the top k (MLlib's ``meanAveragePrecision``; MS Recommenders' ``map`` cuts the
  list at k first);
* ``hit_rate@k = 1`` if ``hits@k > 0`` else 0;
* ``mrr@k = 1 / (position of the first hit)`` if that position is ``<= k``, else 0.

Each metric is averaged over the users present in both frames (``n_users``): users with
recommendations but no relevant truth items, and truth users without recommendations, are left
out, as MS Recommenders does. ``user_coverage`` reports the share of truth users (users with at
least one relevant item) that received recommendations, so the second exclusion stays visible.

Positions come from the rank column: per user, rows are ordered by (rank, item id) and numbered
1, 2, ... So ranks need not be contiguous, ties in rank are broken by the smaller item id, a
(user, item) pair listed twice counts once at its best rank, and rows with a null user, item or
rank are ignored.
"""
from __future__ import annotations

import math
from numbers import Integral
from typing import Any

from pyspark.sql import Column, DataFrame, Row, Window
from pyspark.sql import functions as F

from recspark.evaluation._checks import require_columns, require_same_types

# Per-user metric column of user_ranking_metrics -> key in the ranking_metrics result.
RANKING_METRIC_KEYS = {
    "precision_at_k": "precision@k",
    "recall_at_k": "recall@k",
    "f1_at_k": "f1@k",
    "ndcg_at_k": "ndcg@k",
    "map_at_k": "map@k",
    "map": "map",
    "hit_rate_at_k": "hit_rate@k",
    "mrr_at_k": "mrr@k",
}

_RANK = "_best_rank"
_POSITION = "_position"
_IS_HIT = "_is_hit"
_HITS_SO_FAR = "_hits_so_far"
_DCG_AT_K = "_dcg_at_k"
_PRECISION_SUM_AT_K = "_precision_sum_at_k"
_PRECISION_SUM = "_precision_sum"
_FIRST_HIT_POSITION = "_first_hit_position"
_KEY = "_group_user"
_GROUP = "_group"


def _discount(position: Column) -> Column:
    """NDCG gain of a hit at ``position`` (1-based): 1 / log2(position + 1)."""
    return 1.0 / F.log2(position + 1)


def relevant_items(
    truth: DataFrame,
    user_col: str = "user_id",
    item_col: str = "item_id",
    relevance_col: str | None = None,
    relevance_threshold: float | None = None,
) -> DataFrame:
    """Distinct (user, item) pairs of ``truth`` that count as relevant.

    Without ``relevance_col`` every truth row is relevant; with it, only rows whose relevance is
    ``>= relevance_threshold`` (null and NaN relevance are never relevant). Rows with a null user
    or item are dropped.
    """
    if relevance_col is not None:
        relevance = F.col(relevance_col).cast("double")
        truth = truth.where((relevance >= relevance_threshold) & ~F.isnan(relevance))
    return (
        truth.where(F.col(user_col).isNotNull() & F.col(item_col).isNotNull())
        .select(user_col, item_col)
        .distinct()
    )


def _list_statistics(
    recommendations: DataFrame,
    relevant: DataFrame,
    k: int,
    user_col: str,
    item_col: str,
    rank_col: str,
) -> DataFrame:
    """Per recommended user: list length, hits@k and the sums the metrics are built from."""
    best_ranks = (
        recommendations.where(
            F.col(user_col).isNotNull() & F.col(item_col).isNotNull() & F.col(rank_col).isNotNull()
        )
        .groupBy(user_col, item_col)
        .agg(F.min(rank_col).alias(_RANK))
    )
    flagged = best_ranks.join(
        relevant.withColumn(_IS_HIT, F.lit(True)), [user_col, item_col], "left"
    )
    in_list_order = Window.partitionBy(user_col).orderBy(_RANK, item_col)
    up_to_here = in_list_order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    ranked = flagged.select(
        user_col,
        F.row_number().over(in_list_order).alias(_POSITION),
        F.col(_IS_HIT).isNotNull().alias(_IS_HIT),
        F.count(_IS_HIT).over(up_to_here).alias(_HITS_SO_FAR),
    )
    hit = F.col(_IS_HIT)
    hit_in_top_k = hit & (F.col(_POSITION) <= k)
    precision_at_position = F.col(_HITS_SO_FAR) / F.col(_POSITION)
    return ranked.groupBy(user_col).agg(
        F.count(F.lit(1)).alias("n_recommended"),
        F.count(F.when(hit_in_top_k, True)).alias("hits_at_k"),
        F.sum(F.when(hit_in_top_k, _discount(F.col(_POSITION))).otherwise(0.0)).alias(_DCG_AT_K),
        F.sum(F.when(hit_in_top_k, precision_at_position).otherwise(0.0)).alias(_PRECISION_SUM_AT_K),
        F.sum(F.when(hit, precision_at_position).otherwise(0.0)).alias(_PRECISION_SUM),
        F.min(F.when(hit_in_top_k, F.col(_POSITION))).alias(_FIRST_HIT_POSITION),
    )


def _check_inputs(
    recommendations: DataFrame,
    truth: DataFrame,
    k: int,
    user_col: str,
    item_col: str,
    rank_col: str,
    relevance_col: str | None,
    relevance_threshold: float | None,
) -> None:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if (relevance_col is None) != (relevance_threshold is None):
        raise ValueError("relevance_col and relevance_threshold must be given together")
    require_columns(recommendations, [user_col, item_col, rank_col], "recommendations")
    require_columns(truth, [user_col, item_col] + ([relevance_col] if relevance_col else []), "truth")
    require_same_types(recommendations, truth, [user_col, item_col], "recommendations", "truth")


def user_ranking_metrics(
    recommendations: DataFrame,
    truth: DataFrame,
    k: int,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rank_col: str = "rank",
    relevance_col: str | None = None,
    relevance_threshold: float | None = None,
) -> DataFrame:
    """One row per user found in either frame, with that user's ranking metrics at ``k``.

    Columns: the user column; ``n_relevant`` (null when the user has no relevant truth item);
    ``n_recommended`` (distinct recommended items over the whole list, null when the user got
    none); booleans ``in_truth`` and ``in_recommendations``; then ``hits_at_k`` and the metric
    columns of :data:`RANKING_METRIC_KEYS`, all null unless the user is in both frames. Metric
    definitions and the position rule are in the module docstring.
    """
    _check_inputs(
        recommendations, truth, k, user_col, item_col, rank_col, relevance_col, relevance_threshold
    )
    return _user_metrics(
        recommendations, truth, int(k), user_col, item_col, rank_col, relevance_col, relevance_threshold
    )


def _user_metrics(
    recommendations: DataFrame,
    truth: DataFrame,
    k: int,
    user_col: str,
    item_col: str,
    rank_col: str,
    relevance_col: str | None,
    relevance_threshold: float | None,
) -> DataFrame:
    """:func:`user_ranking_metrics` without the input checks."""
    relevant = relevant_items(truth, user_col, item_col, relevance_col, relevance_threshold)
    relevant_counts = relevant.groupBy(user_col).agg(F.count(F.lit(1)).alias("n_relevant"))
    lists = _list_statistics(recommendations, relevant, k, user_col, item_col, rank_col)
    joined = lists.join(relevant_counts, user_col, "full_outer")

    in_truth = F.col("n_relevant").isNotNull()
    in_recommendations = F.col("n_recommended").isNotNull()
    hits_at_k = F.col("hits_at_k")
    n_relevant = F.col("n_relevant")
    ideal_cutoff = F.least(n_relevant, F.lit(k))
    ideal_dcg = F.aggregate(
        F.sequence(F.lit(1), ideal_cutoff), F.lit(0.0), lambda total, i: total + _discount(i)
    )
    metrics = {
        "precision_at_k": hits_at_k / k,
        "recall_at_k": hits_at_k / n_relevant,
        "f1_at_k": 2.0 * hits_at_k / (n_relevant + k),
        "ndcg_at_k": F.col(_DCG_AT_K) / ideal_dcg,
        "map_at_k": F.col(_PRECISION_SUM_AT_K) / ideal_cutoff,
        "map": F.col(_PRECISION_SUM) / n_relevant,
        "hit_rate_at_k": (hits_at_k > 0).cast("double"),
        "mrr_at_k": F.coalesce(1.0 / F.col(_FIRST_HIT_POSITION), F.lit(0.0)),
    }
    in_both = in_truth & in_recommendations
    return joined.select(
        user_col,
        "n_relevant",
        "n_recommended",
        in_truth.alias("in_truth"),
        in_recommendations.alias("in_recommendations"),
        F.when(in_both, hits_at_k).alias("hits_at_k"),
        *[F.when(in_both, value).alias(name) for name, value in metrics.items()],
    )


def _as_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def ranking_metrics(
    recommendations: DataFrame,
    truth: DataFrame,
    k: int,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rank_col: str = "rank",
    relevance_col: str | None = None,
    relevance_threshold: float | None = None,
) -> dict[str, float]:
    """Ranking metrics at ``k``, averaged over users present in both frames.

    Args:
        recommendations: (user, item, rank) rows; rank 1 is best. Other columns are ignored.
        truth: held-out (user, item[, relevance]) rows. User and item columns must have the same
            types in both frames (strings or integers).
        k: cut-off, a positive integer.
        relevance_col, relevance_threshold: given together, only truth rows with
            ``relevance >= threshold`` are relevant; otherwise every truth row is.

    Returns:
        ``precision@k, recall@k, f1@k, ndcg@k, map@k, map, hit_rate@k, mrr@k`` (definitions in the
        module docstring, NaN when no user is in both frames), ``n_users`` (users in both frames)
        and ``user_coverage`` (``n_users`` / users with at least one relevant truth item, NaN
        when there are none). All values are floats; the result is one Spark job and one
        collected row.
    """
    per_user = user_ranking_metrics(
        recommendations, truth, k, user_col, item_col, rank_col, relevance_col, relevance_threshold
    )
    return _ranking_result(_ranking_summary(per_user, []).first())


def ranking_metrics_by(
    recommendations: DataFrame,
    group_col: str,
    truth: DataFrame,
    k: int,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rank_col: str = "rank",
    relevance_col: str | None = None,
    relevance_threshold: float | None = None,
) -> dict[Any, dict[str, float]]:
    """:func:`ranking_metrics` of every ``group_col`` value of ``recommendations`` (e.g. each
    source of a candidates table) against the same ``truth``, in one Spark job: group value ->
    result. Same as calling :func:`ranking_metrics` on each group's rows."""
    _check_inputs(recommendations, truth, k, user_col, item_col, rank_col, relevance_col, relevance_threshold)
    require_columns(recommendations, [group_col], "recommendations")
    groups = recommendations.select(F.col(group_col).alias(_GROUP)).where(F.col(_GROUP).isNotNull()).distinct()
    truth_columns = [item_col] + ([relevance_col] if relevance_col else [])
    known_user = F.col(user_col).isNotNull()
    keyed_truth = truth.where(known_user).crossJoin(F.broadcast(groups)).select(
        _group_key(_GROUP, user_col), *truth_columns
    )
    keyed_recommendations = recommendations.where(known_user & F.col(group_col).isNotNull()).select(
        _group_key(group_col, user_col), item_col, rank_col
    )
    per_user = _user_metrics(
        keyed_recommendations, keyed_truth, int(k), _KEY, item_col, rank_col, relevance_col, relevance_threshold
    )
    summary = _ranking_summary(per_user.withColumn(_GROUP, F.col(f"{_KEY}.group")), [_GROUP])
    return {row[_GROUP]: _ranking_result(row) for row in summary.collect()}


def _group_key(group_col: str, user_col: str) -> Column:
    """(group, user) as one struct column: the "user" of a grouped evaluation."""
    return F.struct(F.col(group_col).alias("group"), F.col(user_col).alias("user")).alias(_KEY)


def _ranking_summary(per_user: DataFrame, group_cols: list[str]) -> DataFrame:
    """Per group (one row without groups): users in both frames, truth users and metric means."""
    in_both = F.col("in_truth") & F.col("in_recommendations")
    return per_user.groupBy(*group_cols).agg(
        F.count(F.when(in_both, True)).alias("n_users"),
        F.count(F.when(F.col("in_truth"), True)).alias("n_truth_users"),
        *[F.avg(name).alias(name) for name in RANKING_METRIC_KEYS],
    )


def _ranking_result(summary: Row) -> dict[str, float]:
    result = {key: _as_float(summary[name]) for name, key in RANKING_METRIC_KEYS.items()}
    n_users, n_truth_users = summary["n_users"], summary["n_truth_users"]
    result["n_users"] = float(n_users)
    result["user_coverage"] = n_users / n_truth_users if n_truth_users else math.nan
    return result
