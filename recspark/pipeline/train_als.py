"""Train-als stage: interactions_split (+ tuned_params) -> user_factors, item_factors (+ factor
neighbours).

0. Engine: ``als.engine`` (auto | mllib | implicit, :mod:`recspark.recommenders.als_engines`) is
   resolved once on the non-test pairs; auto picks the implicit library on the driver when the
   pairs fit ``als.memory_budget_mb``. The choice and its reason are logged (one line, MLflow
   params ``als.engine_used`` / ``als.engine_reason``) and every implicit fit of the stage uses it;
   explicit points always run on MLlib.
1. Params: the newest ``als`` row of ``tuned_params`` (written by the weekly ``tune`` stage) when
   there is one and ``als.use_tuned_params`` is on: no grid runs. Otherwise (a fresh warehouse)
   the stage searches itself as tune does (:func:`recspark.recommenders.als_tuning.search_on_split`:
   ``als.grid`` on the validation carve, scored by ``als.selection_metric`` at ``evaluation.k``;
   the test split is never used). MLflow param ``als.params_from`` says which.
2. Refit: those params on all non-test pairs (train + validation).
3. Write ``user_factors`` and ``item_factors`` (user_idx / item_idx, features array<float>; the
   params in their commit metadata as ``als.<param>``), the ``als_factors`` partition of
   ``item_similarity`` (exact cosine neighbours of the item factors), and log trials (nested
   MLflow runs), the model (``mlflow.spark``) and, with ``als.register_model``, register it and
   move the champion alias only if its validation metric beats the champion's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import functions as F

from recspark.catalog import INTERACTIONS_SPLIT, ITEM_FACTORS, ITEM_SIMILARITY, TUNED_PARAMS, USER_FACTORS
from recspark.featurize.splits import split_protocol
from recspark.pipeline.stage import StageContext
from recspark.recommenders.als import als_estimator, als_params_metadata
from recspark.recommenders.als_engines import engine_fit, pick_engine
from recspark.recommenders.als_tuning import (
    ALS_ALGORITHM,
    metric_label,
    search_on_split,
    search_summary,
    trial_runs,
    tuned_params_from_json,
)
from recspark.recommenders.item_similarity import FACTOR_SIMILARITY_METHOD, factor_similarity

log = logging.getLogger(__name__)


@dataclass
class AlsTrainingResult:
    trials: int  # grid points fitted by this stage (0 with tuned params)
    best_rank: int
    best_reg_param: float
    best_alpha: float
    best_implicit: int  # 1 implicit, 0 explicit
    validation_metric: float
    users_with_factors: int
    items_with_factors: int
    promoted: int  # 1 when the champion alias moved to this model
    implicit_engine: int  # 1 when the implicit library fitted the implicit points, 0 MLlib
    tuned_params_used: int  # 1 when the params came from tuned_params, 0 from the in-stage search


@dataclass
class ChosenParams:
    """The searched ALS params the refit uses, their validation metric and where they came from."""

    params: dict[str, Any]
    metric_label: str  # e.g. ndcg_at_10
    validation_metric: float
    trials: int
    source: str  # "tuned_params <run_date> <run_id>" or "in-stage search"


def tuned_als_params(ctx: StageContext) -> ChosenParams | None:
    """The newest ``als`` row of tuned_params, or None when there is none (or it is switched off)."""
    if not ctx.config.als.use_tuned_params:
        return None
    tuned = ctx.tables.read_if_exists(TUNED_PARAMS)
    if tuned is None:
        return None
    rows = tuned.where(F.col("algorithm") == ALS_ALGORITHM).orderBy(F.col("run_date").desc(), F.col("run_id").desc()).take(1)
    if not rows:
        return None
    row = rows[0]
    return ChosenParams(tuned_params_from_json(row["params"]), row["selection_metric"], row["validation_metric"], 0,
                        f"tuned_params {row['run_date']} {row['run_id']}")


def searched_als_params(ctx: StageContext, split, fit) -> ChosenParams:
    """The in-stage search (what tune does), logged as nested MLflow runs and als_search.json."""
    ac, k, tracker = ctx.config.als, ctx.config.evaluation.k, ctx.tracker
    _, split_seed = split_protocol(ctx.tables.latest_metadata(INTERACTIONS_SPLIT))
    with ctx.measure("als.search"):
        search = search_on_split(split, ac, k, split_seed, fit)
    for name, params, metrics in trial_runs(search, k):
        tracker.log_child_run(name, params, metrics)
    tracker.log_dict(search_summary(search, k), "als_search.json")
    best = search.best
    return ChosenParams(best.params, metric_label(ac.selection_metric, k), best.metrics[ac.selection_metric],
                        len(search.trials), "in-stage search")


def run_train_als(ctx: StageContext) -> AlsTrainingResult:
    tables, tracker, ac = ctx.tables, ctx.tracker, ctx.config.als
    ctx.spark.sparkContext.setCheckpointDir(ctx.config.checkpoint_dir())
    split = tables.read(INTERACTIONS_SPLIT)
    history = split.where(F.col("split") != "test")
    base = als_estimator(ac)
    chosen = tuned_als_params(ctx)
    probe = base.copy(rank=chosen.params["rank"] if chosen else max(ac.grid.rank), implicit_prefs=True)
    engine, reason = pick_engine(probe, history, ac.engine_settings())
    log.info("train-als: ALS engine %s (%s)", engine, reason)
    tracker.log_params({"als.engine_used": engine, "als.engine_reason": reason})
    fit = engine_fit(engine, ac.engine_settings())
    if chosen is None:
        chosen = searched_als_params(ctx, split, fit)
    else:
        log.info("train-als: refit with the params of %s (no grid search): %s", chosen.source, chosen.params)
    tracker.log_params({"als.params_from": chosen.source} | {f"best.{key}": v for key, v in chosen.params.items()})
    tracker.log_metrics({f"validation_{chosen.metric_label}": chosen.validation_metric})

    with ctx.measure("als.refit"):
        final = fit(base.copy(**chosen.params), history)
        user_factors = final.user_factors.localCheckpoint()
        item_factors = final.item_factors.localCheckpoint()
    with ctx.measure("als.log_model"):
        model_uri = tracker.log_spark_model(final.als_model, "als_model")
    promoted = False
    if ac.register_model:
        promoted = tracker.register_if_better(
            model_uri, ac.model_name, ac.champion_alias, f"validation_{chosen.metric_label}", chosen.validation_metric
        )
    # Lineage for the published lists: the refit's params, registered model and MLflow run.
    factors_meta = ctx.commit_metadata(als_params_metadata(final.params) | {
        "model_version": tracker.registered_version or "unregistered",
        "mlflow_run_id": tracker.mlflow_run_id or "",
    })
    tables.write(user_factors, USER_FACTORS, metadata=factors_meta, overwrite_schema=True)
    tables.write(item_factors, ITEM_FACTORS, metadata=factors_meta, overwrite_schema=True)
    if ac.factor_similarity_top_n > 0:
        with ctx.measure("als.factor_similarity"):
            neighbours = factor_similarity(item_factors, ac.factor_similarity_top_n).withColumn(
                "method", F.lit(FACTOR_SIMILARITY_METHOD)
            )
            tables.write(neighbours, ITEM_SIMILARITY, replace_partition={"method": FACTOR_SIMILARITY_METHOD},
                         metadata=ctx.commit_metadata())

    params = chosen.params
    result = AlsTrainingResult(
        trials=chosen.trials, best_rank=params["rank"], best_reg_param=params["reg_param"],
        best_alpha=params["alpha"], best_implicit=int(params["implicit_prefs"]),
        validation_metric=chosen.validation_metric, users_with_factors=user_factors.count(),
        items_with_factors=item_factors.count(), promoted=int(promoted), implicit_engine=int(engine == "implicit"),
        tuned_params_used=int(chosen.source != "in-stage search"),
    )
    log.info("train-als %s: %s", ctx.run_date, result)
    return result
