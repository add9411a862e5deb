"""Publish stage: candidates -> the nightly ``recommendations`` table, behind a quality gate.

Per user, ``publish.k`` items from ``publish.sources`` in priority order (ALS, filled up from
item-item, content, then popularity; content covers every user of ``user_index`` and
popularity fills any gap, so every known user gets a full list), each with a
"because you liked <title>" explanation where the item-item source or the co-occurrence
neighbours of the user's history give one.

The gate compares this run with the last published one (stats kept in the table's commit
metadata): user coverage of the known users, rows, catalog coverage and the evaluation metric
of the first source (``publish.metric`` at ``evaluation.k`` from this run date's ``metrics``).
A breach raises :class:`QualityGateError` and nothing is written, unless ``publish.force``
(``--force``) is set, which publishes and records ``forced`` in the commit.

Tables: ``recommendations`` (partitioned by run_date; this date's partition replaced in one
commit, so re-runs are idempotent and readers never see half a night) with user_id, rank,
item_id, title, score, source, explanation, model_version, mlflow_run_id, run_date; and
``recommendations_latest`` (the same rows of the newest published date, replaced whole) for
BI tools that should not filter on dates.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.io.delta import DeltaTables
from recspark.publish import (
    PublishStats,
    attach_because_items,
    final_recommendations,
    gate_breaches,
    with_explanations,
)
from recspark.stages.common import StageContext
from recspark.stages.similarity import COOCCURRENCE_METHOD
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)


class QualityGateError(RuntimeError):
    """The run's recommendations are worse than the last published ones; nothing was published."""


@dataclass
class PublishResult:
    users: int
    rows: int
    catalog_coverage: float
    user_coverage: float
    forced: int


def _evaluation_metric(tables: DeltaTables, config: Config, ctx: StageContext) -> float | None:
    if not tables.exists("metrics"):
        return None
    row = (
        tables.read("metrics")
        .where(
            (F.col("run_date") == F.lit(ctx.run_date))
            & (F.col("model") == config.publish.sources[0])
            & (F.col("metric") == config.publish.metric)
            & (F.col("k") == config.evaluation.k)
        )
        .select("value")
        .first()
    )
    return None if row is None else float(row["value"])


def _last_published_stats(tables: DeltaTables, ctx: StageContext) -> PublishStats | None:
    """Gate stats of the newest commit of another run date (a re-run compares with the night before)."""
    if not tables.exists("recommendations"):
        return None
    for commit in tables.history("recommendations"):
        if commit.metadata.get("recspark.run_date") != ctx.run_date.isoformat():
            stats = PublishStats.from_metadata(commit.metadata)
            if stats is not None:
                return stats
    return None


def run_publish(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> PublishResult:
    pc = config.publish
    split = tables.read("interactions_split")
    history = split.where(F.col("split") != "test").select("user_idx", "item_idx")
    similarities = tables.read("item_similarity").where(F.col("method") == COOCCURRENCE_METHOD)
    item_index = tables.read("item_index")
    items = item_index.join(tables.read("items").select("item_id", "title"), "item_id", "left")
    user_index = tables.read("user_index")
    lineage = tables.history("item_factors")[0].metadata if tables.exists("item_factors") else {}

    with ctx.measure("publish.build"):
        ranked = final_recommendations(tables.read("candidates"), pc.sources, pc.k)
        explained = with_explanations(attach_because_items(ranked, history, similarities), user_index, items)
        published = explained.select(
            "*",
            F.lit(lineage.get("recspark.model_version", "unregistered")).alias("model_version"),
            F.lit(lineage.get("recspark.mlflow_run_id", "")).alias("mlflow_run_id"),
            F.lit(ctx.run_date).alias("run_date"),
        ).localCheckpoint()

    summary = published.agg(
        F.countDistinct("user_id").alias("users"),
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("item_id").alias("items"),
    ).first()
    stats = PublishStats(
        users=summary["users"],
        known_users=history.select("user_idx").distinct().count(),
        rows=summary["rows"],
        catalog_coverage=summary["items"] / max(1, item_index.count()),
        metric=_evaluation_metric(tables, config, ctx),
    )
    previous = _last_published_stats(tables, ctx)
    breaches = gate_breaches(stats, previous, pc.min_user_coverage, pc.max_relative_drop)
    tracker.log_params({"publish.sources": ",".join(pc.sources), "publish.k": pc.k, "publish.force": pc.force})
    if breaches and not pc.force:
        raise QualityGateError(
            f"quality gate refused to publish {ctx.run_date}: " + "; ".join(breaches)
            + ". The last published recommendations stay in place; re-run with --force to publish anyway."
        )
    for breach in breaches:
        log.warning("publishing despite gate breach (--force): %s", breach)
    meta = ctx.commit_metadata("publish") | stats.as_metadata() | {"forced": str(bool(breaches))}
    with ctx.measure("publish.write"):
        tables.write(
            published, "recommendations", partition_by=["run_date"],
            replace_partition={"run_date": ctx.run_date}, metadata=meta,
        )
        latest = tables.read("recommendations").agg(F.max("run_date")).first()[0]
        if latest == ctx.run_date:
            tables.write(published, "recommendations_latest", metadata=meta, overwrite_schema=True)
    result = PublishResult(
        stats.users, stats.rows, stats.catalog_coverage, stats.user_coverage, int(bool(breaches))
    )
    log.info("publish %s: %s", ctx.run_date, result)
    return result
