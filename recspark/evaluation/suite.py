"""All offline metrics of one model's top-k lists in one call (the ``evaluate`` stage's unit)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.evaluation.beyond_accuracy import (
    average_recommendation_popularity,
    catalog_coverage,
    distributional_coverage,
    intra_list_diversity,
    novelty,
)
from recspark.evaluation.ranking import ranking_metrics


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
    (bits), ``avg_popularity`` and, when ``item_vectors`` are given, ``diversity`` (mean
    intra-list cosine distance). ``train_interactions`` give item popularity; ``truth`` the
    relevant (user, item) pairs.
    """
    top_k = recommendations.where(F.col(rank_col) <= k).select(user_col, item_col, rank_col).cache()
    try:
        results = ranking_metrics(top_k, truth, k, user_col, item_col, rank_col)
        results["catalog_coverage"] = catalog_coverage(top_k, n_catalog_items, item_col)
        results["distributional_coverage"] = distributional_coverage(top_k, item_col)
        results["novelty"] = novelty(top_k, train_interactions, user_col, item_col)
        results["avg_popularity"] = average_recommendation_popularity(
            top_k, train_interactions, user_col, item_col
        )
        if item_vectors is not None:
            results["diversity"] = intra_list_diversity(top_k, item_vectors, vector_col, user_col, item_col)
        return results
    finally:
        top_k.unpersist()
