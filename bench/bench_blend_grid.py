"""Benchmark: the hybrid's weight-grid search, users scored in hashed groups vs one call per user.

Synthetic validation-time lists of the shape the rerank stage tunes on (``--users`` users, each
with ``--items`` candidates from each of 4 sources, 60% overlap, 3 validation items per user; the
default grid ``deep.hybrid_weight_grid`` (0, 0.5, 1): 80 points). In the same run, interleaved:

* reference: one ``applyInPandas`` call per user (what ``recspark.deep.scoring._grid_ndcg`` did
  until 2026-12-07);
* recspark: :func:`recspark.deep.scoring.tune_blend_weights` (users hashed into
  ``GRID_BUCKETS`` groups, one call per group).

Both are forced by the grid means they return; the two grids' NDCG are compared point by point.

    PYTHONPATH=. .venv/bin/python bench/bench_blend_grid.py --users 10000 38000
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import load_config
from recspark.deep.scoring import tune_blend_weights, weight_grid
from recspark.io.session import build_spark_session

SOURCES = ["a", "b", "c", "d"]


def synthetic_lists(spark, users: int, items: int, seed: int = 0) -> tuple[DataFrame, DataFrame]:
    """(normalised scores, validation truth) on ``users`` x (4 sources x ``items`` candidates)."""
    rng = np.random.default_rng(seed)
    catalogue = items * 3
    frames = []
    for source in SOURCES:
        picked = np.argsort(rng.random((users, catalogue)), axis=1)[:, :items]
        frames.append(pd.DataFrame({"user_idx": np.repeat(np.arange(users), items).astype(np.int32),
                                    "item_idx": picked.ravel().astype(np.int32), "source": source,
                                    "norm_score": rng.random(users * items)}))
    truth = pd.DataFrame({"user_idx": np.repeat(np.arange(users), 3).astype(np.int32),
                          "item_idx": rng.integers(0, catalogue, users * 3).astype(np.int32)})
    return (spark.createDataFrame(pd.concat(frames)).localCheckpoint(),
            spark.createDataFrame(truth).dropDuplicates().localCheckpoint())


def reference_grid(normalised: DataFrame, truth: DataFrame, grid_values: list[float], k: int) -> list[float]:
    """Mean NDCG@k per grid point with one pandas call per user."""
    grid = weight_grid(SOURCES, grid_values)
    weights = np.array([[combo[s] for s in SOURCES] for combo in grid]).T
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    relevant = truth.select("user_idx", "item_idx", F.lit(1).alias("relevant")).distinct()
    counts = relevant.groupBy("user_idx").agg(F.count(F.lit(1)).alias("n_relevant"))
    wide = (normalised.groupBy("user_idx", "item_idx").pivot("source", SOURCES).agg(F.first("norm_score"))
            .fillna(0.0, subset=SOURCES).join(relevant, ["user_idx", "item_idx"], "left")
            .fillna(0, subset=["relevant"]).join(counts, "user_idx"))

    def user_ndcg(frame: pd.DataFrame) -> pd.DataFrame:
        scores = frame[SOURCES].to_numpy(np.float64) @ weights
        order = np.lexsort((np.broadcast_to(frame["item_idx"].to_numpy()[:, None], scores.shape), -scores), axis=0)
        top = order[:k]
        idcg = discounts[: min(int(frame["n_relevant"].iloc[0]), k)].sum()
        ndcg = (frame["relevant"].to_numpy(np.float64)[top] * discounts[: len(top), None]).sum(0) / idcg
        return pd.DataFrame({"combo": np.arange(len(grid)), "ndcg": ndcg})

    table = (wide.groupBy("user_idx").applyInPandas(user_ndcg, "combo int, ndcg double")
             .groupBy("combo").agg(F.mean("ndcg").alias("ndcg")).toPandas().set_index("combo")["ndcg"].sort_index())
    return table.tolist()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, nargs="+", default=[10_000])
    p.add_argument("--items", type=int, default=100)
    args = p.parse_args(argv)
    config = load_config(None, ["spark.master=local[2]"])
    spark = build_spark_session(config.spark)
    grid_values, k = list(config.deep.hybrid_weight_grid), config.evaluation.k
    print("| users | candidate rows | grid points | one call per user (s) | hashed groups (s) | speed-up | "
          "max NDCG difference | same choice |\n|---:|---:|---:|---:|---:|---:|---:|---|")
    for users in args.users:
        normalised, truth = synthetic_lists(spark, users, args.items)
        began = time.perf_counter()
        reference = reference_grid(normalised, truth, grid_values, k)
        reference_s = time.perf_counter() - began
        began = time.perf_counter()
        tuning = tune_blend_weights(normalised, truth, SOURCES, grid_values, k)
        recspark_s = time.perf_counter() - began
        ours = [v for _, v in tuning.grid_ndcg]
        same = weight_grid(SOURCES, grid_values)[int(np.argmax(reference))] == tuning.weights
        print(f"| {users:,} | {normalised.count():,} | {len(ours)} | {reference_s:.1f} | {recspark_s:.1f} | "
              f"{reference_s / recspark_s:.1f}x | {max(abs(a - b) for a, b in zip(reference, ours)):.1e} | {same} |",
              flush=True)


if __name__ == "__main__":
    main()
