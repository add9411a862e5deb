"""Tune stage (weekly, not nightly): interactions_split -> the ``als`` partition of tuned_params.

Runs the ALS grid search (``als.grid``, scored by ``als.selection_metric`` at ``evaluation.k`` on
the validation carve of :func:`recspark.featurize.splits.tuning_frames`; the test split is never
used) on the engine ``als.engine`` picks, and records the best point: one ``tuned_params`` row
(algorithm ``als``, the searched params as JSON, the validation metric, the number of trials, the
split protocol, run date, run id and MLflow run id) and, in MLflow, the trials as nested runs, the
chosen params as ``tuned.als.<param>``, the validation metric and ``als_search.json``. The
nightly train-als refits with the newest row instead of searching, and refits in full (no
fold-in) the first night after a new tune. Item-similarity has no search to move here (its
settings are fixed values, not a grid).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import functions as F

from recspark.catalog import INTERACTIONS_SPLIT, TUNED_PARAMS
from recspark.featurize.splits import split_protocol
from recspark.pipeline.stage import StageContext
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


def run_tune(ctx: StageContext) -> TuneResult:
    tables, tracker, ac, k = ctx.tables, ctx.tracker, ctx.config.als, ctx.config.evaluation.k
    ctx.spark.sparkContext.setCheckpointDir(ctx.config.checkpoint_dir())
    split = tables.read(INTERACTIONS_SPLIT)
    protocol, split_seed = split_protocol(tables.latest_metadata(INTERACTIONS_SPLIT))
    probe = als_estimator(ac).copy(rank=max(ac.grid.rank), implicit_prefs=True)
    engine, reason = pick_engine(probe, split.where(F.col("split") != "test"), ac.engine_settings())
    log.info("tune: ALS engine %s (%s)", engine, reason)
    tracker.log_params({"als.engine_used": engine, "als.engine_reason": reason})
    with ctx.measure("tune.als_search"):
        search = search_on_split(split, ac, k, split_seed, engine_fit(engine, ac.engine_settings()))
    for name, params, metrics in trial_runs(search, k):
        tracker.log_child_run(name, params, metrics)
    best, label = search.best, metric_label(ac.selection_metric, k)
    value = best.metrics[ac.selection_metric]
    tracker.log_params({f"tuned.als.{key}": v for key, v in best.params.items()})
    tracker.log_metrics({f"tuned.als.validation_{label}": value})
    tracker.log_dict(search_summary(search, k), "als_search.json")

    row = (ALS_ALGORITHM, tuned_params_json(best.params), label, float(value), len(search.trials), protocol,
           ctx.run_date, ctx.run_id, tracker.mlflow_run_id)
    tables.write(ctx.spark.createDataFrame([row], TUNED_PARAMS.schema), TUNED_PARAMS,
                 replace_partition={"algorithm": ALS_ALGORITHM}, metadata=ctx.commit_metadata())
    result = TuneResult(
        als_trials=len(search.trials), als_best_rank=best.params["rank"], als_best_reg_param=best.params["reg_param"],
        als_best_alpha=best.params["alpha"], als_best_implicit=int(best.params["implicit_prefs"]),
        als_validation_metric=value, implicit_engine=int(engine == "implicit"),
    )
    log.info("tune %s: %s", ctx.run_date, result)
    return result
