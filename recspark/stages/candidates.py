"""Candidates stage: top-N items per user from every source, for evaluation and re-ranking.

Sources (``candidates.sources``):

* ``als``: blocked dot-product top-N over ``user_factors`` x ``item_factors``;
* ``item_item``: item-based CF over the ``cooccurrence`` neighbours in ``item_similarity``
  (score = sum of neighbour similarities over the user's history, with the history item that
  contributed most as ``because_item_idx``);
* ``popularity``: distinct-user popularity over all time or the last
  ``candidates.popularity_window_days`` (the cold-start fallback);
* ``content``: every user of ``user_index`` (history or not), scored by the similarity of
  ``item_embeddings`` to their profile blended with popularity (``content.*``; see
  :mod:`recspark.content.recommend`): new items reach users through their embeddings and new or
  near-empty users get mostly popular items.

History (the items excluded as seen, and the input of item-item and popularity) is every
non-test pair of ``interactions_split``. Output table ``candidates``: user_idx, item_idx,
source, score (double; comparable within a source only), rank (1..N within user and source),
because_item_idx (nullable), run_date; partitioned by source and replaced whole each run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, ContentConfig
from recspark.content.recommend import ContentRecommender
from recspark.io.delta import DeltaTables
from recspark.recommenders.item_similarity import ItemSimilarityModel
from recspark.recommenders.popularity import PopularityRecommender
from recspark.recommenders.topk import top_k_by_dot_product
from recspark.stages.common import StageContext, require_known_names
from recspark.stages.similarity import COOCCURRENCE_METHOD
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)

SOURCES = ("als", "item_item", "popularity", "content")


@dataclass
class CandidateCounts:
    users: int
    rows: int
    sources: int


def als_candidates(user_factors: DataFrame, item_factors: DataFrame, history: DataFrame, n: int) -> DataFrame:
    return top_k_by_dot_product(user_factors, item_factors, n, seen=history).withColumn(
        "because_item_idx", F.lit(None).cast("int")
    )


def item_item_candidates(neighbours: DataFrame, history: DataFrame, n: int) -> DataFrame:
    return (
        ItemSimilarityModel(neighbours)
        .recommend(history, n)
        .withColumnRenamed("because_item", "because_item_idx")
    )


def popularity_candidates(history: DataFrame, n: int, window_days: float | None) -> DataFrame:
    model = PopularityRecommender(k=n, window_days=window_days).fit(history)
    return model.recommend(history.select("user_idx"), seen=history).withColumn(
        "because_item_idx", F.lit(None).cast("int")
    )


def content_candidates(
    embeddings: DataFrame, users: DataFrame, history: DataFrame, n: int, content: ContentConfig
) -> DataFrame:
    model = ContentRecommender(n, content.popularity_shrinkage, content.profile_half_life_days).fit(
        history, embeddings
    )
    return model.recommend(users, seen=history).withColumn("because_item_idx", F.lit(None).cast("int"))


def require_item_embeddings(tables: DeltaTables) -> DataFrame:
    if not tables.exists("item_embeddings"):
        raise ValueError("candidates.sources includes 'content' but table item_embeddings does not exist; "
                         "run the embed-items stage first")
    return tables.read("item_embeddings")


def candidate_columns(frame: DataFrame, source: str) -> DataFrame:
    """A source's recommendations (user_idx, item_idx, score, rank, because_item_idx) in the
    columns and types of the candidates table, less run_date."""
    return frame.select(
        F.col("user_idx").cast("int"),
        F.col("item_idx").cast("int"),
        F.lit(source).alias("source"),
        F.col("score").cast("double"),
        F.col("rank").cast("int"),
        F.col("because_item_idx").cast("int"),
    )


def run_candidates(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> CandidateCounts:
    cc = config.candidates
    require_known_names(cc.sources, SOURCES, "candidates.sources")
    tracker.log_params({"candidates.n": cc.n, "candidates.sources": ",".join(cc.sources)})
    history = (
        tables.read("interactions_split").where(F.col("split") != "test")
        .select("user_idx", "item_idx", "event_ts").cache()
    )
    builders = {
        "als": lambda: als_candidates(tables.read("user_factors"), tables.read("item_factors"), history, cc.n),
        "item_item": lambda: item_item_candidates(
            tables.read("item_similarity").where(F.col("method") == COOCCURRENCE_METHOD), history, cc.n
        ),
        "popularity": lambda: popularity_candidates(history, cc.n, cc.popularity_window_days),
        "content": lambda: content_candidates(
            require_item_embeddings(tables), tables.read("user_index"), history, cc.n, config.content
        ),
    }
    parts = []
    for source in cc.sources:
        with ctx.measure(f"candidates.{source}"):
            part = candidate_columns(builders[source](), source).localCheckpoint()
        parts.append(part)
    candidates = reduce(DataFrame.unionByName, parts).withColumn("run_date", F.lit(ctx.run_date))
    tables.write(
        candidates, "candidates", partition_by=["source"], metadata=ctx.commit_metadata("candidates"),
        overwrite_schema=True,
    )
    history.unpersist()
    summary = candidates.agg(F.countDistinct("user_idx").alias("users"), F.count(F.lit(1)).alias("rows")).first()
    counts = CandidateCounts(summary["users"], summary["rows"], len(cc.sources))
    log.info("candidates %s: %s", ctx.run_date, counts)
    return counts
