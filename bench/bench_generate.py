"""Throughput of the Spark synthetic-log generator against a single-process numpy reference.

Usage: ``python bench/bench_generate.py [n_interactions]`` (default 1,000,000).

Both sides generate ``n_interactions`` events of the same distribution (see
:mod:`recspark.synthetic`) with the default GenerateSettings sizes and write them as CSV to a
temporary directory; the timed part is generation plus the CSV write, after one small warm-up
run each (JVM start-up, JIT and imports are not timed), and the best of REPEATS runs counts
(the least disturbed by other load on a shared machine). The numpy reference draws its random
numbers from ``numpy.random.default_rng`` instead of hashes, so its values differ from Spark's
while the distribution is the same. Prints rows/s of both and their ratio.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recspark import synthetic
from recspark.io.session import SparkSettings
from recspark.io.session import build_spark_session
from recspark.synthetic import GenerateSettings

WARM_UP_ROWS = 20_000
REPEATS = 3


def _power_law_ranks(u: np.ndarray, n: int, exponent: float) -> np.ndarray:
    if abs(1.0 - exponent) < 1e-9:
        continuous = (n + 1.0) ** u
    else:
        continuous = (1.0 + u * ((n + 1.0) ** (1.0 - exponent) - 1.0)) ** (1.0 / (1.0 - exponent))
    return np.clip(np.floor(continuous).astype(np.int64) - 1, 0, n - 1)


def _ids(prefix: str, count: int) -> pa.Array:
    width = max(synthetic.ID_DIGITS, len(str(count - 1)))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(count)])


def reference_numpy_generate(cfg: GenerateSettings, path: str) -> None:
    """Vectorised single-process version of ``synthetic.generate_interactions``, written as CSV."""
    rng = np.random.default_rng(cfg.seed)
    start, end = synthetic.time_range(cfg)
    span, n = end - start, cfg.n_interactions

    user_of_rank = rng.permutation(cfg.n_users)
    user_factors = rng.standard_normal((cfg.n_users, cfg.latent_dim))
    user_bias = synthetic.USER_BIAS_SD * rng.standard_normal(cfg.n_users)
    min_window = synthetic.MIN_WINDOW_FRACTION
    length = np.floor(span * (min_window + (1 - min_window) * rng.random(cfg.n_users)))
    window_start = start + np.floor((span - length) * rng.random(cfg.n_users))
    window_end = window_start + length

    item_of_rank = rng.permutation(cfg.n_items)
    item_factors = rng.standard_normal((cfg.n_items, cfg.latent_dim))
    item_bias = synthetic.ITEM_BIAS_SD * rng.standard_normal(cfg.n_items)
    release_u = rng.random(cfg.n_items)
    release_ts = np.where(
        rng.random(cfg.n_items) < synthetic.BACK_CATALOGUE_SHARE,
        start - 1 - np.floor(release_u * synthetic.BACK_CATALOGUE_YEARS * synthetic.SECONDS_PER_YEAR),
        start + np.floor(release_u * synthetic.NEW_RELEASE_FRACTION * span),
    )

    directions = synthetic.taste_directions(cfg)
    item_cluster = (item_factors @ directions.T).argmax(axis=1)
    weights = np.exp(cfg.taste_sharpness * (user_factors @ directions.T))
    taste_cdf = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    # items of each cluster in popularity order (rank of the item among all items)
    rank_of_item = np.empty(cfg.n_items, dtype=np.int64)
    rank_of_item[item_of_rank] = np.arange(cfg.n_items)
    members = [item_of_rank[np.sort(rank_of_item[item_cluster == c])] for c in range(cfg.taste_clusters)]

    users = user_of_rank[_power_law_ranks(rng.random(n), cfg.n_users, cfg.user_activity_exponent)]
    items = item_of_rank[_power_law_ranks(rng.random(n), cfg.n_items, cfg.item_popularity_exponent)]
    personal = rng.random(n) < cfg.personal_share
    cluster_u = rng.random(n)
    cluster = np.minimum((taste_cdf[users] <= cluster_u[:, None]).sum(axis=1), cfg.taste_clusters - 1)
    item_u = rng.random(n)
    for c, pool in enumerate(members):
        chosen = personal & (cluster == c) & (len(pool) > 0)
        items[chosen] = pool[_power_law_ranks(item_u[chosen], len(pool), cfg.item_popularity_exponent)]
    affinity = np.einsum("nd,nd->n", user_factors[users], item_factors[items])
    affinity *= synthetic.AFFINITY_SCALE / np.sqrt(cfg.latent_dim)
    is_implicit = rng.random(n) < cfg.implicit_share

    raw = 3.0 + user_bias[users] + item_bias[items] + affinity
    raw += synthetic.RATING_NOISE * rng.standard_normal(n)
    rating = np.clip(np.floor(raw * 2.0 + 0.5) / 2.0, 0.5, 5.0)
    earliest = np.maximum(window_start[users], release_ts[items])
    latest = np.maximum(window_end[users], np.minimum(earliest + synthetic.LATE_VISIT_SECONDS, end))
    timestamp = np.minimum(earliest + np.floor(rng.random(n) * (latest - earliest + 1)), latest)
    event_type = np.where(is_implicit, np.where(rng.random(n) < synthetic.PLAY_SHARE, 1, 2), 0)

    table = pa.table(
        {
            "user_id": pc.take(_ids("u", cfg.n_users), pa.array(users)),
            "item_id": pc.take(_ids("i", cfg.n_items), pa.array(items)),
            "event_type": pc.take(pa.array(["rating", "play", "click"]), pa.array(event_type)),
            "rating": pa.array(rating, mask=is_implicit),
            "timestamp": pa.array(timestamp.astype(np.int64)),
        }
    )
    pacsv.write_csv(table.select(synthetic.INTERACTIONS_CSV_COLUMNS), path)


def spark_generate(spark, cfg: GenerateSettings, path: str) -> None:
    """``synthetic.generate_interactions`` written as CSV with a header (one file per partition)."""
    synthetic.generate_interactions(spark, cfg).write.mode("overwrite").option("header", True).csv(path)


def timed(run, cfg: GenerateSettings, path: str) -> float:
    """Fastest of REPEATS runs at cfg's size in seconds, after a warm-up run at WARM_UP_ROWS."""
    run(dataclasses.replace(cfg, n_interactions=WARM_UP_ROWS), path)
    seconds = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        run(cfg, path)
        seconds.append(time.perf_counter() - began)
    return min(seconds)


def main(argv: list[str]) -> None:
    n_interactions = int(argv[1]) if len(argv) > 1 else 1_000_000
    cfg = GenerateSettings(n_interactions=n_interactions)
    spark = build_spark_session(SparkSettings(master="local[*]", app_name="bench-generate"))
    cores = spark.sparkContext.defaultParallelism
    with tempfile.TemporaryDirectory() as tmp:
        spark_s = timed(lambda c, p: spark_generate(spark, c, p), cfg, os.path.join(tmp, "spark"))
        numpy_s = timed(reference_numpy_generate, cfg, os.path.join(tmp, "numpy.csv"))
    spark.stop()
    spark_rate, numpy_rate = n_interactions / spark_s, n_interactions / numpy_s
    print(f"rows: {n_interactions:,}  users: {cfg.n_users:,}  items: {cfg.n_items:,}  spark cores: {cores}")
    for label, seconds, rate in [
        (f"spark ({cfg.num_partitions} partitions)", spark_s, spark_rate),
        ("numpy reference (1 process)", numpy_s, numpy_rate),
    ]:
        print(f"{label:<28} -> CSV: {seconds:8.2f} s  {rate:12,.0f} rows/s")
    print(f"spark / numpy throughput ratio: {spark_rate / numpy_rate:.2f}")


if __name__ == "__main__":
    main(sys.argv)
