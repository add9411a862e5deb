"""Benchmark: ``top_k_by_dot_product`` vs ``ALSModel.recommendForAllUsers`` on the same factors.

Default: fit ALS on the bundled MovieLens ratings, then time both top-K paths on that model
(seen-item masking off, since ALS cannot mask). With ``--synthetic-users/--synthetic-items``,
random normal factor matrices of ``--rank`` replace the ALS fit, wrapped in an ``ALSModel`` so
the baseline can still run (``--no-baseline`` skips it at sizes where it takes too long).

Each run is forced completely with Spark's ``noop`` writer; runs of the two methods are
interleaved and the median of ``--repeats`` is reported (the first run includes JVM and Python
worker warm-up). Agreement is computed in Spark, per user: identical ordered lists, identical
sets, lists equal up to ties (rank-by-rank scores within 1e-5), mean Jaccard of the sets, and
the largest score difference on shared (user, item) pairs.

The markdown section is printed and, with ``--output``, written to that file.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import pyspark
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.io.session import SparkSettings
from recspark.recommenders.topk import DEFAULT_BLOCK_SIZE, top_k_by_dot_product
from recspark.io.session import build_spark_session

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RATINGS = REPO_ROOT / "data" / "ml-latest-small" / "ratings.csv"
USER_COL, ITEM_COL = "user", "item"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ratings", default=str(DEFAULT_RATINGS), help="ratings.csv: userId,movieId,rating,..."
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--reg-param", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    parser.add_argument("--synthetic-users", type=int, help="random user factors instead of ALS")
    parser.add_argument("--synthetic-items", type=int, help="random item factors instead of ALS")
    parser.add_argument(
        "--partitions", type=int, default=8, help="partitions of the synthetic factor frames"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip recommendForAllUsers")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--output", help="write the markdown section to this file")
    args = parser.parse_args(argv)
    if (args.synthetic_users is None) != (args.synthetic_items is None):
        parser.error("--synthetic-users and --synthetic-items go together")
    return args


def als_on_movielens(spark: SparkSession, args: argparse.Namespace) -> tuple[ALSModel, str]:
    ratings = spark.read.csv(
        args.ratings, header=True, schema="userId int, movieId int, rating float, timestamp long"
    )
    model = ALS(
        rank=args.rank,
        maxIter=args.max_iter,
        regParam=args.reg_param,
        seed=args.seed,
        userCol=USER_COL,
        itemCol=ITEM_COL,
        ratingCol="rating",
    ).fit(ratings.withColumnRenamed("userId", USER_COL).withColumnRenamed("movieId", ITEM_COL))
    n_users, n_items = model.userFactors.count(), model.itemFactors.count()
    data = (
        f"MovieLens `{Path(args.ratings).parent.name}` ({n_users:,} users x {n_items:,} items), "
        f"ALS rank {args.rank}, maxIter {args.max_iter}, regParam {args.reg_param}, "
        f"seed {args.seed}"
    )
    return model, data


def random_factors(
    spark: SparkSession, n_rows: int, rank: int, seed: int, partitions: int
) -> DataFrame:
    """(id int, features array<float>) with N(0, 1) entries; deterministic for a seed and layout."""
    features = F.array(*[F.randn(seed * 1000 + j) for j in range(rank)]).cast("array<float>")
    return (
        spark.range(0, n_rows, numPartitions=partitions)
        .select(F.col("id").cast("int").alias("id"), features.alias("features"))
        .cache()
    )


def synthetic_model(spark: SparkSession, args: argparse.Namespace) -> tuple[ALSModel, str]:
    users = random_factors(spark, args.synthetic_users, args.rank, args.seed, args.partitions)
    items = random_factors(spark, args.synthetic_items, args.rank, args.seed + 1, args.partitions)
    users.count(), items.count()
    java_model = spark._jvm.org.apache.spark.ml.recommendation.ALSModel(
        "bench-synthetic", args.rank, users._jdf, items._jdf
    )
    # The constructor sets no defaults; ALS.fit would have copied these from the estimator.
    java_model.setUserCol(USER_COL).setItemCol(ITEM_COL).setPredictionCol("prediction")
    data = (
        f"synthetic N(0,1) factors ({args.synthetic_users:,} users x {args.synthetic_items:,} "
        f"items), rank {args.rank}, seed {args.seed}, {args.partitions} user partitions"
    )
    return ALSModel(java_model), data


def ours(model: ALSModel, args: argparse.Namespace) -> DataFrame:
    return top_k_by_dot_product(
        model.userFactors.withColumnRenamed("id", USER_COL),
        model.itemFactors.withColumnRenamed("id", ITEM_COL),
        k=args.k,
        user_col=USER_COL,
        item_col=ITEM_COL,
        block_size=args.block_size,
    )


def als_top_k(model: ALSModel, k: int) -> DataFrame:
    """recommendForAllUsers exploded to (user, item, score, rank)."""
    return model.recommendForAllUsers(k).select(
        F.col(USER_COL), F.posexplode("recommendations").alias("position", "rec")
    ).select(
        USER_COL,
        F.col(f"rec.{ITEM_COL}").alias(ITEM_COL),
        F.col("rec.rating").alias("score"),
        (F.col("position") + 1).alias("rank"),
    )


def time_run(make_frame) -> float:
    start = time.perf_counter()
    make_frame().write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start


def agreement(
    baseline: DataFrame, candidate: DataFrame, tolerance: float = 1e-5
) -> dict[str, float]:
    """Per-user agreement of two (user, item, score, rank) frames, averaged over users.

    ``equal_up_to_ties``: the two lists have the same length and rank-by-rank scores within
    ``tolerance``, so any differing items are exact (or float32-rounding) ties. ALS factors
    hold many exact ties (items rated by the same users alike get identical factors) and
    recommendForAllUsers breaks them arbitrarily, so identical lists alone understate agreement.
    """

    def lists(df: DataFrame, suffix: str) -> DataFrame:
        ordered = F.sort_array(F.collect_list(F.struct("rank", ITEM_COL, "score")))
        return df.groupBy(USER_COL).agg(
            ordered[ITEM_COL].alias(f"items_{suffix}"), ordered["score"].alias(f"scores_{suffix}")
        )

    empty = F.array().cast("array<int>")
    per_user = lists(baseline, "a").join(lists(candidate, "b"), USER_COL, "full_outer").select(
        F.coalesce("items_a", empty).alias("a"),
        F.coalesce("items_b", empty).alias("b"),
        F.coalesce("scores_a", empty.cast("array<float>")).alias("scores_a"),
        F.coalesce("scores_b", empty.cast("array<float>")).alias("scores_b"),
    )
    union_size = F.greatest(F.size(F.array_union("a", "b")), F.lit(1))
    jaccard = F.size(F.array_intersect("a", "b")) / union_size
    score_gaps = F.zip_with("scores_a", "scores_b", lambda x, y: F.abs(x - y) <= tolerance)
    equal_up_to_ties = (F.size("a") == F.size("b")) & F.forall(score_gaps, lambda ok: ok)
    summary = per_user.agg(
        F.avg((F.col("a") == F.col("b")).cast("double")).alias("identical_ordered"),
        F.avg((F.sort_array("a") == F.sort_array("b")).cast("double")).alias("identical_sets"),
        F.avg(equal_up_to_ties.cast("double")).alias("equal_up_to_ties"),
        F.avg(jaccard).alias("mean_jaccard"),
    ).first()
    score_gap = (
        baseline.alias("x")
        .join(candidate.alias("y"), [USER_COL, ITEM_COL])
        .agg(F.max(F.abs(F.col("x.score") - F.col("y.score"))))
        .first()[0]
    )
    return {**summary.asDict(), "max_abs_score_diff": float(score_gap or 0.0)}


def markdown(args, data, timings, agreement_stats, spark: SparkSession) -> str:
    script = os.path.relpath(sys.argv[0], REPO_ROOT)
    command = "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])
    lines = [
        "## Top-K recommendation: `top_k_by_dot_product` vs `ALSModel.recommendForAllUsers`",
        "",
        f"Command: `{command}`",
        "",
        f"Data: {data}; k = {args.k}; seen-item masking off (ALS cannot mask).",
        f"Machine: {os.cpu_count()} CPU cores, Spark {pyspark.__version__}, master "
        f"`{spark.sparkContext.master}`, driver memory {args.driver_memory}. Each run forced with "
        f"the `noop` writer; methods interleaved; median of {args.repeats} runs.",
        "",
        "| method | median wall time (s) | all runs (s) |",
        "|---|---:|---|",
    ]
    for method, runs in timings.items():
        all_runs = ", ".join(f"{r:.2f}" for r in runs)
        lines.append(f"| {method} | {statistics.median(runs):.2f} | {all_runs} |")
    if len(timings) == 1:
        lines += ["", "recommendForAllUsers not run (`--no-baseline`)."]
    if len(timings) == 2:
        baseline_s, ours_s = (statistics.median(runs) for runs in timings.values())
        lines += [
            "",
            "Speed-up (median recommendForAllUsers / median top_k_by_dot_product): "
            f"**{baseline_s / ours_s:.1f}x**",
        ]
    if agreement_stats:
        rows = [
            ("users with identical ordered top-K lists", "identical_ordered", ".4f"),
            ("users with identical top-K sets", "identical_sets", ".4f"),
            (
                "users whose lists are equal up to ties (rank-by-rank scores within 1e-5)",
                "equal_up_to_ties",
                ".4f",
            ),
            ("mean Jaccard of top-K sets", "mean_jaccard", ".4f"),
            ("max abs score difference on shared (user, item)", "max_abs_score_diff", ".2e"),
        ]
        lines += ["", "| agreement (per user, vs recommendForAllUsers) | value |", "|---|---:|"]
        lines += [f"| {label} | {agreement_stats[key]:{fmt}} |" for label, key, fmt in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spark = build_spark_session(
        SparkSettings(
            master=args.master,
            app_name="bench-topk",
            conf={"spark.driver.memory": args.driver_memory},
        )
    )
    if args.synthetic_users is None:
        model, data = als_on_movielens(spark, args)
    else:
        model, data = synthetic_model(spark, args)
    methods = {"top_k_by_dot_product": lambda: ours(model, args)}
    if not args.no_baseline:
        methods = {
            "ALSModel.recommendForAllUsers": lambda: model.recommendForAllUsers(args.k),
            **methods,
        }
    timings = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, make_frame in methods.items():
            timings[name].append(time_run(make_frame))
    agreement_stats = None
    if not args.no_baseline:
        agreement_stats = agreement(als_top_k(model, args.k), ours(model, args))
    report = markdown(args, data, timings, agreement_stats, spark)
    print(report)
    if args.output:
        Path(args.output).write_text(report)
    spark.stop()


if __name__ == "__main__":
    main()
