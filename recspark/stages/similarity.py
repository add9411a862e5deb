"""Item similarity stage: interactions_split -> the ``cooccurrence`` partition of item_similarity.

Co-occurrence similarity (``similarity.metric``: cosine, jaccard or lift) over the non-test
(train + validation) pairs, pruned by ``similarity.min_support`` and cut to
``similarity.top_n`` neighbours per item. ``item_similarity`` columns: item_idx, neighbor_idx,
score, support (users with both items; null for factor neighbours) and ``method``
(``cooccurrence`` from here, ``als_factors`` from ``train-als``), partitioned by method so
each stage replaces only its own rows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, SimilarityConfig
from recspark.io.delta import DeltaTables
from recspark.recommenders.item_similarity import ItemSimilarity
from recspark.stages.common import StageContext
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)

COOCCURRENCE_METHOD = "cooccurrence"


@dataclass
class SimilarityCounts:
    items_with_neighbours: int
    pairs: int
    mean_neighbours: float


def similarity_estimator(sc: SimilarityConfig) -> ItemSimilarity:
    """The co-occurrence estimator of ``similarity.*`` (also refit by the rerank stage)."""
    return ItemSimilarity(
        metric=sc.metric, min_support=sc.min_support, top_n=sc.top_n,
        max_items_per_user=sc.max_items_per_user, seed=sc.seed,
    )


def run_similarity(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> SimilarityCounts:
    sc = config.similarity
    tracker.log_params({f"similarity.{key}": value for key, value in vars(sc).items()})
    history = tables.read("interactions_split").where(F.col("split") != "test")
    estimator = similarity_estimator(sc)
    with ctx.measure("similarity.fit"):
        similarities = estimator.fit(history).similarities.withColumn(
            "method", F.lit(COOCCURRENCE_METHOD)
        ).localCheckpoint()
    tables.write(
        similarities, "item_similarity", partition_by=["method"],
        replace_partition={"method": COOCCURRENCE_METHOD},
        metadata=ctx.commit_metadata("similarity") | {"similarity.metric": sc.metric},
    )
    summary = similarities.agg(F.countDistinct("item_idx").alias("items"), F.count(F.lit(1)).alias("pairs")).first()
    items, pairs = summary["items"], summary["pairs"]
    counts = SimilarityCounts(items, pairs, pairs / items if items else 0.0)
    log.info("similarity %s: %s", ctx.run_date, counts)
    return counts
