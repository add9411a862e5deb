"""Train-als stage: interactions_split -> user_factors, item_factors (+ factor neighbours).

0. Engine: ``als.engine`` (auto | mllib | implicit, :mod:`recspark.recommenders.als_engines`) is
   resolved once on the non-test pairs; auto picks the implicit library on the driver when the
   pairs fit ``als.memory_budget_mb``. The choice and its reason are logged (one line, MLflow
   params ``als.engine_used`` / ``als.engine_reason``) and every implicit fit of the stage uses it;
   explicit points always run on MLlib.
1. Search: every point of ``als.grid`` is fitted on the tuning-train pairs and scored by
   ``als.selection_metric`` at ``evaluation.k`` on the validation pairs (seen = tuning-train):
   :func:`recspark.featurize.splits.tuning_frames` with ``als.tuning_ratio`` and the split seed of
   ``interactions_split``'s commit. The test split is never used for tuning.
2. Refit: the best params on all non-test pairs (train + validation).
3. Write ``user_factors`` and ``item_factors`` (user_idx / item_idx, features array<float>; the
   params in their commit metadata as ``als.<param>``), the ``als_factors`` partition of
   ``item_similarity`` (exact cosine neighbours of the item factors), and log trials (nested
   MLflow runs), the model (``mlflow.spark``) and, with ``als.register_model``, register it and
   move the champion alias only if its validation metric beats the champion's.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from pyspark.sql import functions as F

from recspark.catalog import INTERACTIONS_SPLIT, ITEM_FACTORS, ITEM_SIMILARITY, USER_FACTORS
from recspark.featurize.splits import split_protocol, tuning_frames
from recspark.pipeline.stage import StageContext
from recspark.recommenders.als import als_estimator, als_params_metadata, search_als
from recspark.recommenders.als_engines import engine_fit, pick_engine
from recspark.recommenders.item_similarity import FACTOR_SIMILARITY_METHOD, factor_similarity

log = logging.getLogger(__name__)


@dataclass
class AlsTrainingResult:
    trials: int
    best_rank: int
    best_reg_param: float
    best_alpha: float
    best_implicit: int  # 1 implicit, 0 explicit
    validation_metric: float
    users_with_factors: int
    items_with_factors: int
    promoted: int  # 1 when the champion alias moved to this model
    implicit_engine: int  # 1 when the implicit library fitted the implicit points, 0 MLlib


def run_train_als(ctx: StageContext) -> AlsTrainingResult:
    tables, tracker, ac, k = ctx.tables, ctx.tracker, ctx.config.als, ctx.config.evaluation.k
    ctx.spark.sparkContext.setCheckpointDir(ctx.config.checkpoint_dir())
    split = tables.read(INTERACTIONS_SPLIT)
    _, split_seed = split_protocol(tables.latest_metadata(INTERACTIONS_SPLIT))
    tuning_train, validation = tuning_frames(split, ac.tuning_ratio, split_seed)
    tuning_train, validation = tuning_train.cache(), validation.cache()
    base = als_estimator(ac)
    history = split.where(F.col("split") != "test")
    engine, reason = pick_engine(base.copy(rank=max(ac.grid.rank), implicit_prefs=True), history, ac.engine_settings())
    log.info("train-als: ALS engine %s (%s)", engine, reason)
    tracker.log_params({"als.engine_used": engine, "als.engine_reason": reason})
    fit = engine_fit(engine, ac.engine_settings())
    metric = ac.selection_metric
    with ctx.measure("als.search"):
        search = search_als(tuning_train, validation, dataclasses.asdict(ac.grid), base, k, metric, fit=fit)
    label = metric.replace("@k", f"_at_{k}")
    for i, trial in enumerate(search.trials):
        tracker.log_child_run(
            f"als-trial-{i}", trial.params,
            {key.replace("@k", f"_at_{k}"): v for key, v in trial.metrics.items()} | {"fit_seconds": trial.fit_seconds},
        )
    best = search.best
    tracker.log_params({f"best.{key}": value for key, value in best.params.items()})
    tracker.log_metrics({f"validation_{label}": best.metrics[metric]})
    tracker.log_dict(
        {"metric": metric, "k": k, "best_index": search.best_index, "trials": [dataclasses.asdict(t) for t in search.trials]},
        "als_search.json",
    )
    tuning_train.unpersist()
    validation.unpersist()

    with ctx.measure("als.refit"):
        final = fit(base.copy(**best.params), history)
        user_factors = final.user_factors.localCheckpoint()
        item_factors = final.item_factors.localCheckpoint()
    with ctx.measure("als.log_model"):
        model_uri = tracker.log_spark_model(final.als_model, "als_model")
    promoted = False
    if ac.register_model:
        promoted = tracker.register_if_better(
            model_uri, ac.model_name, ac.champion_alias, f"validation_{label}", best.metrics[metric]
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

    result = AlsTrainingResult(
        trials=len(search.trials), best_rank=best.params["rank"], best_reg_param=best.params["reg_param"],
        best_alpha=best.params["alpha"], best_implicit=int(best.params["implicit_prefs"]),
        validation_metric=best.metrics[metric], users_with_factors=user_factors.count(),
        items_with_factors=item_factors.count(), promoted=int(promoted), implicit_engine=int(engine == "implicit"),
    )
    log.info("train-als %s: %s", ctx.run_date, result)
    return result
