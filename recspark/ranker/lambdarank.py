"""LightGBM lambdarank over the ranker features: trained on the driver, scored in Spark.

Training data is a labelled feature frame: the features of the validation-time candidates
(:func:`recspark.ranker.features.ranker_features`) with label 1 for the (user, item) pairs of the
validation carve and 0 otherwise. Only users with at least one positive and one negative
candidate teach lambdarank anything; those users are collected to the driver (Arrow), at most
``max_training_users`` users and ``max_training_rows`` rows (a seeded hash sample of whole users
above either cap), and split by user into a training and an early-stopping group set.

The trees learn a correction to a base source's ranking (``RankerSettings.base_source``): its
prior ``-ln(rank)`` is LightGBM's ``init_score`` in training and is added to the trees' output
when scoring; on the held-out users the model with trees is compared with the base ranking
alone, and the trees are dropped unless their per-user gain clears ``min_gain_standard_errors``
standard errors (a paired test: on ~100 held-out users, gains of +0.01 NDCG@10 come and go
between splits, see ``bench/bench_ranker_cv.py``). On MovieLens the plain lambdarank
early-stopped after four rounds and ranked below its best input (EASE), because the
piecewise-constant trees tie many candidates; the prior breaks those ties in the base's order.

The test split must never reach the ranker: :meth:`LearnedRanker.fit` takes only the features
and the label pairs, and refuses labels whose ``split`` column (when present) holds anything
but ``validation``; :func:`validation_labels` is the one way to cut labels from a split frame.
"""
from __future__ import annotations

import json
import logging
from typing import Iterator

import lightgbm as lgb
import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.ranker.features import KEYS
from recspark.ranker.settings import AUTO_BASE, NO_BASE, RankerSettings

log = logging.getLogger(__name__)

LABEL = "label"
RANK_PREFIX = "rank_"
VALIDATION = "validation"


def validation_labels(split_frame: DataFrame) -> DataFrame:
    """(user_idx, item_idx, split) of the ``validation`` rows of a split frame
    (``interactions_split`` or the tuning carve): the only rows the ranker may learn from."""
    return split_frame.where(F.col("split") == VALIDATION).select(*KEYS, "split").distinct()


def _require_validation_only(labels: DataFrame) -> None:
    if "split" not in labels.columns:
        return
    other = labels.where(F.col("split").isNull() | (F.col("split") != VALIDATION)).limit(1).count()
    if other:
        raise ValueError("labels contain rows whose split is not 'validation': the ranker must never see test "
                         "(or train) rows; cut labels with validation_labels()")


def labelled_features(features: DataFrame, labels: DataFrame) -> DataFrame:
    """``features`` with ``label`` 1.0 for the pairs in ``labels`` (user_idx, item_idx), else 0.0."""
    positives = labels.select(*KEYS).distinct().withColumn(LABEL, F.lit(1.0))
    return features.join(positives, KEYS, "left").fillna({LABEL: 0.0})


def _user_hash(seed: int) -> F.Column:
    return F.xxhash64(F.lit(seed).cast("long"), F.col("user_idx"))


def _training_users(labelled: DataFrame, settings: RankerSettings) -> DataFrame:
    """Users with a positive and a negative candidate, with ``is_eval`` for the early-stopping
    share; above ``max_training_users`` users or ``max_training_rows`` candidates, the longest
    prefix in seeded hash order that fits both (at least one user). Only (order, user, count)
    triples reach the driver to find the cut; the rows stay in Spark."""
    users = (
        labelled.groupBy("user_idx")
        .agg(F.sum(LABEL).alias("positives"), F.count(F.lit(1)).alias("candidates"))
        .where((F.col("positives") > 0) & (F.col("positives") < F.col("candidates")))
        .select("user_idx", "candidates", _user_hash(settings.seed).alias("_order"))
    )
    counts = users.select("_order", "user_idx", "candidates").toPandas().sort_values(["_order", "user_idx"])
    fits = int(np.argmin(np.r_[counts["candidates"].cumsum().to_numpy() <= settings.max_training_rows, False]))
    n_kept = min(len(counts), settings.max_training_users, max(fits, 1))
    kept = users
    if n_kept < len(counts):
        last_order, last_user = (int(v) for v in counts.iloc[n_kept - 1][["_order", "user_idx"]])
        kept = users.where((F.col("_order") < last_order)
                           | ((F.col("_order") == last_order) & (F.col("user_idx") <= last_user)))
        log.info("ranker: %d of %d users (%d of %d candidate rows) train it (ranker.max_training_users %d, "
                 "max_training_rows %d)", n_kept, len(counts), int(counts["candidates"].iloc[:n_kept].sum()),
                 int(counts["candidates"].sum()), settings.max_training_users, settings.max_training_rows)
    eval_bucket = F.pmod(_user_hash(settings.seed + 1), F.lit(10_000)) < int(settings.eval_fraction * 10_000)
    return kept.select("user_idx", eval_bucket.alias("is_eval"))


def training_users(candidates: DataFrame, labels: DataFrame, settings: RankerSettings) -> DataFrame:
    """(user_idx, is_eval) of the users :meth:`LearnedRanker.fit` trains on, found from the
    candidate pairs alone (``candidates``: user_idx, item_idx; a pair listed twice counts once,
    as in the feature frame) and ``labels`` (validation pairs only), before any feature is built:
    a caller builds the features of these users and fits on them with the same result as on
    every user's."""
    _require_validation_only(labels)
    return _training_users(labelled_features(candidates.select(*KEYS).distinct(), labels), settings)


def training_rows(features: DataFrame, labels: DataFrame, feature_names: list[str],
                  settings: RankerSettings) -> pd.DataFrame:
    """The rows the ranker learns from, on the driver, sorted by (user_idx, item_idx): keys, the
    ``feature_names``, ``label`` and ``is_eval`` (the user is held out for early stopping), for
    the users with a positive and a negative candidate (at most ``max_training_users``).
    ``labels`` as for :meth:`LearnedRanker.fit`; ValueError on test rows or when no user is left."""
    _require_validation_only(labels)
    missing = [c for c in KEYS + feature_names if c not in features.columns]
    if missing:
        raise ValueError(f"features is missing column(s) {missing}")
    labelled = labelled_features(features.select(*KEYS, *feature_names), labels)
    users = _training_users(labelled, settings)
    rows = labelled.join(F.broadcast(users), "user_idx").toPandas()
    if rows.empty:
        raise ValueError("no user has both a positive and a negative candidate: nothing to learn from")
    return rows.sort_values(KEYS, kind="stable", ignore_index=True)


def base_prior(ranks: np.ndarray) -> np.ndarray:
    """The base source's prior score of each candidate: ``-ln(rank)`` (0 for rank 1)."""
    return -np.log(np.maximum(np.asarray(ranks, dtype=np.float64), 1.0))


def user_ndcg(users: np.ndarray, items: np.ndarray, scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of every user with a positive label (in user order), each user's candidates ordered
    by ``scores`` descending (ties: smaller item first); binary labels, ideal = the user's
    positives among the candidates (LightGBM's lambdarank metric)."""
    order = np.lexsort((items, -np.asarray(scores, dtype=np.float64), users))
    users, labels = users[order], np.asarray(labels, dtype=np.float64)[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    position = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    gains = np.where(position < k, labels * discount[np.minimum(position, k - 1)], 0.0)
    dcg = np.add.reduceat(gains, starts)
    positives = np.add.reduceat(labels, starts).astype(int)
    idcg = np.r_[0.0, np.cumsum(discount)][np.minimum(positives, k)]
    has_positive = idcg > 0
    return dcg[has_positive] / idcg[has_positive]


def users_mean(per_user: np.ndarray) -> float:
    """Mean of per-user NDCGs (0 when no user has a positive, so none is scored)."""
    return float(per_user.mean()) if len(per_user) else 0.0


def mean_ndcg(users: np.ndarray, items: np.ndarray, scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """:func:`users_mean` of :func:`user_ndcg`."""
    return users_mean(user_ndcg(users, items, scores, labels, k))


def trees_beat_base(with_trees: np.ndarray, base: np.ndarray, standard_errors: float) -> bool:
    """True when the mean per-user gain ``with_trees - base`` (paired NDCG of the same users)
    exceeds ``standard_errors`` times its standard error (a one-sided paired test; 2 is about
    the 2.5% level). A gain with zero spread counts when it is positive."""
    gain = np.asarray(with_trees, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    if len(gain) == 0:
        return False
    error = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else np.inf
    return bool(gain.mean() > standard_errors * error) if error > 0 else bool(gain.mean() > 0)


def ranking_dataset(rows: pd.DataFrame, feature_names: list[str], init_score: np.ndarray,
                    reference: lgb.Dataset | None = None) -> lgb.Dataset:
    """A lambdarank Dataset of ``rows`` (sorted by user): one query group per user, starting
    from ``init_score``."""
    group = rows.groupby("user_idx", sort=False).size().to_numpy()
    return lgb.Dataset(
        rows[feature_names].to_numpy(np.float64), label=rows[LABEL].to_numpy(), group=group,
        init_score=init_score, feature_name=feature_names, reference=reference, free_raw_data=True,
    )


def rows_user_ndcg(rows: pd.DataFrame, scores: np.ndarray, k: int) -> np.ndarray:
    """:func:`user_ndcg` of training rows (user_idx, item_idx, label) scored by ``scores``."""
    return user_ndcg(rows["user_idx"].to_numpy(), rows["item_idx"].to_numpy(), scores, rows[LABEL].to_numpy(), k)


def rows_mean_ndcg(rows: pd.DataFrame, scores: np.ndarray, k: int) -> float:
    """:func:`users_mean` of :func:`rows_user_ndcg`."""
    return users_mean(rows_user_ndcg(rows, scores, k))


def choose_base_feature(rows: pd.DataFrame, feature_names: list[str], base_source: str, k: int) -> str | None:
    """The ``rank_<source>`` feature the prior comes from: ``none`` -> None; a source name -> its
    rank feature (ValueError when absent); ``auto`` -> the rank feature whose ranking has the best
    NDCG@k on ``rows`` (the training users; the first in feature order on a tie), None when the
    features have no rank feature."""
    if base_source == NO_BASE:
        return None
    if base_source != AUTO_BASE:
        feature = f"{RANK_PREFIX}{base_source}"
        if feature not in feature_names:
            raise ValueError(f"base_source {base_source!r}: no feature {feature!r} among {feature_names}")
        return feature
    ranked = [name for name in feature_names if name.startswith(RANK_PREFIX)]
    if not ranked:
        return None
    quality = {name: rows_mean_ndcg(rows, base_prior(rows[name].to_numpy()), k) for name in ranked}
    log.info("ranker base source ndcg@%d on the training users: %s", k,
             ", ".join(f"{name[len(RANK_PREFIX):]} {value:.4f}" for name, value in quality.items()))
    return max(ranked, key=lambda name: quality[name])


class LearnedRanker:
    """Estimator: :meth:`fit` trains LightGBM lambdarank on the driver -> :class:`RankerModel`."""

    def __init__(self, settings: RankerSettings | None = None):
        self.settings = settings or RankerSettings()

    def fit(self, features: DataFrame, labels: DataFrame, feature_names: list[str] | None = None) -> RankerModel:
        """Train on ``features`` (user_idx, item_idx, feature columns) labelled by ``labels``
        (user_idx, item_idx[, split]: the validation pairs; any other split raises ValueError).

        ``feature_names`` default: every column of ``features`` but the keys. Users (with a
        positive and a negative candidate) beyond ``max_training_users`` or
        ``max_training_rows`` are left out by a seeded sample, because training collects the
        rows to the driver. With a base source
        (``settings.base_source``), the trees start from its prior and are kept only when they
        beat it on the held-out users. Raises ValueError when no user has both a positive and a
        negative candidate, or too few for the eval share.
        """
        s = self.settings
        names = feature_names or [c for c in features.columns if c not in KEYS]
        rows = training_rows(features, labels, names, s)
        is_eval = rows.pop("is_eval").to_numpy(bool)
        if is_eval.all() or not is_eval.any():
            raise ValueError(f"too few training users ({rows['user_idx'].nunique()}) to hold out an eval share")
        train_rows, eval_rows = rows[~is_eval], rows[is_eval]
        base = choose_base_feature(train_rows, names, s.base_source, s.eval_at)
        prior = base_prior(rows[base].to_numpy()) if base else np.zeros(len(rows))
        train_set = ranking_dataset(train_rows, names, prior[~is_eval])
        eval_set = ranking_dataset(eval_rows, names, prior[is_eval], reference=train_set)
        booster = lgb.train(
            s.lightgbm_params(), train_set, num_boost_round=s.n_estimators, valid_sets=[eval_set],
            valid_names=["eval"], callbacks=[lgb.early_stopping(s.early_stopping_rounds, verbose=False)],
        )
        best = booster.best_iteration or booster.current_iteration()
        trees = booster.predict(eval_rows[names].to_numpy(np.float64), num_iteration=best)
        with_trees = rows_user_ndcg(eval_rows, prior[is_eval] + trees, s.eval_at)
        eval_ndcg = users_mean(with_trees)
        base_alone = rows_user_ndcg(eval_rows, prior[is_eval], s.eval_at) if base else None
        base_ndcg = None if base_alone is None else users_mean(base_alone)
        use_trees = base_alone is None or trees_beat_base(with_trees, base_alone, s.min_gain_standard_errors)
        log.info("ranker: %d training rows, %d users (%d eval), base %s, best iteration %d, eval ndcg@%d %.4f "
                 "(base alone %s): %s", len(rows), rows["user_idx"].nunique(),
                 int(eval_rows["user_idx"].nunique()), base or "none", best, s.eval_at, eval_ndcg,
                 "-" if base_ndcg is None else f"{base_ndcg:.4f}",
                 "trees kept" if use_trees else "trees dropped, serving the base ranking")
        eval_users = sorted(int(u) for u in eval_rows["user_idx"].unique())
        return RankerModel(booster.model_to_string(num_iteration=best), base_feature=base, use_trees=use_trees,
                           best_iteration=best, eval_ndcg=eval_ndcg if use_trees else base_ndcg,
                           base_ndcg=base_ndcg, eval_users=eval_users)


_BOOSTERS: dict[int, lgb.Booster] = {}


def _worker_booster(model_string: str) -> lgb.Booster:
    """One Booster per model string per Python worker process."""
    key = hash(model_string)
    if key not in _BOOSTERS:
        _BOOSTERS.clear()
        _BOOSTERS[key] = lgb.Booster(model_str=model_string)
    return _BOOSTERS[key]


class RankerModel:
    """A trained lambdarank booster (LightGBM model string) over its feature names, plus the base
    prior it starts from: score = ``-ln(<base_feature>)`` (when ``base_feature`` is set) + the
    trees' output (when ``use_trees``). After :meth:`LearnedRanker.fit`, ``eval_users`` are the
    users held out of training (early stopping and the trees-or-base choice), the fair ground to
    compare the ranker with other lists on; ``eval_ndcg`` / ``base_ndcg`` their NDCG@eval_at with
    this model / with the base ranking alone."""

    def __init__(self, model_string: str, base_feature: str | None = None, use_trees: bool = True,
                 best_iteration: int | None = None, eval_ndcg: float | None = None, base_ndcg: float | None = None,
                 eval_users: list[int] | None = None):
        if base_feature is None and not use_trees:
            raise ValueError("a ranker without a base feature must use its trees")
        self.booster = lgb.Booster(model_str=model_string)
        self.model_string = model_string
        self.base_feature = base_feature
        self.use_trees = use_trees
        self.best_iteration = best_iteration
        self.eval_ndcg = eval_ndcg
        self.base_ndcg = base_ndcg
        self.eval_users = eval_users or []
        if base_feature is not None and base_feature not in self.feature_names:
            raise ValueError(f"base feature {base_feature!r} is not among the model's features {self.feature_names}")

    @property
    def feature_names(self) -> list[str]:
        return list(self.booster.feature_name())

    @property
    def input_columns(self) -> list[str]:
        """The feature columns :meth:`score` reads: all of them with the trees; without them only
        the base feature (the ranking is then the base source's own)."""
        return self.feature_names if self.use_trees else [self.base_feature]

    def to_string(self) -> str:
        """JSON of the LightGBM model text (feature names included), the base feature and
        whether the trees are used; :meth:`from_string` reads it back."""
        return json.dumps({"base_feature": self.base_feature, "use_trees": self.use_trees,
                           "lightgbm_model": self.model_string})

    @classmethod
    def from_string(cls, text: str) -> RankerModel:
        stored = json.loads(text)
        return cls(stored["lightgbm_model"], base_feature=stored["base_feature"], use_trees=stored["use_trees"])

    def feature_importances(self, importance_type: str = "gain") -> dict[str, float]:
        """Feature name -> total ``gain`` (or ``split`` count) over the trees, largest first."""
        values = self.booster.feature_importance(importance_type=importance_type)
        pairs = sorted(zip(self.feature_names, map(float, values)), key=lambda kv: (-kv[1], kv[0]))
        return dict(pairs)

    def score(self, features: DataFrame) -> DataFrame:
        """(user_idx, item_idx, score double) for every row of ``features`` (which needs the
        model's :attr:`input_columns`), scored in Spark with the model string broadcast."""
        names = self.input_columns
        missing = [c for c in KEYS + names if c not in features.columns]
        if missing:
            raise ValueError(f"features is missing column(s) {missing} the model was trained on")
        broadcast = features.sparkSession.sparkContext.broadcast(self.model_string)
        base, use_trees = self.base_feature, self.use_trees

        def predict(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            booster = _worker_booster(broadcast.value) if use_trees else None
            for frame in frames:
                scores = base_prior(frame[base].to_numpy()) if base else np.zeros(len(frame))
                if use_trees and len(frame):
                    scores = scores + booster.predict(frame[names].to_numpy(np.float64), num_threads=1)
                yield pd.DataFrame({"user_idx": frame["user_idx"], "item_idx": frame["item_idx"],
                                    "score": np.asarray(scores, dtype=np.float64)})

        selected = features.select(F.col("user_idx").cast("int"), F.col("item_idx").cast("int"),
                                   *[F.col(c).cast("double") for c in names])
        return selected.mapInPandas(predict, "user_idx int, item_idx int, score double")

    def rank(self, features: DataFrame, n: int) -> DataFrame:
        """Top ``n`` per user: (user_idx, item_idx, score, rank 1..n), score descending, ties by
        the smaller item_idx."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        order = Window.partitionBy("user_idx").orderBy(F.col("score").desc(), F.col("item_idx"))
        return (
            self.score(features).withColumn("rank", F.row_number().over(order))
            .where(F.col("rank") <= n)
        )
