"""Offline evaluation of recommendations: ranking, rating, beyond-accuracy and efficiency
metrics computed in Spark, plus rows for the ``metrics`` table."""
from recspark.evaluation.beyond_accuracy import (
    average_recommendation_popularity,
    catalog_coverage,
    distributional_coverage,
    intra_list_diversity,
    item_choice_popularity,
    item_popularity,
    novelty,
    serendipity,
)
from recspark.evaluation.efficiency import StageMeasurement, measure_stage, peak_rss_mib
from recspark.evaluation.ranking import (
    RANKING_METRIC_KEYS,
    ranking_metrics,
    relevant_items,
    user_ranking_metrics,
)
from recspark.evaluation.rating import rating_metrics
from recspark.schemas import METRICS
from recspark.evaluation.report import comparison_table, metrics_frame, metrics_rows

__all__ = [
    "METRICS",
    "RANKING_METRIC_KEYS",
    "StageMeasurement",
    "average_recommendation_popularity",
    "catalog_coverage",
    "comparison_table",
    "distributional_coverage",
    "intra_list_diversity",
    "item_choice_popularity",
    "item_popularity",
    "measure_stage",
    "metrics_frame",
    "metrics_rows",
    "novelty",
    "peak_rss_mib",
    "ranking_metrics",
    "rating_metrics",
    "relevant_items",
    "serendipity",
    "user_ranking_metrics",
]
