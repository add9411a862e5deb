"""All offline metrics of one model's top-k lists in one call (the ``evaluate`` stage's unit)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.cutoff import DEFAULT_K
from recspark.evaluation._checks import require_columns, require_same_types
from recspark.evaluation.beyond_accuracy import (
    VALUE,
    average_recommendation_popularity,
    average_recommendation_popularity_by,
    catalog_coverage,
    catalog_coverage_by,
    distributional_coverage,
    distributional_coverage_by,
    intra_list_diversity,
    intra_list_diversity_by,
    item_choice_popularity,
    item_popularity,
    novelty,
    novelty_by,
    serendipity,
    serendipity_by,
    with_relevance,
)
from recspark.evaluation.ranking import ranking_metrics, ranking_metrics_by
from recspark.evaluation.sampling import require_user_cap, sample_users


@dataclass
class EvaluationSettings:
    """Offline evaluation of the candidates against the test split (the ``evaluation`` config
    section); ``k`` is also the deep models' validation cut-off."""

    k: int = DEFAULT_K
    dataset: str | None = None  # label in the metrics table; default: the ingest preset
    vector_metrics_max_users: int | None = 5000  # diversity and serendipity on a seeded sample (None: all)
    # The ranking metrics (ndcg, precision, recall, map, ... and their user counts) on a seeded
    # sample of this many test users (None: all). 50,000 users put a standard error of about 0.001
    # on NDCG@10 and leave MovieLens, 1M and 5M whole; at 20M (200,000 test users) every source's
    # lists joined with the test pairs were the evaluate stage's largest job. Coverage, novelty
    # and popularity always use every list.
    ranking_metrics_max_users: int | None = 50_000
    seed: int = 42

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k: must be >= 1, got {self.k}")
        require_user_cap(self.vector_metrics_max_users, "vector_metrics_max_users")
        require_user_cap(self.ranking_metrics_max_users, "ranking_metrics_max_users")


def evaluate_recommendations(
    recommendations: DataFrame,
    truth: DataFrame,
    train_interactions: DataFrame,
    k: int,
    n_catalog_items: int,
    item_vectors: DataFrame | None = None,
    vector_col: str = "features",
    user_col: str = "user_idx",
    item_col: str = "item_idx",
    rank_col: str = "rank",
) -> dict[str, float]:
    """Ranking metrics at ``k`` (see :func:`recspark.evaluation.ranking_metrics`) and, on the
    lists cut at ``k``: ``catalog_coverage``, ``distributional_coverage`` (bits), ``novelty``
    (bits, discovery model), ``novelty_choice`` (bits, MS Recommenders' choice model),
    ``avg_popularity`` and, when ``item_vectors`` are given, ``diversity`` (mean intra-list
    cosine distance), ``serendipity`` (MS Recommenders' default: every recommended item relevant,
    i.e. unexpectedness w.r.t. the training history) and ``serendipity_relevant`` (only items in
    ``truth`` count as relevant). ``train_interactions`` give item popularity and the histories;
    ``truth`` the relevant (user, item) pairs.
    """
    top_k = recommendations.where(F.col(rank_col) <= k).select(user_col, item_col, rank_col).cache()
    try:
        results = ranking_metrics(top_k, truth, k, user_col, item_col, rank_col)
        results["catalog_coverage"] = catalog_coverage(top_k, n_catalog_items, item_col)
        results["distributional_coverage"] = distributional_coverage(top_k, item_col)
        results["novelty"] = novelty(top_k, train_interactions, user_col, item_col)
        results["novelty_choice"] = novelty(top_k, train_interactions, user_col, item_col, model="choice")
        results["avg_popularity"] = average_recommendation_popularity(
            top_k, train_interactions, user_col, item_col
        )
        if item_vectors is not None:
            results["diversity"] = intra_list_diversity(top_k, item_vectors, vector_col, user_col, item_col)
            results["serendipity"] = serendipity(
                top_k, train_interactions, item_vectors, vector_col, user_col, item_col
            )
            results["serendipity_relevant"] = serendipity(
                top_k, train_interactions, item_vectors, vector_col, user_col, item_col, truth=truth
            )
        return results
    finally:
        top_k.unpersist()


_METRIC = "_metric"


def _stacked(frames: dict[str, DataFrame], group_col: str) -> DataFrame:
    """The ``group_col`` + ``value`` frames as one frame with the metric name in ``_metric``."""
    named = [frame.select(F.lit(name).alias(_METRIC), group_col, F.col(VALUE).cast("double").alias(VALUE))
             for name, frame in frames.items()]
    return reduce(DataFrame.unionByName, named)


def evaluate_recommendations_by(
    recommendations: DataFrame,
    group_col: str,
    truth: DataFrame,
    train_interactions: DataFrame,
    k: int,
    n_catalog_items: int,
    item_vectors: DataFrame | None = None,
    vector_col: str = "features",
    user_col: str = "user_idx",
    item_col: str = "item_idx",
    rank_col: str = "rank",
    vector_metrics_max_users: int | None = None,
    seed: int = 0,
    ranking_metrics_max_users: int | None = None,
) -> dict[Any, dict[str, float]]:
    """:func:`evaluate_recommendations` of every ``group_col`` value of ``recommendations`` (e.g.
    each source of the candidates table) against the same ``truth``: group value -> the same
    metrics. At most five Spark jobs for all groups and metrics: the ranking metrics, the
    popularity and coverage metrics stacked into one frame, and one per item-vector metric (on
    tiny inputs a job costs far more than its rows; one job per metric family made a 10-row
    evaluation take seconds).

    ``vector_metrics_max_users``: the item-vector metrics (diversity, serendipity), means over
    users whose cost grows with users x list length x history, are computed on at most this many
    users (:func:`recspark.evaluation.sampling.sample_users` with ``seed``, the same users for
    every group; None: all). ``ranking_metrics_max_users``: the ranking metrics are computed for
    at most this many users of ``truth`` (the same seeded sample for every group; their lists and
    test pairs only). Coverage, novelty and popularity always use every user: coverage is a
    property of all lists together."""
    require_columns(recommendations, [group_col, user_col, item_col, rank_col], "recommendations")
    require_same_types(recommendations, train_interactions, [item_col], "recommendations", "train_interactions")
    if item_vectors is not None:
        require_same_types(recommendations, item_vectors, [item_col], "recommendations", "item_vectors")
    top_k = recommendations.where(F.col(rank_col) <= k).select(group_col, user_col, item_col, rank_col).cache()
    popularity = item_popularity(train_interactions, user_col, item_col).cache()
    choice_popularity = item_choice_popularity(train_interactions, user_col, item_col)
    groups = [group_col]
    try:
        ranked, relevant = top_k, truth
        if ranking_metrics_max_users is not None:
            judged = F.broadcast(sample_users(truth, ranking_metrics_max_users, seed, user_col))
            ranked, relevant = (frame.join(judged, user_col, "left_semi") for frame in (top_k, truth))
        results = ranking_metrics_by(ranked, group_col, relevant, k, user_col, item_col, rank_col)
        # The popularity and coverage metrics run as one job; each item-vector metric as its own,
        # as a plan that carries the item vectors several times serializes into multi-MiB tasks
        # (a Spark WARN each).
        jobs = [{
            "catalog_coverage": catalog_coverage_by(top_k, groups, n_catalog_items, item_col),
            "distributional_coverage": distributional_coverage_by(top_k, groups, item_col),
            "novelty": novelty_by(top_k, groups, popularity, item_col),
            "novelty_choice": novelty_by(top_k, groups, choice_popularity, item_col),
            "avg_popularity": average_recommendation_popularity_by(top_k, groups, popularity, item_col),
        }]
        if item_vectors is not None:
            listed, histories = top_k, train_interactions
            if vector_metrics_max_users is not None:
                users = F.broadcast(sample_users(top_k, vector_metrics_max_users, seed, user_col))
                listed = top_k.join(users, user_col, "left_semi")
                histories = train_interactions.join(users, user_col, "left_semi")
            jobs.append({"diversity": intra_list_diversity_by(listed, groups, item_vectors, vector_col, user_col,
                                                              item_col)})
            for name, truth_or_none in (("serendipity", None), ("serendipity_relevant", truth)):
                rated = with_relevance(listed, user_col, item_col, truth=truth_or_none)
                jobs.append({name: serendipity_by(
                    rated, groups, histories, item_vectors, vector_col, user_col, item_col
                )})
        rows = [row for job in jobs for row in _stacked(job, group_col).collect()]
        values = {(row[_METRIC], row[group_col]): row[VALUE] for row in rows}
        for name in (name for job in jobs for name in job):
            for group, metrics in results.items():
                value = values.get((name, group))
                metrics[name] = float("nan") if value is None else float(value)
        return results
    finally:
        top_k.unpersist()
        popularity.unpersist()
