"""ALS training stage: interactions_split -> user_factors, item_factors (+ factor neighbours).

1. Search: every point of ``als.grid`` is fitted on the tuning-train pairs and scored by
   ``als.selection_metric`` at ``evaluation.k`` on the validation pairs (seen = tuning-train).
   Validation = the split's ``validation`` pairs; when there are none (the default 75/25
   protocol), ``als.tuning_ratio`` of each user's train pairs, drawn with the split seed + 1.
   The test split is never used for tuning.
2. Refit: the best params on all non-test pairs (train + validation).
3. Write ``user_factors`` and ``item_factors`` (user_idx / item_idx, features array<float>),
   the ``als_factors`` partition of ``item_similarity`` (exact cosine neighbours of the item
   factors), and log trials (nested MLflow runs), the model (``mlflow.spark``) and, with
   ``als.register_model``, register it and move the champion alias only if its validation
   metric beats the champion's.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import AlsConfig, Config, SplitConfig
from recspark.io.delta import DeltaTables
from recspark.featurize.splits import random_stratified_split
from recspark.recommenders.als import ALSRecommender, search_als
from recspark.recommenders.item_similarity import factor_similarity
from recspark.stages.common import StageContext
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)

FACTOR_SIMILARITY_METHOD = "als_factors"


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


# How train-als writes each searched param into the factor tables' commit metadata, read back.
def _parse_bool(value: str) -> bool:
    return value == "True"


_PARAM_PARSERS = {
    "rank": int, "reg_param": float, "alpha": float, "implicit_prefs": _parse_bool,
    "max_iter": int, "seed": int, "nonnegative": _parse_bool,
}


def factor_params(tables: DeltaTables) -> dict[str, Any]:
    """The ALS params (rank, reg_param, alpha, implicit_prefs, max_iter, seed, nonnegative) the
    current ``user_factors`` were refitted with, read from the commit metadata train-als wrote."""
    if not tables.exists("user_factors"):
        raise ValueError("table user_factors does not exist: run the train-als stage first")
    metadata = tables.history("user_factors", limit=1)[0].metadata
    missing = [name for name in _PARAM_PARSERS if f"recspark.als.{name}" not in metadata]
    if missing:
        raise ValueError(f"user_factors' latest commit lacks the ALS param(s) {missing} in its metadata; "
                         "re-run the train-als stage")
    return {name: parse(metadata[f"recspark.als.{name}"]) for name, parse in _PARAM_PARSERS.items()}


def als_estimator(ac: AlsConfig) -> ALSRecommender:
    """The ALS estimator of ``als.*`` before the searched params (rank, reg_param, alpha,
    implicit_prefs) are set; the rerank stage copies it with :func:`factor_params`."""
    return ALSRecommender(
        max_iter=ac.max_iter, seed=ac.seed, nonnegative=ac.nonnegative,
        checkpoint_interval=ac.checkpoint_interval, implicit_rating_col=ac.implicit_rating_col,
    )


def tuning_frames(split: DataFrame, tuning_ratio: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """(tuning train, validation) from ``interactions_split``: its validation pairs when it has
    any, otherwise a seeded per-user ``tuning_ratio`` share of its train pairs."""
    validation = split.where(F.col("split") == "validation")
    if validation.limit(1).count():
        return split.where(F.col("split") == "train"), validation
    carved = random_stratified_split(
        split.where(F.col("split") == "train").drop("split"),
        SplitConfig(method="random_stratified", stratify_by="user", test_ratio=tuning_ratio, seed=seed),
    )
    return carved.where(F.col("split") == "train"), carved.where(F.col("split") == "test")


def run_train_als(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> AlsTrainingResult:
    ac, k = config.als, config.evaluation.k
    spark.sparkContext.setCheckpointDir(config.checkpoint_dir())
    meta = ctx.commit_metadata("train-als")
    split = tables.read("interactions_split")
    tuning_train, validation = tuning_frames(split, ac.tuning_ratio, config.featurize.split.seed + 1)
    tuning_train, validation = tuning_train.cache(), validation.cache()
    base = als_estimator(ac)
    metric = ac.selection_metric
    with ctx.measure("als.search"):
        search = search_als(tuning_train, validation, dataclasses.asdict(ac.grid), base, k, metric)
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
        {"metric": metric, "k": k, "best_index": search.best_index,
         "trials": [dataclasses.asdict(t) for t in search.trials]},
        "als_search.json",
    )
    tuning_train.unpersist()
    validation.unpersist()

    with ctx.measure("als.refit"):
        final = base.copy(**best.params).fit(
            split.where(F.col("split") != "test")
        )
        user_factors = final.user_factors.localCheckpoint()
        item_factors = final.item_factors.localCheckpoint()
    with ctx.measure("als.log_model"):
        model_uri = tracker.log_spark_model(final.als_model, "als_model")
    promoted = False
    if ac.register_model:
        promoted = tracker.register_if_better(
            model_uri, ac.model_name, ac.champion_alias, f"validation_{label}", best.metrics[metric]
        )
    # Lineage for the published lists: which registered model and MLflow run made these factors.
    params_meta = meta | {f"als.{key}": value for key, value in best.params.items()} | {
        "model_version": tracker.registered_version or "unregistered",
        "mlflow_run_id": tracker.mlflow_run_id or "",
    }
    tables.write(user_factors, "user_factors", metadata=params_meta, overwrite_schema=True)
    tables.write(item_factors, "item_factors", metadata=params_meta, overwrite_schema=True)
    if ac.factor_similarity_top_n > 0:
        with ctx.measure("als.factor_similarity"):
            neighbours = factor_similarity(item_factors, ac.factor_similarity_top_n).withColumn(
                "method", F.lit(FACTOR_SIMILARITY_METHOD)
            )
            tables.write(
                neighbours, "item_similarity", partition_by=["method"],
                replace_partition={"method": FACTOR_SIMILARITY_METHOD}, metadata=meta,
            )

    result = AlsTrainingResult(
        trials=len(search.trials),
        best_rank=best.params["rank"],
        best_reg_param=best.params["reg_param"],
        best_alpha=best.params["alpha"],
        best_implicit=int(best.params["implicit_prefs"]),
        validation_metric=best.metrics[metric],
        users_with_factors=user_factors.count(),
        items_with_factors=item_factors.count(),
        promoted=int(promoted),
    )
    log.info("train-als %s: %s", ctx.run_date, result)
    return result

