"""The ALS hyperparameter search on a split, and the tuned params it hands to the nightly refit.

:func:`search_on_split` is the search the ``tune`` stage runs weekly (and ``train-als`` runs in
its place when no tuned params exist yet): every point of ``AlsSettings.grid`` is fitted on the
tuning-train pairs and scored by ``selection_metric`` at ``k`` on the validation pairs of
:func:`recspark.featurize.splits.tuning_frames` (the test split is never used). The chosen
params travel as a JSON object of the searched keys (:data:`SEARCHABLE_PARAMS`):
:func:`tuned_params_json` writes it, :func:`tuned_params_from_json` reads it back and checks it.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame

from recspark.featurize.splits import tuning_frames
from recspark.recommenders.als import (
    SEARCHABLE_PARAMS,
    ALSRecommender,
    ALSRecommenderModel,
    AlsSettings,
    SearchResult,
    als_estimator,
    search_als,
)

ALS_ALGORITHM = "als"  # the algorithm key of ALS rows in the tuned params


def search_on_split(
    split: DataFrame,
    settings: AlsSettings,
    k: int,
    split_seed: int,
    fit: Callable[[ALSRecommender, DataFrame], ALSRecommenderModel] | None = None,
    stratify_by: str = "user",
) -> SearchResult:
    """The grid search of ``settings`` on ``split`` (``interactions_split``: user_idx, item_idx,
    confidence, rating, split train/validation/test), carving ``settings.tuning_ratio`` of each
    user's (``stratify_by="item"``: each item's) train pairs when there is no validation split
    (seeded by ``split_seed``)."""
    tuning_train, validation = tuning_frames(split, settings.tuning_ratio, split_seed, stratify_by)
    tuning_train, validation = tuning_train.cache(), validation.cache()
    try:
        return search_als(
            tuning_train, validation, dataclasses.asdict(settings.grid), als_estimator(settings), k,
            settings.selection_metric, fit=fit,
        )
    finally:
        tuning_train.unpersist()
        validation.unpersist()


def metric_label(metric: str, k: int) -> str:
    """``ndcg@k`` at k=10 -> ``ndcg_at_10`` (an MLflow-safe metric name)."""
    return metric.replace("@k", f"_at_{k}")


def trial_runs(search: SearchResult, k: int) -> list[tuple[str, dict[str, Any], dict[str, float]]]:
    """(run name, params, metrics) of every trial, for one nested MLflow run each."""
    return [
        (f"als-trial-{i}", trial.params,
         {metric_label(key, k): value for key, value in trial.metrics.items()} | {"fit_seconds": trial.fit_seconds})
        for i, trial in enumerate(search.trials)
    ]


def search_summary(search: SearchResult, k: int) -> dict[str, Any]:
    """The search as a JSON-able dict (metric, k, best index, every trial)."""
    return {"metric": search.metric, "k": k, "best_index": search.best_index,
            "trials": [dataclasses.asdict(t) for t in search.trials]}


def tuned_params_json(params: dict[str, Any]) -> str:
    """The searched keys of a trial's ``params`` as a JSON object (sorted keys)."""
    return json.dumps({key: params[key] for key in SEARCHABLE_PARAMS}, sort_keys=True)


def tuned_params_from_json(text: str) -> dict[str, Any]:
    """The searched ALS params of :func:`tuned_params_json`'s output, typed; ValueError naming
    what is missing or unknown."""
    params = json.loads(text)
    if not isinstance(params, dict):
        raise ValueError(f"tuned ALS params must be a JSON object, got {text!r}")
    missing, unknown = set(SEARCHABLE_PARAMS) - set(params), set(params) - set(SEARCHABLE_PARAMS)
    if missing or unknown:
        raise ValueError(f"tuned ALS params {text!r}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return {"implicit_prefs": bool(params["implicit_prefs"]), "rank": int(params["rank"]),
            "reg_param": float(params["reg_param"]), "alpha": float(params["alpha"])}
