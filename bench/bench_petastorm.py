"""Benchmark: the Spark side of deep training and scoring on MovieLens-sized data.

1. Petastorm loaders over the training examples (MovieLens positives + ``--negatives`` sampled
   negatives each, materialised by ``make_converter``): rows/s of ``shard_batches`` (Petastorm's
   ``BatchedDataLoader``, dummy reader pool) vs Petastorm's default per-row ``DataLoader`` on the
   same reader settings (the reference), reading shard 0 of 2.
2. Reader pools with ``cur_shard``/``shard_count``: rows returned per shard read by the ``dummy``
   pool (ours) and the ``thread`` pool, over ``--pool-reads`` reads of each shard; a read
   returning 0 rows for a shard that has data is a failure.
3. Batch scoring of (user, item) pairs with a NeuMF model: ``score_pairs_frame`` in Spark
   (mapInPandas, broadcast weights) vs ``score_pairs`` in this process (the reference), rows/s.

Each timing is the median of ``--repeats`` runs. The markdown section is printed and, with
``--output``, written to that file.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from petastorm.pytorch import DataLoader
from pyspark.sql import Window
from pyspark.sql import functions as F

from recspark.io.session import SparkSettings
from recspark.deep.examples import training_examples
from recspark.deep.models import build_model
from recspark.deep.ranking import score_pairs
from recspark.deep.scoring import score_pairs_frame
from recspark.io.petastorm import delete_converter, make_converter, shard_batches
from recspark.io.session import build_spark_session

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RATINGS = REPO_ROOT / "data" / "ml-latest-small" / "ratings.csv"
COLUMNS = ("user_idx", "item_idx", "label")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", default=str(DEFAULT_RATINGS), help="ratings.csv: userId,movieId,...")
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool-reads", type=int, default=10)
    parser.add_argument("--cache-dir", default="/tmp/recspark-bench-petastorm")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--output", help="write the markdown section to this file")
    return parser.parse_args(argv)


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def count_rows_batched(converter) -> int:
    return sum(len(b["label"]) for b in shard_batches(converter, 0, 2, 1024, seed=0, columns=COLUMNS))


def count_rows_default(converter, batch_size: int) -> int:
    with converter.make_torch_dataloader(
        batch_size=batch_size, num_epochs=1, data_loader_fn=DataLoader, cur_shard=0, shard_count=2,
        reader_pool_type="dummy", shuffle_row_groups=True, seed=0, schema_fields=list(COLUMNS),
    ) as loader:
        return sum(len(b["label"]) for b in loader)


def rows_per_shard_read(converter, pool: str, shard: int) -> int:
    with converter.make_torch_dataloader(
        batch_size=4096, num_epochs=1, data_loader_fn=DataLoader if pool == "thread" else None, cur_shard=shard,
        shard_count=2, reader_pool_type=pool, schema_fields=list(COLUMNS),
    ) as loader:
        return sum(len(b["label"]) for b in loader)


def main(argv: list[str]) -> str:
    args = parse_args(argv)
    spark = build_spark_session(SparkSettings(master=args.master, conf={"spark.ui.enabled": "false",
                                                                      "spark.sql.shuffle.partitions": "8"}))
    ratings = spark.read.csv(args.ratings, header=True, inferSchema=True)
    users = ratings.select("userId").distinct().withColumn("user_idx", F.dense_rank().over(
        Window.orderBy("userId")) - 1)
    items = ratings.select("movieId").distinct().withColumn("item_idx", F.dense_rank().over(
        Window.orderBy("movieId")) - 1)
    positives = ratings.join(users, "userId").join(items, "movieId").select("user_idx", "item_idx").cache()
    num_users, num_items = users.count(), items.count()
    examples = training_examples(positives, items.select("item_idx"), args.negatives, seed=42).cache()
    n_examples = examples.count()
    converter = make_converter(spark, examples, args.cache_dir, min_row_groups=8)
    lines = []
    try:
        batched_s, batched_rows = median_time(lambda: count_rows_batched(converter), args.repeats)
        default_s, default_rows = median_time(lambda: count_rows_default(converter, args.batch_size), args.repeats)
        shard_rows = {s: rows_per_shard_read(converter, "dummy", s) for s in (0, 1)}
        failures = {}
        for pool in ("dummy", "thread"):
            reads = [rows_per_shard_read(converter, pool, s) for _ in range(args.pool_reads) for s in (0, 1)]
            failures[pool] = sum(1 for r in reads if r == 0)
    finally:
        delete_converter(converter)

    torch.manual_seed(0)
    model = build_model("neumf", num_users, num_items).eval()
    pairs = examples.select("user_idx", "item_idx").cache()
    pairs.count()
    user_idx, item_idx = (np.asarray(c) for c in zip(*[(r.user_idx, r.item_idx) for r in pairs.collect()]))
    spark_s, _ = median_time(lambda: score_pairs_frame(pairs, model).write.format("noop").mode("overwrite").save(),
                             args.repeats)
    local_s, _ = median_time(lambda: score_pairs(model, user_idx, item_idx), args.repeats)

    command = "PYTHONPATH=. .venv/bin/python bench/bench_petastorm.py " + shlex.join(argv)
    lines += [
        "## Petastorm loaders and Spark batch scoring (deep models)", "",
        f"Command: `{command.strip()}`", "",
        f"MovieLens latest-small: {n_examples:,} training examples ({args.negatives} negatives per positive), "
        f"{num_users} users x {num_items} items; shard 0 of 2 holds {shard_rows[0]:,} rows, shard 1 {shard_rows[1]:,}. "
        f"Median of {args.repeats} runs, master {args.master}, torch threads {torch.get_num_threads()}.", "",
        "| what | recspark | reference | recspark | reference | ratio |",
        "|---|---|---|---:|---:|---:|",
        f"| read shard 0 of 2, batch {args.batch_size} | `shard_batches` (BatchedDataLoader, dummy pool) | "
        f"Petastorm `DataLoader` (per-row collation) | {batched_rows / batched_s:,.0f} rows/s | "
        f"{default_rows / default_s:,.0f} rows/s | {default_s / batched_s:.1f}x |",
        f"| score {n_examples:,} pairs with NeuMF | `score_pairs_frame` (Spark mapInPandas) | `score_pairs` in one "
        f"process | {n_examples / spark_s:,.0f} rows/s | {n_examples / local_s:,.0f} rows/s | {local_s / spark_s:.2f}x |",
        "",
        f"Sharded reads returning 0 rows (of {2 * args.pool_reads}): dummy pool {failures['dummy']}, "
        f"thread pool {failures['thread']}.", "",
    ]
    section = "\n".join(lines)
    print(section)
    if args.output:
        Path(args.output).write_text(section)
    return section


if __name__ == "__main__":
    main(sys.argv[1:])
