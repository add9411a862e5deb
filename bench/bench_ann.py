"""Benchmark: approximate nearest-neighbour search vs exact blocked top-N on item vectors.

For each size, unit item vectors and unit query vectors come from the same Gaussian mixture
(``--clusters`` centres, the embedding-like case: items form topical groups); the exact top-N
(:func:`recspark.recommenders.ann.exact_top_n`, blocked matmul + top-K selection) is the
reference. Each approximate method reports its build time, query time for all queries, recall@N
against the exact lists and the query speed-up over exact (exact time / method time):

* ``kmeans-ivf``: :class:`recspark.recommenders.ann.KMeansIndex` (numpy, sqrt(n) clusters);
* ``faiss-ivf``: faiss ``IndexIVFFlat`` (inner product, sqrt(n) lists);
* ``faiss-hnsw``: faiss ``IndexHNSWFlat`` (inner product, M = 16);
* ``spark-lsh`` (``--spark-lsh-max-items``, default 10k only): Spark's
  ``BucketedRandomProjectionLSH`` ``approxSimilarityJoin`` of the queries with the items at
  Euclidean distance threshold ``--lsh-threshold`` (unit vectors: d^2 = 2 - 2 cos), top-N per
  query taken from the joined pairs.

With ``--embeddings-table PATH`` (an ``item_embeddings`` Delta table, e.g. after ``recspark run``)
the real item vectors are searched too, with queries that are the normalised sum of two random
items' vectors (a two-item profile).

Usage: ``python bench/bench_ann.py --sizes 10000:384 100000:384 1000000:64 --queries 1000``
(size:dimension pairs). The markdown table is printed and, with ``--output``, written there.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np

from recspark.recommenders.ann import KMeansIndex, exact_top_n, faiss_index, recall_at_n


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["10000:384", "100000:384", "1000000:64"],
                        help="n_items:dimension pairs")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--n", type=int, default=10, help="neighbours per query")
    parser.add_argument("--clusters", type=int, default=1000, help="Gaussian mixture centres")
    parser.add_argument("--spread", type=float, default=1.0, help="noise scale around a centre (per unit vector)")
    parser.add_argument("--n-probe", type=int, nargs="+", default=[4, 16], help="IVF lists probed")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 128], help="HNSW efSearch")
    parser.add_argument("--spark-lsh-max-items", type=int, default=10_000)
    parser.add_argument("--lsh-threshold", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embeddings-table", help="item_embeddings Delta table to search as well")
    parser.add_argument("--output")
    return parser.parse_args(argv)


def mixture(n: int, dimension: int, centres: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors: a random centre plus Gaussian noise of norm about ``spread``."""
    vectors = np.empty((n, dimension), dtype=np.float32)
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        picked = centres[rng.integers(0, centres.shape[0], size)]
        noise = rng.standard_normal((size, dimension), dtype=np.float32) * (spread / np.sqrt(dimension))
        block = picked + noise
        vectors[start:start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def spark_lsh(items: np.ndarray, queries: np.ndarray, n: int, threshold: float, seed: int):
    """(indices, build+query seconds) of Spark BRP LSH; the session start is not timed."""
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from recspark.io.session import SparkSettings
    from recspark.io.session import build_spark_session

    spark = build_spark_session(SparkSettings(master="local[2]", app_name="bench-ann", log_level="ERROR",
                                            conf={"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "8"}))
    schema = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("v", VectorUDT())])
    item_df = spark.createDataFrame([(i, Vectors.dense(v)) for i, v in enumerate(items.astype(float))], schema)
    query_df = spark.createDataFrame([(i, Vectors.dense(v)) for i, v in enumerate(queries.astype(float))], schema)
    item_df.cache().count()
    query_df.cache().count()
    start = time.perf_counter()
    lsh = BucketedRandomProjectionLSH(inputCol="v", outputCol="h", bucketLength=1.0, numHashTables=8, seed=seed)
    model = lsh.fit(item_df)
    pairs = model.approxSimilarityJoin(query_df, item_df, threshold, distCol="d").select(
        F.col("datasetA.id").alias("q"), F.col("datasetB.id").alias("i"), "d"
    )
    ranked = pairs.withColumn("r", F.row_number().over(Window.partitionBy("q").orderBy("d", "i"))).where(F.col("r") <= n)
    rows = ranked.collect()
    seconds = time.perf_counter() - start
    indices = np.full((queries.shape[0], n), -1, dtype=np.int64)
    for row in rows:
        indices[row.q, row.r - 1] = row.i
    spark.stop()
    return indices, seconds


def synthetic(n_items: int, dimension: int, args, rng) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.standard_normal((args.clusters, dimension), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return mixture(n_items, dimension, centres, args.spread, rng), mixture(args.queries, dimension, centres, args.spread, rng)


def real_embeddings(path: str, n_queries: int, rng) -> tuple[np.ndarray, np.ndarray]:
    import polars as pl

    items = np.stack(pl.read_delta(path).sort("item_idx")["embedding"].to_numpy()).astype(np.float32)
    pairs = items[rng.integers(0, items.shape[0], (n_queries, 2))].sum(axis=1)
    return items, pairs / np.linalg.norm(pairs, axis=1, keepdims=True)


def bench_size(items: np.ndarray, queries: np.ndarray, label: str, args) -> list[tuple]:
    n_items = items.shape[0]
    (exact, _), exact_s = timed(lambda: exact_top_n(queries, items, args.n))
    rows = [(label, "exact (blocked matmul + top-K)", "-", 0.0, exact_s, 1.0, 1.0)]
    lists = max(1, int(round(np.sqrt(n_items))))
    print(f"{label}: exact {exact_s:.2f}s", flush=True)

    index, build_s = timed(lambda: KMeansIndex(lists, n_iter=8, sample=min(n_items, 50_000), seed=args.seed).fit(items))
    for n_probe in args.n_probe:
        (found, _), query_s = timed(lambda: index.search(queries, args.n, n_probe))
        rows.append((label, f"kmeans-ivf ({lists} clusters)", f"n_probe={n_probe}", build_s, query_s,
                     recall_at_n(found, exact), exact_s / query_s))
        print(rows[-1], flush=True)

    ivf, build_s = timed(lambda: faiss_index(items, "ivf", n_lists=lists, seed=args.seed))
    for n_probe in args.n_probe:
        ivf.nprobe = n_probe
        (_, found), query_s = timed(lambda: ivf.search(queries, args.n))
        rows.append((label, f"faiss-ivf ({lists} lists)", f"nprobe={n_probe}", build_s, query_s,
                     recall_at_n(found, exact), exact_s / query_s))
        print(rows[-1], flush=True)

    hnsw, build_s = timed(lambda: faiss_index(items, "hnsw", hnsw_m=16, ef_construction=40))
    for ef in args.ef_search:
        hnsw.hnsw.efSearch = ef
        (_, found), query_s = timed(lambda: hnsw.search(queries, args.n))
        rows.append((label, "faiss-hnsw (M=16)", f"efSearch={ef}", build_s, query_s,
                     recall_at_n(found, exact), exact_s / query_s))
        print(rows[-1], flush=True)

    if n_items <= args.spark_lsh_max_items:
        found, seconds = spark_lsh(items, queries, args.n, args.lsh_threshold, args.seed)
        rows.append((label, "spark-lsh (BRP, 8 tables)", f"threshold={args.lsh_threshold}", 0.0, seconds,
                     recall_at_n(found, exact), exact_s / seconds))
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[tuple], args, argv: list[str]) -> str:
    lines = [
        "```bash",
        "python bench/bench_ann.py " + shlex.join(argv),
        "```",
        "",
        f"{args.queries} queries, top-{args.n}, inner product on unit vectors from a {args.clusters}-centre "
        f"Gaussian mixture (spread {args.spread}); speed-up = exact query time / method query time.",
        "",
        "| items x dim | method | setting | build (s) | query (s) | recall@N | speed-up vs exact |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for label, method, setting, build_s, query_s, recall, speedup in rows:
        lines.append(f"| {label} | {method} | {setting} | {build_s:.2f} | {query_s:.3f} | {recall:.3f} | {speedup:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    if args.embeddings_table:
        items, queries = real_embeddings(args.embeddings_table, args.queries, rng)
        rows += bench_size(items, queries, f"real {items.shape[0]:,} x {items.shape[1]}", args)
    for size in args.sizes:
        n_items, dimension = (int(part) for part in size.split(":"))
        items, queries = synthetic(n_items, dimension, args, rng)
        rows += bench_size(items, queries, f"{n_items:,} x {dimension}", args)
    section = markdown(rows, args, argv)
    print(section)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(section + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
