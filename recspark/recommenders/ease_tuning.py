"""EASE's search on the validation carve (the weekly tune) and its record in ``tuned_params``.

:func:`search_ease` builds the Gram matrix of the fit rows once and solves it for every point of
``EaseSettings.grid`` (``reg_lambda`` x ``popularity_exponent``); each point's lists (top ``k``
unseen items for the validation users, the fit rows as history) are scored by recspark's
:func:`recspark.evaluation.ranking_metrics` as mean NDCG@k over the validation users, a user
without a list counting 0. One solve per ``reg_lambda`` serves every ``popularity_exponent`` (a
column scale of ``B``). The trials score on the driver, not in Spark: the validation users'
histories are collected once as a sparse float32 matrix and multiplied by ``B`` in blocks of
:data:`SCORE_BLOCK_USERS` users (the lists of the dense ``B``, as :meth:`EaseModel.recommend`
serves up to ``dense_max_items``; broadcasting ``B``, ``n_items^2 x 4`` bytes, for every trial
cost about a minute per point on MovieLens); at 25k items (5M synthetic interactions) the dense
histories (users x items) and a solve per grid point had not finished the first of 12 points in
6.5 minutes. The lists go back to Spark for the metric code through
:func:`recspark.io.session.frame_from_rows` (tasks within Spark's recommended size).
:func:`search_ease_on_split` carves the validation rows from an ``interactions_split`` frame
(never its test rows).
:func:`tuned_params_json` / :func:`settings_with_tuned` write and apply the ``ease`` row.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.evaluation import ranking_metrics
from recspark.evaluation.sampling import sample_users
from recspark.featurize.splits import tuning_frames
from recspark.io.session import frame_from_rows
from recspark.recommenders.ease import EaseSettings, ease_weights, gram_matrix, torch_device
from recspark.recommenders.topk import top_k_of_score_block

log = logging.getLogger(__name__)

EASE_ALGORITHM = "ease"  # the algorithm key of EASE rows in the tuned params
SEARCHED = ("reg_lambda", "popularity_exponent")
SCORE_BLOCK_USERS = 1024  # validation users per dense score block (block x n_items float32)


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


def search_ease(fit_rows: DataFrame, validation: DataFrame, settings: EaseSettings, k: int,
                seed: int = 0) -> EaseSearch:
    """Every grid point of ``settings`` fitted on ``fit_rows`` (user_idx, item_idx) and scored on
    ``validation`` (user_idx, item_idx), on a ``seed``-ed sample of at most
    ``settings.tuning_max_users`` validation users (the same users for every point). Raises
    :class:`recspark.recommenders.ease.CatalogueTooLarge` above ``settings.max_items``.

    One solve per ``reg_lambda``: ``popularity_exponent`` only scales ``B``'s columns, so the
    scores of every exponent are the unscaled scores times the column scale
    (:func:`_top_k_lists`' ``column_scales``). A trial's ``seconds`` is its share of the solve plus
    its own lists and metric."""
    item_ids, gram = gram_matrix(fit_rows, settings.max_items)
    device = torch_device(settings.device)
    spark = fit_rows.sparkSession
    truth = validation.select("user_idx", "item_idx").distinct()
    if settings.tuning_max_users is not None:
        truth = truth.join(F.broadcast(sample_users(truth, settings.tuning_max_users, seed)), "user_idx", "left_semi")
    truth = truth.cache()
    users, history = _validation_histories(fit_rows, truth, item_ids)
    popularity = np.maximum(np.diagonal(gram), 1.0).astype(np.float64)
    exponents = [float(beta) for beta in settings.grid.popularity_exponent]
    trials = []
    for reg_lambda in settings.grid.reg_lambda:
        began = time.perf_counter()
        weights = ease_weights(gram.copy(), float(reg_lambda), device)
        rows = _top_k_lists(users, history, weights, item_ids, k, [popularity ** -beta for beta in exponents])
        del weights
        shared = (time.perf_counter() - began) / len(exponents)
        for beta, beta_rows in zip(exponents, rows):
            began = time.perf_counter()
            params = {"reg_lambda": float(reg_lambda), "popularity_exponent": beta}
            lists = frame_from_rows(spark, beta_rows, "user_idx int, item_idx int, rank int", 3)
            metrics = ranking_metrics(lists, truth, k, "user_idx", "item_idx")
            ndcg = metrics["ndcg@k"] * metrics["user_coverage"]
            trials.append(EaseTrial(params, float(ndcg), shared + time.perf_counter() - began))
            log.info("EASE trial %s: ndcg@%d=%.4f (%.1fs)", params, k, ndcg, trials[-1].seconds)
    truth.unpersist()
    return EaseSearch(trials, k)


def _validation_histories(fit_rows: DataFrame, truth: DataFrame,
                          item_ids: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
    """(user ids, sparse float32 users x items 0/1 history in ``item_ids`` order) of the
    validation users with at least one fit row."""
    pairs = (fit_rows.select("user_idx", "item_idx").distinct()
             .join(truth.select("user_idx").distinct(), "user_idx", "left_semi").toPandas())
    users, user_rows = np.unique(pairs["user_idx"].to_numpy(np.int64), return_inverse=True)
    columns = np.searchsorted(item_ids, pairs["item_idx"].to_numpy(np.int64))
    history = sp.csr_matrix((np.ones(user_rows.size, dtype=np.float32), (user_rows, columns)),
                            shape=(users.size, item_ids.size))
    return users, history


def _top_k_lists(users: np.ndarray, history: sp.csr_matrix, weights: np.ndarray, item_ids: np.ndarray, k: int,
                 column_scales: list[np.ndarray]) -> list[list[tuple[int, int, int]]]:
    """Per column scale ``s``: (user_idx, item_idx, rank) rows, each user's top ``k`` unseen items
    by ``(history @ weights) * s``, score descending, ties by item id."""
    lists: list[list[tuple[int, int, int]]] = [[] for _ in column_scales]
    for start in range(0, users.size, SCORE_BLOCK_USERS):
        block = history[start:start + SCORE_BLOCK_USERS]
        raw = np.asarray(block @ weights)
        seen_rows, seen_cols = block.nonzero()
        for rows, scale in zip(lists, column_scales):
            scores = raw * scale.astype(raw.dtype)[None, :]
            scores[seen_rows, seen_cols] = -np.inf
            block_rows, cols, _, ranks = top_k_of_score_block(scores, k)
            rows += zip(users[start + block_rows].tolist(), item_ids[cols].tolist(), ranks.tolist())
    return lists


def search_ease_on_split(split: DataFrame, settings: EaseSettings, k: int, split_seed: int,
                         stratify_by: str = "user") -> EaseSearch:
    """:func:`search_ease` on the ``settings.tuning_ratio`` carve of ``split``'s train rows, per
    ``stratify_by`` (:func:`recspark.featurize.splits.tuning_frames`)."""
    fit_rows, validation = tuning_frames(split.where(F.col("split") != "test"), settings.tuning_ratio, split_seed,
                                         stratify_by)
    return search_ease(fit_rows, validation, settings, k, split_seed)


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
