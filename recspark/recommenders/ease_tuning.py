"""EASE's search on the validation carve (the weekly tune) and its record in ``tuned_params``.

:func:`search_ease` builds the Gram matrix of the fit rows once and solves it for every point of
``EaseSettings.grid`` (``reg_lambda`` x ``popularity_exponent``); each point's lists (top ``k``
for the validation users, the fit rows as seen history) are scored by mean NDCG@k over the
validation users, a user without a list counting 0. :func:`search_ease_on_split` carves the
validation rows from an ``interactions_split`` frame (never its test rows).
:func:`tuned_params_json` / :func:`settings_with_tuned` write and apply the ``ease`` row.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.evaluation import ranking_metrics
from recspark.featurize.splits import tuning_frames
from recspark.recommenders.ease import EaseModel, EaseSettings, ease_weights, gram_matrix, torch_device

log = logging.getLogger(__name__)

EASE_ALGORITHM = "ease"  # the algorithm key of EASE rows in the tuned params
SEARCHED = ("reg_lambda", "popularity_exponent")


@dataclass
class EaseTrial:
    params: dict[str, float]
    ndcg: float  # mean NDCG@k over the validation users
    seconds: float  # solve + recommend + score


@dataclass
class EaseSearch:
    trials: list[EaseTrial]
    k: int

    @property
    def best(self) -> EaseTrial:
        """The best trial; ties go to the earlier grid point."""
        return max(self.trials, key=lambda t: t.ndcg)


def search_ease(fit_rows: DataFrame, validation: DataFrame, settings: EaseSettings, k: int) -> EaseSearch:
    """Every grid point of ``settings`` fitted on ``fit_rows`` (user_idx, item_idx) and scored on
    ``validation`` (user_idx, item_idx). Raises :class:`recspark.recommenders.ease.CatalogueTooLarge`
    above ``settings.max_items``."""
    item_ids, gram = gram_matrix(fit_rows, settings.max_items)
    device = torch_device(settings.device)
    truth = validation.select("user_idx", "item_idx").distinct().cache()
    users = truth.select("user_idx").distinct()
    seen = fit_rows.select("user_idx", "item_idx")
    trials = []
    for params in settings.grid.points():
        began = time.perf_counter()
        point = dataclasses.replace(settings, **params)
        weights = ease_weights(gram.copy(), point.reg_lambda, device, point.popularity_exponent)
        lists = EaseModel(item_ids, weights, point).recommend(users, k, seen)
        metrics = ranking_metrics(lists, truth, k, "user_idx", "item_idx")
        ndcg = metrics["ndcg@k"] * metrics["user_coverage"]
        trials.append(EaseTrial(params, float(ndcg), time.perf_counter() - began))
        log.info("EASE trial %s: ndcg@%d=%.4f (%.1fs)", params, k, ndcg, trials[-1].seconds)
    truth.unpersist()
    return EaseSearch(trials, k)


def search_ease_on_split(split: DataFrame, settings: EaseSettings, k: int, split_seed: int) -> EaseSearch:
    """:func:`search_ease` on the ``settings.tuning_ratio`` carve of ``split``'s train rows
    (:func:`recspark.featurize.splits.tuning_frames`)."""
    fit_rows, validation = tuning_frames(split.where(F.col("split") != "test"), settings.tuning_ratio, split_seed)
    return search_ease(fit_rows, validation, settings, k)


def tuned_params_json(params: dict[str, Any]) -> str:
    return json.dumps({key: float(params[key]) for key in SEARCHED}, sort_keys=True)


def settings_with_tuned(settings: EaseSettings, text: str) -> EaseSettings:
    """``settings`` with the searched values of a ``tuned_params`` row (JSON); ValueError naming
    what is missing or unknown."""
    params = json.loads(text)
    if not isinstance(params, dict) or set(params) != set(SEARCHED):
        raise ValueError(f"tuned EASE params {text!r}: expected exactly the keys {list(SEARCHED)}")
    return dataclasses.replace(settings, **{key: float(params[key]) for key in SEARCHED})


def search_summary(search: EaseSearch) -> dict[str, Any]:
    """The trials and the best point, for MLflow (``ease_search.json``)."""
    return {"best": search.best.params, f"validation_ndcg@{search.k}": search.best.ndcg,
            "trials": [{"params": t.params, f"validation_ndcg@{search.k}": t.ndcg, "seconds": t.seconds}
                       for t in search.trials]}
