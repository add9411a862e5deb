"""Benchmark: neighbourhood scoring (item-item and user-KNN top-N for every user), the sparse
top-N of :mod:`recspark.recommenders.sparse_topk` against the Spark join-and-sum it replaced.

    PYTHONPATH=. .venv/bin/python bench/bench_neighbour_scoring.py --warehouse /tmp/bn/n1000000/wh

Reads the train rows of a warehouse's ``interactions_split`` (e.g. one ``bench/bench_nightly.py``
wrote), fits the item-item neighbours (``similarity`` defaults: cosine, top 50) and user-KNN
(``user_knn`` defaults: cosine, top 100 neighbours), then times the top ``--n`` (100, as the
candidates stage) unseen items for every user both ways, each materialised with
``localCheckpoint`` after one warm-up on 2% of the users. The reference is the previous
implementation: join every (user, key) with every (key, item), ``groupBy`` (user, item),
``row_number`` per user. Reports the share of identical (user, rank) rows (item and score
within 1e-9) and of rows with the same score (differing at most in the order of equal scores).
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recspark.io.session import SparkSettings, build_spark_session  # noqa: E402
from recspark.recommenders.item_similarity import NEIGHBOR_COL, ItemSimilarity, ItemSimilarityModel  # noqa: E402
from recspark.recommenders.user_knn import NEIGHBOR_USER_COL, UserKnn, UserKnnSettings  # noqa: E402


def join_and_sum_top_n(left: DataFrame, key: str, weight: str, right: DataFrame, seen: DataFrame,
                       n: int) -> DataFrame:
    """The reference: ``left`` (user_idx, key, weight) joined with ``right`` (key, item_idx,
    value), summed per (user, item), seen pairs removed, top ``n`` by score desc / item asc."""
    summed = (left.join(right, key).groupBy("user_idx", "item_idx")
              .agg(F.sum(F.col(weight) * F.col("value")).alias("score")))
    unseen = summed.join(seen, ["user_idx", "item_idx"], "left_anti")
    order = Window.partitionBy("user_idx").orderBy(F.desc("score"), F.asc("item_idx"))
    return unseen.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= n)


def timed(label: str, build) -> tuple[DataFrame, float]:
    began = time.perf_counter()
    frame = build().localCheckpoint()
    seconds = time.perf_counter() - began
    print(f"{label}: {seconds:.1f} s, {frame.count():,} rows", flush=True)
    return frame, seconds


def agreement(a: DataFrame, b: DataFrame) -> tuple[float, float]:
    """Shares of ``a``'s (user, rank) rows that hold the same item as ``b``'s with a score within
    1e-9, and that hold a score within 1e-9 whatever the item (the rest of those differ only in
    how equal scores are ordered)."""
    joined = a.alias("a").join(b.alias("b"), ["user_idx", "rank"], "left")
    close = F.abs(F.col("a.score") - F.col("b.score")) < 1e-9
    same = (F.col("a.item_idx") == F.col("b.item_idx")) & close
    row = joined.agg(F.count(F.lit(1)).alias("rows"), F.sum(same.cast("int")).alias("same"),
                     F.sum(close.cast("int")).alias("close")).first()
    return (row["same"] or 0) / max(row["rows"], 1), (row["close"] or 0) / max(row["rows"], 1)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args(argv)
    spark = build_spark_session(SparkSettings(master="local[2]", conf={"spark.driver.memory": "4g",
                                                                        "spark.sql.shuffle.partitions": "8"}))
    split = pl.read_delta(str(Path(args.warehouse) / "interactions_split"), columns=["user_idx", "item_idx", "split"])
    train = split.filter(pl.col("split") != "test").select("user_idx", "item_idx").to_pandas()
    history = spark.createDataFrame(train).repartition(8).cache()
    print(f"{len(train):,} train pairs, {train['user_idx'].nunique():,} users, {train['item_idx'].nunique():,} items")
    users = history.select("user_idx").distinct()
    warm = users.where(F.pmod(F.col("user_idx"), F.lit(50)) == 0)

    item_model = ItemSimilarityModel(ItemSimilarity(metric="cosine", min_support=2, top_n=50,
                                                    max_items_per_user=500).fit(history).similarities.localCheckpoint())
    user_model = UserKnn(UserKnnSettings()).fit(history)
    user_model.neighbours = user_model.neighbours.localCheckpoint()
    neighbours_as_right = item_model.similarities.select(F.col("item_idx").alias("key"), F.col(NEIGHBOR_COL).alias(
        "item_idx"), F.col("score").alias("value"))
    histories_as_right = history.select(F.col("user_idx").alias("key"), "item_idx", F.lit(1.0).alias("value"))

    def item_sparse(who):
        return item_model.recommend(history.join(who, "user_idx", "left_semi"), args.n)

    def item_reference(who):
        left = history.join(who, "user_idx", "left_semi").select("user_idx", F.col("item_idx").alias("key"),
                                                                 F.lit(1.0).alias("w"))
        return join_and_sum_top_n(left, "key", "w", neighbours_as_right, history, args.n)

    def user_sparse(who):
        return user_model.recommend(who, args.n, history)

    def user_reference(who):
        left = user_model.neighbours.join(who, "user_idx", "left_semi").select(
            "user_idx", F.col(NEIGHBOR_USER_COL).alias("key"), F.col("score").alias("w"))
        return join_and_sum_top_n(left, "key", "w", histories_as_right, history, args.n)

    rows = []
    for name, sparse, reference in (("item_item", item_sparse, item_reference),
                                    ("user_knn", user_sparse, user_reference)):
        for build in (sparse, reference):
            build(warm).localCheckpoint().count()
        ours, ours_s = timed(f"{name} sparse top-N", lambda: sparse(users))
        theirs, theirs_s = timed(f"{name} join-and-sum", lambda: reference(users))
        rows.append((name, ours_s, theirs_s, *agreement(ours, theirs)))
    print("\n| source | sparse top-N (s) | join-and-sum (s) | speed-up | identical (user, rank) rows | "
          "same score at (user, rank) |")
    print("|---|---|---|---|---|---|")
    for name, ours_s, theirs_s, same, close in rows:
        print(f"| {name} | {ours_s:.1f} | {theirs_s:.1f} | {theirs_s / ours_s:.1f}x | {same:.4%} | {close:.4%} |")


if __name__ == "__main__":
    main(sys.argv[1:])
