"""Benchmark: the ranker's content-similarity feature against the per-pair join it replaced.

On a warehouse the nightly has filled (``bench/bench_nightly.py``'s 1M one, say): tonight's
candidate pairs of the newest ``candidates`` run (every source's rows, as rerank scores them),
the non-test history and ``item_embeddings``. In the same run, interleaved, ``--repeats`` times:

* reference: every pair joined with its user's profile and its item's embedding, the cosine per
  Arrow batch (what ``recspark.ranker.features.content_similarity_feature`` did until
  2026-12-07: two vectors of ``dimension`` floats travel with each pair through the joins);
* recspark: :func:`recspark.ranker.features.content_similarity_feature` (one row per user, the
  embeddings broadcast).

Both are forced with Spark's ``noop`` writer; the values are compared pair by pair.

    PYTHONPATH=. .venv/bin/python bench/bench_ranker_features.py --warehouse /tmp/bn1/n1000000/wh
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from bench.bench_blend import open_warehouse
from recspark.content.recommend import user_profiles
from recspark.ranker.features import content_similarity_feature


def reference_content_similarity(pairs: DataFrame, history: DataFrame, item_embeddings: DataFrame) -> DataFrame:
    """The per-pair join: profile and embedding shipped with every pair, cosine per batch."""
    profiles = user_profiles(history, item_embeddings, None).select("user_idx", "profile")
    vectors = item_embeddings.select(F.col("item_idx").cast("int").alias("item_idx"),
                                     F.col("embedding").cast("array<float>").alias("embedding"))
    joined = pairs.join(profiles, "user_idx").join(vectors, "item_idx").select("user_idx", "item_idx", "profile",
                                                                               "embedding")

    def cosines(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            profile = np.stack(frame["profile"].to_numpy()).astype(np.float64)
            embedding = np.stack(frame["embedding"].to_numpy()).astype(np.float64)
            norms = np.linalg.norm(profile, axis=1) * np.linalg.norm(embedding, axis=1)
            dots = np.einsum("ij,ij->i", profile, embedding)
            yield pd.DataFrame({"user_idx": frame["user_idx"], "item_idx": frame["item_idx"],
                                "content_similarity": np.divide(dots, norms, out=np.zeros_like(dots),
                                                                where=norms > 0)})

    return joined.mapInPandas(cosines, "user_idx int, item_idx int, content_similarity double")


def timed(frame: DataFrame) -> float:
    began = time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warehouse", required=True)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    _, tables = open_warehouse(args.warehouse, [])
    candidates = tables.read("candidates")
    newest = candidates.agg(F.max("run_date")).first()[0]
    pairs = candidates.where(F.col("run_date") == newest).select("user_idx", "item_idx").distinct().localCheckpoint()
    split = tables.read("interactions_split")
    history = split.where(F.col("split") != "test").select("user_idx", "item_idx", "event_ts").localCheckpoint()
    embeddings = tables.read("item_embeddings").localCheckpoint()
    n_pairs, dimension = pairs.count(), len(embeddings.first()["embedding"])
    print(f"{n_pairs:,} pairs, {history.count():,} history rows, {embeddings.count():,} items x {dimension}", flush=True)
    seconds: dict[str, list[float]] = {"reference": [], "recspark": []}
    for _ in range(args.repeats):
        seconds["reference"].append(timed(reference_content_similarity(pairs, history, embeddings)))
        seconds["recspark"].append(timed(content_similarity_feature(pairs, history, embeddings)))
        print({k: [round(v, 1) for v in vs] for k, vs in seconds.items()}, flush=True)
    gap = (reference_content_similarity(pairs, history, embeddings).withColumnRenamed("content_similarity", "a")
           .join(content_similarity_feature(pairs, history, embeddings), ["user_idx", "item_idx"], "full_outer")
           .agg(F.count(F.lit(1)).alias("rows"), F.sum(F.col("a").isNull().cast("int")).alias("only_recspark"),
                F.sum(F.col("content_similarity").isNull().cast("int")).alias("only_reference"),
                F.max(F.abs(F.col("a") - F.col("content_similarity"))).alias("max_abs_difference")).first())
    reference, recspark = statistics.median(seconds["reference"]), statistics.median(seconds["recspark"])
    print(f"| pairs | reference per-pair join (s) | recspark (s) | speed-up | rows | max abs difference |\n"
          f"|---:|---|---|---:|---:|---:|\n"
          f"| {n_pairs:,} | {reference:.1f} ({', '.join(f'{v:.1f}' for v in seconds['reference'])}) "
          f"| {recspark:.1f} ({', '.join(f'{v:.1f}' for v in seconds['recspark'])}) | {reference / recspark:.1f}x "
          f"| {gap['rows']:,} (only one side: {gap['only_reference']} / {gap['only_recspark']}) "
          f"| {gap['max_abs_difference']:.1e} |")


if __name__ == "__main__":
    main()
