"""Evaluate stage: candidates + test split -> ``metrics`` table and a printed comparison.

Every candidate source is cut at ``evaluation.k`` and scored against the test pairs of
``interactions_split`` (every test pair relevant; seen = the non-test pairs, already excluded
by the candidates stage): ranking metrics, catalog and distributional coverage, novelty,
popularity bias and genre diversity (cosine distance of ``item_features.genre_multi_hot``).
All sources are scored together, one Spark job per metric family grouped by source
(:func:`recspark.evaluation.suite.evaluate_recommendations_by`), not one pass per source.
When the ALS model is explicit (``item_factors`` commit metadata) its RMSE/MAE on rated test
pairs is added. Efficiency rows (``model = "stage:<step>"``, metrics ``wall_time_s`` and
``peak_rss_mib``) come from the latest ``stage_runs`` row of each stage step of this run date.

Cold-start cohorts (when ``item_embeddings`` exists and ``content.cold_*_ratio`` > 0; see
:mod:`recspark.content.cold_start`) add rows whose ``model`` is ``cold_items/<model>`` or
``cold_users/<model>``, so they print in the same comparison table.

``metrics`` table: the columns of :data:`recspark.evaluation.METRICS` plus ``run_date``,
partitioned by run_date; re-running a date replaces that date's rows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.content.cold_start import cold_start_results
from recspark.io.delta import DeltaTables
from recspark.evaluation import comparison_table, metrics_frame, metrics_rows, rating_metrics
from recspark.evaluation.report import METRICS, metric_bar_chart
from recspark.evaluation.suite import evaluate_recommendations_by
from recspark.featurize.splits import describe_split
from recspark.stages.common import StageContext
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)

STAGE_MODEL_PREFIX = "stage:"


@dataclass
class EvaluationSummary:
    models: int
    metric_rows: int
    test_users: int


def stage_efficiency(stage_runs: DataFrame, run_date) -> dict[str, dict[str, float]]:
    """``{step: {"wall_time_s": ..., "peak_rss_mib": ...}}`` from the latest ``stage_runs`` row
    of each step of ``run_date``."""
    latest = Window.partitionBy("step").orderBy(F.col("finished_at").desc())
    rows = (
        stage_runs.where(F.col("run_date") == F.lit(run_date))
        .withColumn("_n", F.row_number().over(latest))
        .where(F.col("_n") == 1)
        .collect()
    )
    return {r["step"]: {"wall_time_s": r["wall_time_s"], "peak_rss_mib": r["peak_rss_mib"]} for r in rows}


def _explicit_als(tables: DeltaTables) -> bool:
    if not tables.exists("item_factors"):
        return False
    return tables.history("item_factors")[0].metadata.get("recspark.als.implicit_prefs") in ("False", False)


def _cold_start_rows(config: Config, split: DataFrame, embeddings: DataFrame, n_items: int, genres: DataFrame,
                     protocol: str, dataset: str, ctx: StageContext) -> list[tuple]:
    cc, k = config.content, config.evaluation.k
    columns = ["user_idx", "item_idx", "event_ts"]
    results = cold_start_results(
        split.where(F.col("split") != "test").select(*columns), split.where(F.col("split") == "test").select(*columns),
        embeddings, k, n_items, cold_item_ratio=cc.cold_item_ratio, cold_user_ratio=cc.cold_user_ratio,
        cold_user_history=cc.cold_user_history, seed=cc.cold_seed, popularity_shrinkage=cc.popularity_shrinkage,
        half_life_days=cc.profile_half_life_days, item_vectors=genres,
    )
    return [row for label, values in sorted(results.items())
            for row in metrics_rows(values, label, k, protocol, dataset, ctx.run_id)]


def run_evaluate(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> EvaluationSummary:
    k = config.evaluation.k
    protocol = describe_split(config.featurize.split)
    dataset = config.evaluation.dataset or config.ingest.preset or config.ingest.data_dir
    split = tables.read("interactions_split")
    truth = split.where(F.col("split") == "test").select("user_idx", "item_idx", "rating").cache()
    history = split.where(F.col("split") != "test").select("user_idx", "item_idx").cache()
    candidates = tables.read("candidates")
    n_items = tables.read("item_index").count()
    genres = tables.read("item_features").select(
        "item_idx", F.col("genre_multi_hot").cast("array<double>").alias("features")
    )
    sources = sorted(r["source"] for r in candidates.select("source").distinct().collect())
    with ctx.measure("evaluate.sources"):
        by_source = evaluate_recommendations_by(candidates, "source", truth, history, k, n_items, genres)
    rows = [
        row for source in sources for row in metrics_rows(by_source[source], source, k, protocol, dataset, ctx.run_id)
    ]
    if _explicit_als(tables) and "als" in sources:
        rated = truth.where(F.col("rating").isNotNull())
        factors_u = tables.read("user_factors").withColumnRenamed("features", "_u")
        factors_i = tables.read("item_factors").withColumnRenamed("features", "_i")
        predicted = rated.join(factors_u, "user_idx", "left").join(factors_i, "item_idx", "left").withColumn(
            "prediction", F.aggregate(F.zip_with("_u", "_i", lambda a, b: a * b), F.lit(0.0), lambda s, x: s + x)
        )
        rows += metrics_rows(rating_metrics(predicted, "rating", "prediction"), "als", k, protocol, dataset, ctx.run_id)
    if tables.exists("item_embeddings"):
        with ctx.measure("evaluate.cold_start"):
            rows += _cold_start_rows(config, split, tables.read("item_embeddings"), n_items, genres, protocol, dataset, ctx)
    table = comparison_table(rows)
    efficiency = stage_efficiency(tables.read("stage_runs"), ctx.run_date) if tables.exists("stage_runs") else {}
    for step, values in sorted(efficiency.items()):
        rows += metrics_rows(values, STAGE_MODEL_PREFIX + step, k, protocol, dataset, ctx.run_id)

    frame = metrics_frame(spark, rows).withColumn("run_date", F.lit(ctx.run_date))
    tables.write(
        frame, "metrics", partition_by=["run_date"], replace_partition={"run_date": ctx.run_date},
        metadata=ctx.commit_metadata("evaluate"),
    )
    report = f"protocol {protocol}, dataset {dataset}, k={k}\n{table}"
    print(report)
    tracker.log_text(report, "comparison.txt")
    tracker.log_dict({"columns": METRICS.fieldNames(), "rows": [list(row) for row in rows]}, "metrics.json")
    tracker.log_figure(metric_bar_chart(rows, ["ndcg", "precision", "recall", "map"], k), "plots/ranking_metrics.png")
    tracker.log_params({"protocol": protocol, "dataset": dataset, "k": k})
    tracker.log_metrics({
        f"{model}.{metric}" + (f"_at_{kk}" if kk is not None else ""): value
        for _, model, metric, kk, value, _, _ in rows if not model.startswith(STAGE_MODEL_PREFIX)
    })
    summary = EvaluationSummary(len(sources), len(rows), truth.select("user_idx").distinct().count())
    truth.unpersist()
    history.unpersist()
    log.info("evaluate %s:\n%s", ctx.run_date, report)
    return summary
