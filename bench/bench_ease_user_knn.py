"""Benchmark: EASE and user-KNN against popularity on MovieLens latest-small, quality and cost.

Protocol: every rating is an interaction; a per-user random 75/25 split (seed 42,
``recspark.featurize.splits.random_stratified_split``) gives train and test. Hyper-parameters
are chosen on a validation carve of train only (a seeded per-user 10% of the train pairs, seed
43, as ``train-als`` carves it): EASE's ``lambda`` (one Gram matrix, one solve per value), EASE's
dense vs top-M sparse scoring, user-KNN's metric and ``top_k``. The chosen settings are refitted
on the whole train split and scored once on test (NDCG@10 and friends from
``recspark.evaluation.ranking_metrics``; seen = train). Wall times are one run each on a shared
2-core machine (``local[2]``), lists materialised with ``cache().count()``.

    PYTHONPATH=. .venv/bin/python bench/bench_ease_user_knn.py --output /tmp/ease_user_knn.md
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.io.session import SparkSettings
from recspark.featurize.splits import SplitSettings
from recspark.evaluation import ranking_metrics
from recspark.featurize.splits import random_stratified_split
from recspark.recommenders.ease import EaseModel, EaseSettings, ease_weights, gram_matrix, torch_device
from recspark.recommenders.popularity import PopularityRecommender
from recspark.recommenders.user_knn import UserKnn, UserKnnSettings
from recspark.io.session import build_spark_session

REPO_ROOT = Path(__file__).resolve().parent.parent
MOVIELENS_RATINGS = REPO_ROOT / "data" / "ml-latest-small" / "ratings.csv"
K = 10
LAMBDAS = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
SPARSE_NEIGHBOURS = (50, 200, 500, 1000)
KNN_GRID = [(metric, top_k) for metric in ("cosine", "jaccard") for top_k in (20, 50, 100, 200)]
REPORTED = ("ndcg@k", "precision@k", "recall@k", "f1@k", "map@k")


def split_pairs(frame: DataFrame, ratio: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """(train, held out): a seeded per-user ``ratio`` share of each user's pairs held out."""
    config = SplitSettings(method="random_stratified", stratify_by="user", test_ratio=ratio, seed=seed)
    labelled = random_stratified_split(frame, config)
    return (
        labelled.where(F.col("split") == "train").drop("split").cache(),
        labelled.where(F.col("split") == "test").drop("split").cache(),
    )


def movielens(spark: SparkSession, path: Path) -> DataFrame:
    """(user_id, item_id, user_idx, item_idx): MovieLens ids are already integers."""
    ratings = spark.read.csv(str(path), header=True, inferSchema=True)
    return ratings.select(
        F.col("userId").alias("user_id"),
        F.col("movieId").alias("item_id"),
        F.col("userId").cast("int").alias("user_idx"),
        F.col("movieId").cast("int").alias("item_idx"),
    ).distinct()


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def materialised(frame: DataFrame) -> DataFrame:
    frame = frame.cache()
    frame.count()
    return frame


def evaluate(lists: DataFrame, truth: DataFrame) -> dict[str, float]:
    return ranking_metrics(lists, truth, K, user_col="user_idx", item_col="item_idx")


def users_of(frame: DataFrame) -> DataFrame:
    return frame.select("user_idx").distinct()


def tune_ease(train: DataFrame, validation: DataFrame, lines: list[str]) -> tuple[float, int | None]:
    (item_ids, gram), gram_s = timed(lambda: gram_matrix(train, 30_000))
    lines.append(f"EASE validation ({item_ids.size} items, Gram matrix from Spark in {gram_s:.1f} s):\n")
    lines.append("| lambda | scoring | solve s | recommend s | NDCG@10 |\n|---|---|---|---|---|")
    best = (-1.0, 0.0)
    weights_of = {}
    for reg_lambda in LAMBDAS:
        weights, solve_s = timed(lambda: ease_weights(gram.copy(), reg_lambda, torch_device("auto")))
        model = EaseModel(item_ids, weights, EaseSettings(reg_lambda=reg_lambda))
        lists, rec_s = timed(lambda: materialised(model.recommend(users_of(validation), K, train)))
        ndcg = evaluate(lists, validation)["ndcg@k"]
        lists.unpersist()
        lines.append(f"| {reg_lambda:g} | dense | {solve_s:.1f} | {rec_s:.1f} | {ndcg:.4f} |")
        weights_of[reg_lambda] = weights
        best = max(best, (ndcg, reg_lambda))
    best_ndcg, reg_lambda = best
    best_scoring: tuple[float, int | None] = (best_ndcg, None)
    for top_n in SPARSE_NEIGHBOURS:
        settings = EaseSettings(reg_lambda=reg_lambda, dense_max_items=0, top_n_neighbours=top_n)
        model = EaseModel(item_ids, weights_of[reg_lambda], settings)
        lists, rec_s = timed(lambda: materialised(model.recommend(users_of(validation), K, train)))
        ndcg = evaluate(lists, validation)["ndcg@k"]
        lists.unpersist()
        lines.append(f"| {reg_lambda:g} | top {top_n} per item | - | {rec_s:.1f} | {ndcg:.4f} |")
        if ndcg > best_scoring[0]:
            best_scoring = (ndcg, top_n)
    lines.append("")
    return reg_lambda, best_scoring[1]


def tune_user_knn(train: DataFrame, validation: DataFrame, lines: list[str]) -> UserKnnSettings:
    lines.append("User-KNN validation (min_support 2, max_items_per_user 500):\n")
    lines.append("| metric | top_k | fit+recommend s | NDCG@10 |\n|---|---|---|---|")
    best = (-1.0, None)
    for metric, top_k in KNN_GRID:
        settings = UserKnnSettings(metric=metric, top_k=top_k)

        def run():
            model = UserKnn(settings).fit(train)
            return materialised(model.recommend(users_of(validation), K, seen=train))

        lists, seconds = timed(run)
        ndcg = evaluate(lists, validation)["ndcg@k"]
        lists.unpersist()
        lines.append(f"| {metric} | {top_k} | {seconds:.1f} | {ndcg:.4f} |")
        if ndcg > best[0]:
            best = (ndcg, settings)
    lines.append("")
    return best[1]


def test_rows(train: DataFrame, test: DataFrame, ease_settings: EaseSettings, knn: UserKnnSettings) -> list[str]:
    users = users_of(test)
    rows = []

    def report(name: str, fit, recommend) -> None:
        model, fit_s = timed(fit)
        lists, rec_s = timed(lambda: materialised(recommend(model)))
        metrics = evaluate(lists, test)
        lists.unpersist()
        values = " | ".join(f"{metrics[key]:.4f}" for key in REPORTED)
        rows.append(f"| {name} | {fit_s:.1f} | {rec_s:.1f} | {values} |")

    report(
        "popularity",
        lambda: PopularityRecommender(k=K).fit(train),
        lambda model: model.recommend(users, seen=train),
    )
    from recspark.recommenders.ease import Ease

    report(
        f"EASE lambda={ease_settings.reg_lambda:g}, "
        + (f"top {ease_settings.top_n_neighbours} per item" if ease_settings.dense_max_items == 0 else "dense"),
        lambda: Ease(ease_settings).fit(train),
        lambda model: model.recommend(users, K, train),
    )
    report(
        f"user-KNN {knn.metric}, top_k={knn.top_k}",
        lambda: UserKnn(knn).fit(train),
        lambda model: model.recommend(users, K, seen=train),
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=Path, default=MOVIELENS_RATINGS)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    spark = build_spark_session(
        SparkSettings(
            master="local[2]",
            app_name="bench-ease-user-knn",
            conf={"spark.driver.memory": "6g", "spark.driver.maxResultSize": "2g",
                  "spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"},
        )
    )
    interactions = movielens(spark, args.ratings)
    train, test = split_pairs(interactions, 0.25, seed=42)
    tuning_train, validation = split_pairs(train, 0.1, seed=43)
    lines = [
        "## EASE and user-KNN on MovieLens latest-small (per-user 75/25, seed 42)\n",
        f"`{' '.join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])}`; {train.count()} train and "
        f"{test.count()} test pairs; choices on a 10% validation carve of train "
        f"({validation.count()} pairs).\n",
    ]
    reg_lambda, top_n = tune_ease(tuning_train, validation, lines)
    knn = tune_user_knn(tuning_train, validation, lines)
    ease_settings = (EaseSettings(reg_lambda=reg_lambda) if top_n is None
                     else EaseSettings(reg_lambda=reg_lambda, dense_max_items=0, top_n_neighbours=top_n))
    lines.append("Test (settings chosen on validation; fit on the whole train split; seen = train):\n")
    lines.append("| model | fit s | recommend s | NDCG@10 | precision@10 | recall@10 | F1@10 | MAP@10 |")
    lines.append("|---|---|---|---|---|---|---|---|")
    lines += test_rows(train, test, ease_settings, knn)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    spark.stop()


if __name__ == "__main__":
    main()
