"""Tune stage (weekly, not nightly): interactions_split (+ candidates and the sources' tables) ->
the ``als`` and ``blends`` partitions of tuned_params.

Runs the ALS grid search (``als.grid``, scored by ``als.selection_metric`` at ``evaluation.k`` on
the validation carve of :func:`recspark.featurize.splits.tuning_frames`; the test split is never
used) on the engine ``als.engine`` picks, and records the best point: one ``tuned_params`` row
(algorithm ``als``, the searched params as JSON, the validation metric, the number of trials, the
split protocol, run date, run id and MLflow run id) and, in MLflow, the trials as nested runs, the
chosen params as ``tuned.als.<param>``, the validation metric and ``als_search.json``. The
nightly train-als refits with the newest row instead of searching, and refits in full (no
fold-in) the first night after a new tune. Item-similarity has no search to move here (its
settings are fixed values, not a grid).

EASE (when ``ease`` is among ``candidates.sources``): :func:`recspark.recommenders.ease_tuning.search_ease_on_split`
tries ``ease.grid`` (``reg_lambda`` x ``popularity_exponent``) on the ``ease.tuning_ratio`` carve,
one Gram matrix for every point, and records the best as the ``ease`` row (MLflow
``tuned.ease.*`` and ``ease_search.json``); the ``ease`` source fits with it from then on. A
catalogue above ``ease.max_items`` skips the search with a log line.

Blends (when a nightly has written ``candidates``): :func:`recspark.ranker.tuning.fit_blends`
refits every candidate source on the validation carve, trains the learned ranker and the grid
hybrid there and chooses the champion (the test split is never used); the ranker is logged and
registered like rerank's, and the :class:`recspark.ranker.tuning.BlendChoice` (ranker model,
hybrid weights, champion and the validation scores) becomes the ``blends`` row. Nightly rerank
applies it to tonight's candidates instead of refitting. Without ``candidates`` (tune before the
first night) the blends are left for rerank to fit, with a log line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import functions as F

from recspark.catalog import CANDIDATES, INTERACTIONS_SPLIT, TUNED_PARAMS
from recspark.featurize.splits import split_carve, split_protocol
from recspark.pipeline.stage import StageContext
from recspark.ranker.tuning import BLENDS_ALGORITHM, fit_blends_on_tables, plan_blends
from recspark.recommenders import ease_tuning
from recspark.recommenders.als import als_estimator
from recspark.recommenders.als_engines import engine_fit, pick_engine
from recspark.recommenders.als_tuning import (
    ALS_ALGORITHM,
    metric_label,
    search_on_split,
    search_summary,
    trial_runs,
    tuned_params_json,
)
from recspark.recommenders.ease import CatalogueTooLarge

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    als_trials: int
    als_best_rank: int
    als_best_reg_param: float
    als_best_alpha: float
    als_best_implicit: int  # 1 implicit, 0 explicit
    als_validation_metric: float
    implicit_engine: int  # 1 when the implicit library fitted the implicit points, 0 MLlib
    ease_trials: int  # EASE grid points tried (0: EASE not among the sources, or its catalogue too large)
    ease_validation_ndcg: float  # the chosen EASE point's validation NDCG@k (0 without a search)
    blends_tuned: int  # 1 when the blends row was written (candidates existed), 0 otherwise
    champion_validation_ndcg: float  # the chosen blend champion's validation NDCG@k (0 without blends)


def run_tune(ctx: StageContext) -> TuneResult:
    tables, tracker, ac, k = ctx.tables, ctx.tracker, ctx.config.als, ctx.config.evaluation.k
    ctx.spark.sparkContext.setCheckpointDir(ctx.config.checkpoint_dir())
    split = tables.read(INTERACTIONS_SPLIT)
    split_metadata = tables.latest_metadata(INTERACTIONS_SPLIT)
    protocol, _ = split_protocol(split_metadata)
    split_seed, stratify_by = split_carve(split_metadata)
    probe = als_estimator(ac).copy(rank=max(ac.grid.rank), implicit_prefs=True)
    engine, reason = pick_engine(probe, split.where(F.col("split") != "test"), ac.engine_settings())
    log.info("tune: ALS engine %s (%s)", engine, reason)
    tracker.log_params({"als.engine_used": engine, "als.engine_reason": reason})
    with ctx.measure("tune.als_search"):
        search = search_on_split(split, ac, k, split_seed, engine_fit(engine, ac.engine_settings()), stratify_by)
    for name, params, metrics in trial_runs(search, k):
        tracker.log_child_run(name, params, metrics)
    best, label = search.best, metric_label(ac.selection_metric, k)
    value = best.metrics[ac.selection_metric]
    tracker.log_params({f"tuned.als.{key}": v for key, v in best.params.items()})
    tracker.log_metrics({f"tuned.als.validation_{label}": value})
    tracker.log_dict(search_summary(search, k), "als_search.json")

    def record(algorithm: str, params: str, metric: str, metric_value: float, trials: int) -> None:
        row = (algorithm, params, metric, float(metric_value), trials, protocol, ctx.run_date, ctx.run_id,
               tracker.mlflow_run_id)
        tables.write(ctx.spark.createDataFrame([row], TUNED_PARAMS.schema), TUNED_PARAMS,
                     replace_partition={"algorithm": algorithm}, metadata=ctx.commit_metadata())

    record(ALS_ALGORITHM, tuned_params_json(best.params), label, value, len(search.trials))
    ease_search = None
    if ease_tuning.EASE_ALGORITHM in ctx.config.candidates.sources:
        try:
            with ctx.measure("tune.ease_search"):
                ease_search = ease_tuning.search_ease_on_split(split, ctx.config.ease, k, split_seed, stratify_by)
        except CatalogueTooLarge as exc:
            log.warning("tune: EASE not searched: %s", exc)
    if ease_search is not None:
        chosen = ease_search.best
        tracker.log_params({f"tuned.ease.{key}": v for key, v in chosen.params.items()})
        tracker.log_metrics({f"tuned.ease.validation_ndcg_at_{k}": chosen.ndcg})
        tracker.log_dict(ease_tuning.search_summary(ease_search), "ease_search.json")
        record(ease_tuning.EASE_ALGORITHM, ease_tuning.tuned_params_json(chosen.params), f"ndcg_at_{k}", chosen.ndcg,
               len(ease_search.trials))
    champion_ndcg = 0.0
    blends_tuned = tables.exists(CANDIDATES)
    if blends_tuned:
        fitted = fit_blends_on_tables(tables, ctx.config, plan_blends(tables, ctx.config), ctx.measure)
        fitted.log(tracker, ctx.config.ranker)
        choice = fitted.choice
        champion_ndcg = choice.champion_ndcg
        record(BLENDS_ALGORITHM, choice.to_json(), f"ndcg_at_{k}", champion_ndcg, len(choice.scores))
    else:
        log.info("tune: no candidates yet, so the blends are not tuned; rerank fits them until the next tune")
    result = TuneResult(
        als_trials=len(search.trials), als_best_rank=best.params["rank"], als_best_reg_param=best.params["reg_param"],
        als_best_alpha=best.params["alpha"], als_best_implicit=int(best.params["implicit_prefs"]),
        als_validation_metric=value, implicit_engine=int(engine == "implicit"),
        ease_trials=len(ease_search.trials) if ease_search else 0,
        ease_validation_ndcg=ease_search.best.ndcg if ease_search else 0.0, blends_tuned=int(blends_tuned),
        champion_validation_ndcg=champion_ndcg,
    )
    log.info("tune %s: %s", ctx.run_date, result)
    return result
