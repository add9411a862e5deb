"""How much personal signal the synthetic generator's data holds: implicit ALS vs popularity.

Usage: ``python bench/bench_synthetic_signal.py [n_interactions [n_users n_items]]`` (default
1,000,000 events, 10,000 users, 5,000 items; other fields at their GenerateSettings defaults).

Generates the events, aggregates them to one row per (user, item) with ``confidence = 1 +
ln(1 + n_events)`` (the featurize default), splits each user's pairs 75/25 at random
(:func:`recspark.featurize.splits.random_stratified_split`), fits popularity (distinct users
per item) and implicit ALS (MLlib, rank 32, reg 0.05, alpha 5, 10 sweeps) on the 75%, and scores
the top 10 unseen items per test user with :func:`recspark.evaluation.ranking_metrics` (every
test pair relevant). Prints the data description (density, popularity skew, per-user counts)
and NDCG@10 of both.
"""
from __future__ import annotations

import sys
import tempfile
import time

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.io.session import SparkSettings
from recspark.featurize.splits import SplitSettings
from recspark.evaluation import ranking_metrics
from recspark.featurize.splits import random_stratified_split
from recspark.recommenders.als import ALSRecommender
from recspark.recommenders.popularity import PopularityRecommender
from recspark.io.session import build_spark_session
from recspark.synthetic import GenerateSettings, generate_interactions

K = 10


def describe(events: DataFrame, pairs: DataFrame, settings: GenerateSettings) -> dict[str, float]:
    """Density, popularity skew and per-user count quantiles of generated events and pairs."""
    n_pairs = pairs.count()
    users = pairs.select("user_id").distinct().count()
    items = pairs.select("item_id").distinct().count()
    per_item = events.groupBy("item_id").count().orderBy(F.desc("count")).toPandas()["count"]
    top = max(1, settings.n_items // 100)
    per_user = pairs.groupBy("user_id").count().toPandas()["count"]
    quantiles = per_user.quantile([0.1, 0.5, 0.9, 0.99]).to_dict()
    return {
        "events": settings.n_interactions,
        "distinct_pairs": n_pairs,
        "users_seen": users,
        "items_seen": items,
        "density": n_pairs / (settings.n_users * settings.n_items),
        "top_1pct_item_share": float(per_item.iloc[:top].sum() / per_item.sum()),
        "top_10pct_item_share": float(per_item.iloc[: settings.n_items // 10].sum() / per_item.sum()),
        **{f"user_pairs_p{int(q * 100)}": v for q, v in quantiles.items()},
    }


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 1_000_000
    sizes = {"n_users": int(argv[2]), "n_items": int(argv[3])} if len(argv) > 3 else {}
    settings = GenerateSettings(n_interactions=n, num_partitions=4, **sizes)
    spark = build_spark_session(SparkSettings(master="local[2]", app_name="bench-synthetic-signal"))
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp())
    began = time.perf_counter()
    events = generate_interactions(spark, settings).localCheckpoint()
    pairs = events.groupBy("user_id", "item_id").agg(F.count(F.lit(1)).alias("n_events"))
    indexed = (
        pairs.withColumn("user_idx", F.regexp_extract("user_id", r"(\d+)", 1).cast("int"))
        .withColumn("item_idx", F.regexp_extract("item_id", r"(\d+)", 1).cast("int"))
        .withColumn("confidence", 1.0 + F.log1p(F.col("n_events").cast("double")))
    )
    split = random_stratified_split(indexed, SplitSettings()).localCheckpoint()
    print(f"generated and split in {time.perf_counter() - began:.1f} s")
    for key, value in describe(events, pairs, settings).items():
        print(f"  {key}: {value:,.4f}" if isinstance(value, float) else f"  {key}: {value:,}")
    train = split.where("split = 'train'")
    test = split.where("split = 'test'").select("user_idx", "item_idx")
    seen = train.select("user_idx", "item_idx")
    users = test.select("user_idx").distinct()
    popularity = PopularityRecommender(k=K).fit(train).recommend(users, seen=seen)
    pop = ranking_metrics(popularity, test, K, "user_idx", "item_idx")
    print(f"popularity ndcg@10 {pop['ndcg@k']:.4f}")
    began = time.perf_counter()
    als = ALSRecommender(rank=32, reg_param=0.05, alpha=5.0, max_iter=10).fit(train)
    scores = ranking_metrics(als.recommend(K, seen=seen, users=users), test, K, "user_idx", "item_idx")
    print(f"mllib implicit ALS ndcg@10 {scores['ndcg@k']:.4f} ({time.perf_counter() - began:.1f} s)")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
