"""Evaluate stage: candidates + test split -> ``metrics`` table and a printed comparison.

Every candidate source is cut at ``evaluation.k`` and scored against the test pairs of
``interactions_split`` (every test pair relevant; seen = the non-test pairs, already excluded
by the candidates stage): ranking metrics, coverage, novelty, serendipity, popularity bias and
genre diversity (cosine distance of ``item_features.genre_multi_hot``), all sources in one Spark
job per metric family (:func:`recspark.evaluation.suite.evaluate_recommendations_by`); diversity
and serendipity on a seeded sample of ``evaluation.vector_metrics_max_users`` users (5,000 by
default, the same users for every source; every user of MovieLens latest-small), the ranking
metrics on a seeded sample of ``evaluation.ranking_metrics_max_users`` test users (50,000 by
default: every user up to 5M synthetic interactions). When the
ALS model is explicit (``item_factors`` commit metadata) its RMSE/MAE on rated test pairs is
added. Efficiency rows (``model = "stage:<step>"``, metrics ``wall_time_s`` and ``peak_rss_mib``)
come from the latest ``stage_runs`` row of each step of this run date. The protocol label is the
one featurize recorded with ``interactions_split``. The blends rerank wrote (``ranker``, the
default, and the ``hybrid`` baseline) are sources like the others here; the champion rerank chose
on validation (``recspark.champion`` of the candidates commit, what publish serves first) heads
the printed report and is logged as the param ``champion``.

Cold-start cohorts (when ``item_embeddings`` has rows and ``content.cold_*_ratio`` > 0; see
:mod:`recspark.content.cold_start`) add rows whose ``model`` is ``cold_items/<model>`` or
``cold_users/<model>``.

``metrics`` table: :data:`recspark.schemas.METRICS` plus ``run_date``, partitioned by run_date;
re-running a date replaces that date's rows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import (
    CANDIDATES,
    INTERACTIONS_SPLIT,
    ITEM_EMBEDDINGS,
    ITEM_FACTORS,
    ITEM_FEATURES,
    ITEM_INDEX,
    STAGE_RUNS,
    USER_FACTORS,
)
from recspark.catalog import METRICS as METRICS_TABLE
from recspark.content.cold_start import cold_start_results
from recspark.evaluation import comparison_table, metrics_frame, metrics_rows, rating_metrics
from recspark.evaluation.efficiency import stage_efficiency
from recspark.evaluation.report import metric_bar_chart
from recspark.evaluation.suite import evaluate_recommendations_by
from recspark.featurize.splits import split_protocol
from recspark.pipeline.stage import StageContext
from recspark.recommenders.als import als_params_from_metadata
from recspark.schemas import METRICS

log = logging.getLogger(__name__)

STAGE_MODEL_PREFIX = "stage:"


@dataclass
class EvaluationSummary:
    models: int
    metric_rows: int
    test_users: int


def _cold_start_rows(ctx: StageContext, split: DataFrame, embeddings: DataFrame, n_items: int, protocol: str,
                     dataset: str) -> list[tuple]:
    """The cohorts' accuracy, coverage and novelty rows; their lists are a diagnostic of who
    content and popularity can reach, so the genre-based diversity and serendipity (two thirds of
    the cohorts' evaluation time) are left to the warm sources' rows."""
    cc, k = ctx.config.content, ctx.config.evaluation.k
    columns = ["user_idx", "item_idx", "event_ts"]
    results = cold_start_results(
        split.where(F.col("split") != "test").select(*columns), split.where(F.col("split") == "test").select(*columns),
        embeddings, k, n_items, cold_item_ratio=cc.cold_item_ratio, cold_user_ratio=cc.cold_user_ratio,
        cold_user_history=cc.cold_user_history, seed=cc.cold_seed, popularity_shrinkage=cc.popularity_shrinkage,
        half_life_days=cc.profile_half_life_days, center_embeddings=cc.center_embeddings,
        new_item_neighbours=cc.new_item_neighbours, embedding_dimensions=cc.embedding_dimensions,
        max_users=cc.cold_max_users,
    )
    return [row for label, values in sorted(results.items())
            for row in metrics_rows(values, label, k, protocol, dataset, ctx.run_id)]


def run_evaluate(ctx: StageContext) -> EvaluationSummary:
    tables, tracker, config = ctx.tables, ctx.tracker, ctx.config
    k = config.evaluation.k
    protocol, _ = split_protocol(tables.latest_metadata(INTERACTIONS_SPLIT))
    dataset = config.evaluation.dataset or config.ingest.dataset_name
    split = tables.read(INTERACTIONS_SPLIT)
    truth = split.where(F.col("split") == "test").select("user_idx", "item_idx", "rating").cache()
    history = split.where(F.col("split") != "test").select("user_idx", "item_idx").cache()
    candidates = tables.read(CANDIDATES)
    n_items = tables.read(ITEM_INDEX).count()
    genres = tables.read(ITEM_FEATURES).select(
        "item_idx", F.col("genre_multi_hot").cast("array<double>").alias("features")
    )
    sources = sorted(r["source"] for r in candidates.select("source").distinct().collect())
    with ctx.measure("evaluate.sources"):
        by_source = evaluate_recommendations_by(
            candidates, "source", truth, history, k, n_items, genres,
            vector_metrics_max_users=config.evaluation.vector_metrics_max_users, seed=config.evaluation.seed,
            ranking_metrics_max_users=config.evaluation.ranking_metrics_max_users,
        )
    rows = [
        row for source in sources for row in metrics_rows(by_source[source], source, k, protocol, dataset, ctx.run_id)
    ]
    factors_metadata = tables.latest_metadata(ITEM_FACTORS)
    if "als" in sources and factors_metadata and not als_params_from_metadata(factors_metadata)["implicit_prefs"]:
        rated = truth.where(F.col("rating").isNotNull())
        factors_u = tables.read(USER_FACTORS).withColumnRenamed("features", "_u")
        factors_i = tables.read(ITEM_FACTORS).withColumnRenamed("features", "_i")
        predicted = rated.join(factors_u, "user_idx", "left").join(factors_i, "item_idx", "left").withColumn(
            "prediction", F.aggregate(F.zip_with("_u", "_i", lambda a, b: a * b), F.lit(0.0), lambda s, x: s + x)
        )
        rows += metrics_rows(rating_metrics(predicted, "rating", "prediction"), "als", k, protocol, dataset, ctx.run_id)
    embeddings = tables.read_if_exists(ITEM_EMBEDDINGS)
    if embeddings is not None and not embeddings.isEmpty():  # no item text: content cannot serve a cohort
        with ctx.measure("evaluate.cold_start"):
            rows += _cold_start_rows(ctx, split, embeddings, n_items, protocol, dataset)
    table = comparison_table(rows)
    stage_runs = tables.read_if_exists(STAGE_RUNS)
    efficiency = {} if stage_runs is None else stage_efficiency(stage_runs, ctx.run_date)
    for step, values in sorted(efficiency.items()):
        rows += metrics_rows(values, STAGE_MODEL_PREFIX + step, k, protocol, dataset, ctx.run_id)

    frame = metrics_frame(ctx.spark, rows).withColumn("run_date", F.lit(ctx.run_date))
    tables.write(frame, METRICS_TABLE, replace_partition={"run_date": ctx.run_date}, metadata=ctx.commit_metadata())
    champion = tables.latest_metadata(CANDIDATES).get("recspark.champion", "none recorded")
    report = f"protocol {protocol}, dataset {dataset}, k={k}, champion chosen on validation: {champion}\n{table}"
    print(report)
    tracker.log_text(report, "comparison.txt")
    tracker.log_dict({"columns": METRICS.fieldNames(), "rows": [list(row) for row in rows]}, "metrics.json")
    tracker.log_figure(metric_bar_chart(rows, ["ndcg", "precision", "recall", "map"], k), "plots/ranking_metrics.png")
    tracker.log_params({"protocol": protocol, "dataset": dataset, "champion": champion})
    tracker.log_metrics({
        f"{model}.{metric}" + (f"_at_{kk}" if kk is not None else ""): value
        for _, model, metric, kk, value, _, _ in rows if not model.startswith(STAGE_MODEL_PREFIX)
    })
    summary = EvaluationSummary(len(sources), len(rows), truth.select("user_idx").distinct().count())
    truth.unpersist()
    history.unpersist()
    log.info("evaluate %s: %s (the comparison table is printed above and logged as comparison.txt)",
             ctx.run_date, summary)
    return summary
