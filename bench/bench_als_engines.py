"""ALS engines side by side: MLlib vs the implicit library on the same split, same params.

Usage: ``python bench/bench_als_engines.py [--search] [movielens|synthetic ...]`` (default both).

movielens: data/ml-latest-small ratings; synthetic: 1,000,000 generator events (10,000 users x
5,000 items, GenerateSettings defaults). Pairs are aggregated to one row per (user, item) with
``confidence = 1 + ln(1 + n_events)`` (the featurize default), split per user 75/25
(:func:`recspark.featurize.splits.random_stratified_split`), and both engines fit implicit ALS
with rank 32, reg_param 0.05, alpha 5, 10 sweeps, seed 42 through
:func:`recspark.recommenders.als_engines.fit_als` on ``local[2]``. Reported: fit seconds (MLlib:
the Spark job; implicit: Arrow collect + CSR + fit + factor frames) and NDCG@10 of the top 10
unseen items per test user (:func:`recspark.evaluation.ranking_metrics`).

``--search``: what train-als does instead of fixed params: per engine, the implicit points of the
default ``als.grid`` (rank 16, reg_param {0.01, 0.1}, alpha {1, 5}, 15 sweeps) searched on a 10%
per-user carve of train (:func:`recspark.recommenders.als_tuning.search_on_split`), the best
refitted on all train pairs; reported: search + refit seconds, the chosen params and test NDCG@10.
"""
from __future__ import annotations

import sys
import tempfile
import time

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.io.session import SparkSettings
from recspark.featurize.splits import SplitSettings
from recspark.evaluation import ranking_metrics
from recspark.featurize.splits import random_stratified_split
from recspark.recommenders.als import ALSRecommender, AlsGrid, AlsSettings, als_estimator
from recspark.recommenders.als_engines import AlsEngineSettings, engine_fit, fit_als
from recspark.recommenders.als_tuning import search_on_split
from recspark.io.session import build_spark_session
from recspark.synthetic import GenerateSettings, generate_interactions

ESTIMATOR = ALSRecommender(rank=32, reg_param=0.05, alpha=5.0, max_iter=10, seed=42)


def movielens_events(spark) -> DataFrame:
    ratings = pd.read_csv("data/ml-latest-small/ratings.csv")
    frame = pd.DataFrame({"user_id": ratings["userId"].astype(str), "item_id": ratings["movieId"].astype(str)})
    return spark.createDataFrame(frame)


def synthetic_events(spark) -> DataFrame:
    return generate_interactions(spark, GenerateSettings(num_partitions=4)).select("user_id", "item_id")


def split_pairs(events: DataFrame) -> tuple[DataFrame, DataFrame]:
    pairs = events.groupBy("user_id", "item_id").agg(F.count(F.lit(1)).alias("n_events"))
    users = pairs.select("user_id").distinct().withColumn("user_idx", F.dense_rank().over(_by("user_id")) - 1)
    items = pairs.select("item_id").distinct().withColumn("item_idx", F.dense_rank().over(_by("item_id")) - 1)
    indexed = pairs.join(users, "user_id").join(items, "item_id").withColumn(
        "confidence", 1.0 + F.log1p(F.col("n_events").cast("double"))
    )
    split = random_stratified_split(indexed, SplitSettings()).localCheckpoint()
    return split.where("split = 'train'").cache(), split.where("split = 'test'").select("user_idx", "item_idx").cache()


def _by(column: str):
    from pyspark.sql import Window

    return Window.orderBy(column)


def search_and_refit(train: DataFrame, test: DataFrame, users: DataFrame, engine: str) -> tuple[float, dict, float]:
    """(seconds, chosen params, test NDCG@10) of train-als's search + refit on ``engine``."""
    settings = AlsSettings(grid=AlsGrid(implicit_prefs=[True]))
    fit = engine_fit(engine, AlsEngineSettings(engine=engine))
    began = time.perf_counter()
    search = search_on_split(train, settings, 10, split_seed=42, fit=fit)
    model = fit(als_estimator(settings).copy(**search.best.params), train)
    model.item_factors.count()
    seconds = time.perf_counter() - began
    recommendations = model.recommend(10, seen=train.select("user_idx", "item_idx"), users=users)
    return seconds, search.best.params, ranking_metrics(recommendations, test, 10, "user_idx", "item_idx")["ndcg@k"]


def main(argv: list[str]) -> None:
    search = "--search" in argv
    datasets = [a for a in argv[1:] if a != "--search"] or ["movielens", "synthetic"]
    spark = build_spark_session(SparkSettings(master="local[2]", app_name="bench-als-engines"))
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp())
    for name in datasets:
        events = movielens_events(spark) if name == "movielens" else synthetic_events(spark)
        train, test = split_pairs(events)
        users = test.select("user_idx").distinct()
        print(f"{name}: {train.count():,} train pairs, {test.count():,} test pairs", flush=True)
        if search:
            for engine in ("mllib", "implicit"):
                seconds, params, ndcg = search_and_refit(train, test, users, engine)
                chosen = {key: params[key] for key in ("rank", "reg_param", "alpha")}
                print(f"  {engine:<8} search+refit {seconds:7.1f} s  chosen {chosen}  test ndcg@10 {ndcg:.4f}", flush=True)
            continue
        results = {}
        for engine in ("mllib", "implicit"):
            began = time.perf_counter()
            model = fit_als(ESTIMATOR, train, AlsEngineSettings(engine=engine))
            model.item_factors.count()
            seconds = time.perf_counter() - began
            recommendations = model.recommend(10, seen=train.select("user_idx", "item_idx"), users=users)
            ndcg = ranking_metrics(recommendations, test, 10, "user_idx", "item_idx")["ndcg@k"]
            results[engine] = (seconds, ndcg)
            print(f"  {engine:<8} fit {seconds:7.1f} s  ndcg@10 {ndcg:.4f}", flush=True)
        (m_s, m_n), (i_s, i_n) = results["mllib"], results["implicit"]
        print(f"  mllib/implicit fit time {m_s / i_s:.1f}x, ndcg@10 difference {i_n - m_n:+.4f}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
