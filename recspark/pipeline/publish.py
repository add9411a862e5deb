"""Publish stage: candidates -> the nightly ``recommendations`` table, behind a quality gate.

Per user, ``publish.k`` items from ``publish.sources`` in priority order (filled up from the next
source; content covers every user of ``user_index`` and popularity fills any gap, so every known
user gets a full list), each with a "because you liked <title>" explanation where the item-item
source or the co-occurrence neighbours of the user's history give one.

The first source is the validated champion: the list rerank found best on the validation carve
(``recspark.champion`` in the ``candidates`` commit metadata: the ranker, the hybrid or a single
source) when ``publish.champion`` is on and the champion is one of ``publish.sources``; the others
keep their order behind it. Without a recorded champion the order is ``publish.sources``. The
published ``model_version`` / ``mlflow_run_id`` are the champion's when rerank recorded them (the
registered ranker), else the ALS factors'.

The gate (:func:`recspark.publish.evaluate_gate`) compares this run with the last unforced
publish of another date (stats in the table's commit metadata): user coverage of the known
users, rows, catalog coverage and the evaluation metric of the first source (``publish.metric``
at ``evaluation.k`` from this run date's ``metrics``); a catalog-coverage drop on the first night
whose blends (``recspark.blends_from``) differ from the baseline's, i.e. after a retune, warns
unless ``publish.on_retuned_coverage_drop`` is ``breach``. A breach raises
:class:`~recspark.publish.QualityGateError` and nothing is written, unless ``publish.force``
(``--force``), which publishes and records ``forced`` in the commit (a forced publish is never
a later baseline). Every check that could not be made is logged.

Tables: ``recommendations`` (partitioned by run_date; this date's partition replaced in one
commit, so re-runs are idempotent and readers never see half a night) with user_id, rank,
item_id, title, score, source, explanation, model_version, mlflow_run_id, run_date; and
``recommendations_latest``: the newest published date's rows, replaced whole, with the
``recommendations`` version it copies in its commit metadata. A run that died between the two
writes is repaired by the next publish, which rewrites ``recommendations_latest`` whenever it
is not the copy of the newest date.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import functions as F

from recspark.catalog import (
    CANDIDATES,
    INTERACTIONS_SPLIT,
    ITEM_FACTORS,
    ITEM_INDEX,
    ITEM_SIMILARITY,
    ITEMS,
    METRICS,
    RECOMMENDATIONS,
    RECOMMENDATIONS_LATEST,
    USER_INDEX,
)
from recspark.pipeline.stage import StageContext
from recspark.publish import (
    PublishStats,
    QualityGateError,
    attach_because_items,
    evaluate_gate,
    final_recommendations,
    gate_baseline,
    latest_in_step,
    latest_source,
    publish_order,
    with_explanations,
)
from recspark.recommenders.item_similarity import COOCCURRENCE_METHOD

log = logging.getLogger(__name__)

CHAMPION_KEY = "recspark.champion"  # rerank's commit metadata: the list that won on validation
BLENDS_FROM_KEY = "recspark.blends_from"  # rerank's commit metadata: the tune run (or in-stage fit) of the blends


@dataclass
class PublishResult:
    users: int
    rows: int
    catalog_coverage: float
    user_coverage: float
    forced: int


def _evaluation_metric(ctx: StageContext, source: str) -> float | None:
    metrics = ctx.tables.read_if_exists(METRICS)
    if metrics is None:
        return None
    pc = ctx.config.publish
    row = metrics.where(
        (F.col("run_date") == F.lit(ctx.run_date)) & (F.col("model") == source)
        & (F.col("metric") == pc.metric) & (F.col("k") == ctx.config.evaluation.k)
    ).select("value").first()
    return None if row is None else float(row["value"])


def champion_sources(ctx: StageContext) -> tuple[list[str], dict[str, str]]:
    """(publish order, the candidates commit metadata): ``publish.sources`` with the champion
    recorded by rerank first (see the module docstring)."""
    pc = ctx.config.publish
    metadata = ctx.tables.latest_metadata(CANDIDATES)
    champion = metadata.get(CHAMPION_KEY) if pc.champion else None
    order = publish_order(pc.sources, champion)
    if champion and order[0] != champion:
        log.warning("champion %s is not among publish.sources %s; publishing in their order", champion, pc.sources)
    elif champion:
        log.info("publishing champion %s (validation NDCG %s) first, then %s", champion,
                 metadata.get(f"{CHAMPION_KEY}_validation_ndcg"), order[1:])
    return order, metadata


def refresh_latest(ctx: StageContext) -> None:
    """Make ``recommendations_latest`` the copy of the newest published date (a no-op when it is)."""
    expected = latest_source(ctx.tables.history(RECOMMENDATIONS))
    if expected is None or latest_in_step(ctx.tables.latest_metadata(RECOMMENDATIONS_LATEST) or None, expected):
        return
    rows = ctx.tables.read(RECOMMENDATIONS, version=expected.version).where(F.col("run_date") == F.lit(expected.run_date))
    ctx.tables.write(rows, RECOMMENDATIONS_LATEST, overwrite_schema=True,
                     metadata=ctx.commit_metadata(expected.as_metadata()))


def run_publish(ctx: StageContext) -> PublishResult:
    tables, pc = ctx.tables, ctx.config.publish
    history = tables.read(INTERACTIONS_SPLIT).where(F.col("split") != "test").select("user_idx", "item_idx")
    similarities = tables.read(ITEM_SIMILARITY).where(F.col("method") == COOCCURRENCE_METHOD)
    item_index = tables.read(ITEM_INDEX)
    items = item_index.join(tables.read_or_empty(ITEMS).select("item_id", "title"), "item_id", "left")
    sources, candidates_metadata = champion_sources(ctx)
    lineage = tables.latest_metadata(ITEM_FACTORS)
    model_version = lineage.get("recspark.model_version", "unregistered")
    mlflow_run_id = lineage.get("recspark.mlflow_run_id", "")
    if sources[0] == candidates_metadata.get(CHAMPION_KEY) and candidates_metadata.get(f"{CHAMPION_KEY}_model_version"):
        model_version = candidates_metadata[f"{CHAMPION_KEY}_model_version"]
        mlflow_run_id = candidates_metadata.get(f"{CHAMPION_KEY}_mlflow_run_id", "")

    with ctx.measure("publish.build"):
        ranked = final_recommendations(tables.read(CANDIDATES), sources, pc.k)
        explained = with_explanations(attach_because_items(ranked, history, similarities), tables.read(USER_INDEX), items)
        published = explained.select(
            "*",
            F.lit(model_version).alias("model_version"),
            F.lit(mlflow_run_id).alias("mlflow_run_id"),
            F.lit(ctx.run_date).alias("run_date"),
        ).localCheckpoint()

    summary = published.agg(
        F.countDistinct("user_id").alias("users"), F.count(F.lit(1)).alias("rows"), F.countDistinct("item_id").alias("distinct_items"),
    ).first()
    stats = PublishStats(
        users=summary["users"], known_users=history.select("user_idx").distinct().count(), rows=summary["rows"],
        catalog_coverage=summary["distinct_items"] / max(1, item_index.count()), metric=_evaluation_metric(ctx, sources[0]),
        blends=candidates_metadata.get(BLENDS_FROM_KEY, ""),
    )
    baseline = gate_baseline(tables.history(RECOMMENDATIONS), ctx.run_date.isoformat()) if tables.exists(
        RECOMMENDATIONS) else None
    verdict = evaluate_gate(stats, baseline, pc.gate())
    for warning in verdict.warnings:
        log.warning("quality gate: %s", warning)
    if verdict.breaches and not pc.force:
        raise QualityGateError(
            f"quality gate refused to publish {ctx.run_date}: " + "; ".join(verdict.breaches)
            + ". The last published recommendations stay in place; re-run with --force to publish anyway."
        )
    for breach in verdict.breaches:
        log.warning("publishing despite gate breach (--force): %s", breach)
    forced = bool(verdict.breaches)
    with ctx.measure("publish.write"):
        tables.write(published, RECOMMENDATIONS, replace_partition={"run_date": ctx.run_date},
                     metadata=ctx.commit_metadata(stats.as_metadata() | {"forced": str(forced)}))
        refresh_latest(ctx)
    result = PublishResult(stats.users, stats.rows, stats.catalog_coverage, stats.user_coverage, int(forced))
    log.info("publish %s: %s", ctx.run_date, result)
    return result
