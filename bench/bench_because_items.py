"""Benchmark: publish's "because you liked" lookup (:func:`recspark.publish.attach_because_items`)
against the join it replaced, on a warehouse the nightly has filled.

Usage::

    PYTHONPATH=. .venv/bin/python bench/bench_because_items.py --warehouse /tmp/bn5/n5000000/wh

Both run on the same input: the champion-first top ``--k`` lists publish builds
(:func:`recspark.publish.final_recommendations` over the candidates table, the sources of
``publish.sources`` with the recorded champion first), the non-test history and the co-occurrence
similarities. The reference joins every recommendation with every history item of its user, then
with the similarities, and keeps the best link per pair (min of (-score, item)). Each is forced
with a count of its output after its input lists are materialised; the agreement is checked pair
by pair. Prints one markdown table row.
"""
from __future__ import annotations

import argparse
import sys
import time

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import CANDIDATES, INTERACTIONS_SPLIT, ITEM_SIMILARITY
from recspark.config import load_config
from recspark.io.delta import DeltaTables
from recspark.io.session import build_spark_session
from recspark.pipeline.publish import CHAMPION_KEY
from recspark.publish import attach_because_items, final_recommendations, publish_order
from recspark.recommenders.item_similarity import COOCCURRENCE_METHOD, NEIGHBOR_COL


def joined_because_items(recommendations: DataFrame, history: DataFrame, similarities: DataFrame) -> DataFrame:
    """The reference: every (recommendation, history item of its user) pair joined with the
    similarities; per recommendation the link of largest score, ties by the smaller item."""
    neighbours = similarities.select(F.col("item_idx").alias("_history_item"), F.col(NEIGHBOR_COL).alias("item_idx"),
                                     F.col("score").alias("_sim"))
    best = (
        recommendations.where(F.col("because_item_idx").isNull()).select("user_idx", "item_idx")
        .join(history.select("user_idx", F.col("item_idx").alias("_history_item")), "user_idx")
        .join(neighbours, ["_history_item", "item_idx"])
        .groupBy("user_idx", "item_idx")
        .agg(F.min(F.struct((-F.col("_sim")).alias("_neg"), F.col("_history_item").alias("_item"))).alias("_best"))
        .select("user_idx", "item_idx", F.col("_best._item").alias("_because"))
    )
    return recommendations.join(best, ["user_idx", "item_idx"], "left").select(
        *[c for c in recommendations.columns if c != "because_item_idx"],
        F.coalesce("because_item_idx", "_because").alias("because_item_idx"))


def timed_count(frame: DataFrame) -> tuple[float, DataFrame]:
    began = time.perf_counter()
    rows = frame.localCheckpoint()
    rows.count()
    return time.perf_counter() - began, rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    config = load_config(overrides=[f"warehouse={args.warehouse}", "spark.master=local[2]"])
    spark = build_spark_session(config.spark)
    tables = DeltaTables.from_config(spark, config)
    champion = tables.history(CANDIDATES, limit=1)[0].metadata.get(CHAMPION_KEY)
    ranked = final_recommendations(tables.read(CANDIDATES), publish_order(config.publish.sources, champion),
                                   args.k).localCheckpoint()
    history = tables.read(INTERACTIONS_SPLIT).where(F.col("split") != "test").select("user_idx", "item_idx")
    history = history.localCheckpoint()
    similarities = tables.read(ITEM_SIMILARITY).where(F.col("method") == COOCCURRENCE_METHOD).localCheckpoint()
    sizes = ranked.count(), history.count(), similarities.count()
    reference_s, reference = timed_count(joined_because_items(ranked, history, similarities))
    library_s, library = timed_count(attach_because_items(ranked, history, similarities))
    keys = ["user_idx", "item_idx", "source"]
    differ = (reference.select(*keys, F.col("because_item_idx").alias("a"))
              .join(library.select(*keys, F.col("because_item_idx").alias("b")), keys, "full_outer")
              .where(~F.col("a").eqNullSafe(F.col("b"))).count())
    explained = library.where(F.col("because_item_idx").isNotNull()).count()
    print("| recommendations | history rows | similarity links | join (s) | broadcast links (s) | speed-up "
          "| pairs that differ | with a because item |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {sizes[0]:,} | {sizes[1]:,} | {sizes[2]:,} | {reference_s:.1f} | {library_s:.1f} "
          f"| {reference_s / library_s:.1f}x | {differ} | {explained:,} |")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
