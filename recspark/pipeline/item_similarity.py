"""Item-similarity stage: interactions_split -> the ``cooccurrence`` partition of item_similarity.

Co-occurrence similarity (``similarity.metric``: cosine, jaccard or lift) over the non-test
(train + validation) pairs, pruned by ``similarity.min_support`` and cut to
``similarity.top_n`` neighbours per item. ``item_similarity`` columns: item_idx, neighbor_idx,
score, support (users with both items; null for factor neighbours) and ``method``
(``cooccurrence`` from here, ``als_factors`` from train-als), partitioned by method so each stage
replaces only its own rows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import functions as F

from recspark.catalog import INTERACTIONS_SPLIT, ITEM_SIMILARITY
from recspark.pipeline.stage import StageContext
from recspark.recommenders.item_similarity import COOCCURRENCE_METHOD, similarity_estimator

log = logging.getLogger(__name__)


@dataclass
class SimilarityCounts:
    items_with_neighbours: int
    pairs: int
    mean_neighbours: float


def run_item_similarity(ctx: StageContext) -> SimilarityCounts:
    sc = ctx.config.similarity
    history = ctx.tables.read(INTERACTIONS_SPLIT).where(F.col("split") != "test")
    with ctx.measure("similarity.fit"):
        similarities = similarity_estimator(sc).fit(history).similarities.withColumn(
            "method", F.lit(COOCCURRENCE_METHOD)
        ).localCheckpoint()
    ctx.tables.write(similarities, ITEM_SIMILARITY, replace_partition={"method": COOCCURRENCE_METHOD},
                     metadata=ctx.commit_metadata({"similarity.metric": sc.metric}))
    summary = similarities.agg(F.countDistinct("item_idx").alias("items"), F.count(F.lit(1)).alias("pairs")).first()
    items, pairs = summary["items"], summary["pairs"]
    counts = SimilarityCounts(items, pairs, pairs / items if items else 0.0)
    log.info("item-similarity %s: %s", ctx.run_date, counts)
    return counts
