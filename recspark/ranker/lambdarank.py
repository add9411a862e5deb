"""LightGBM lambdarank over the ranker features: trained on the driver, scored in Spark.

Training data is a labelled feature frame: the features of the validation-time candidates
(:func:`recspark.ranker.features.ranker_features`) with label 1 for the (user, item) pairs of the
validation carve and 0 otherwise. Only users with at least one positive and one negative
candidate teach lambdarank anything; those users are collected to the driver (Arrow), at most
``max_training_users`` of them (a seeded hash sample above the cap), and split by user into a
training and an early-stopping group set.

The test split must never reach the ranker: :meth:`LearnedRanker.fit` takes only the features
and the label pairs, and refuses labels whose ``split`` column (when present) holds anything
but ``validation``; :func:`validation_labels` is the one way to cut labels from a split frame.
"""
from __future__ import annotations

import logging
from typing import Iterator

import lightgbm as lgb
import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.ranker.features import KEYS
from recspark.ranker.settings import RankerSettings

log = logging.getLogger(__name__)

LABEL = "label"
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
    """Users with a positive and a negative candidate; a seeded hash sample of
    ``max_training_users`` of them above the cap, with ``is_eval`` for the early-stopping share."""
    users = (
        labelled.groupBy("user_idx")
        .agg(F.sum(LABEL).alias("positives"), F.count(F.lit(1)).alias("candidates"))
        .where((F.col("positives") > 0) & (F.col("positives") < F.col("candidates")))
        .select("user_idx", _user_hash(settings.seed).alias("_order"))
    )
    kept = users.orderBy("_order", "user_idx").limit(settings.max_training_users)
    eval_bucket = F.pmod(_user_hash(settings.seed + 1), F.lit(10_000)) < int(settings.eval_fraction * 10_000)
    return kept.select("user_idx", eval_bucket.alias("is_eval"))


def _dataset(rows: pd.DataFrame, feature_names: list[str], reference: lgb.Dataset | None = None) -> lgb.Dataset:
    rows = rows.sort_values(KEYS, kind="stable")
    group = rows.groupby("user_idx", sort=False).size().to_numpy()
    return lgb.Dataset(
        rows[feature_names].to_numpy(np.float64), label=rows[LABEL].to_numpy(), group=group,
        feature_name=feature_names, reference=reference, free_raw_data=True,
    )


class LearnedRanker:
    """Estimator: :meth:`fit` trains LightGBM lambdarank on the driver -> :class:`RankerModel`."""

    def __init__(self, settings: RankerSettings | None = None):
        self.settings = settings or RankerSettings()

    def fit(self, features: DataFrame, labels: DataFrame, feature_names: list[str] | None = None) -> RankerModel:
        """Train on ``features`` (user_idx, item_idx, feature columns) labelled by ``labels``
        (user_idx, item_idx[, split]: the validation pairs; any other split raises ValueError).

        ``feature_names`` default: every column of ``features`` but the keys. Users above
        ``max_training_users`` (with a positive and a negative candidate) are left out by a
        seeded sample, because training collects the rows to the driver. Raises ValueError when
        no user has both a positive and a negative candidate, or too few for the eval share.
        """
        _require_validation_only(labels)
        names = feature_names or [c for c in features.columns if c not in KEYS]
        missing = [c for c in KEYS + names if c not in features.columns]
        if missing:
            raise ValueError(f"features is missing column(s) {missing}")
        s = self.settings
        labelled = labelled_features(features.select(*KEYS, *names), labels)
        users = _training_users(labelled, s)
        rows = labelled.join(F.broadcast(users), "user_idx").toPandas()
        if rows.empty:
            raise ValueError("no user has both a positive and a negative candidate: nothing to learn from")
        is_eval = rows.pop("is_eval").to_numpy(bool)
        if is_eval.all() or not is_eval.any():
            raise ValueError(f"too few training users ({rows['user_idx'].nunique()}) to hold out an eval share")
        train_set = _dataset(rows[~is_eval], names)
        eval_set = _dataset(rows[is_eval], names, reference=train_set)
        evals: dict = {}
        booster = lgb.train(
            s.lightgbm_params(), train_set, num_boost_round=s.n_estimators, valid_sets=[eval_set],
            valid_names=["eval"],
            callbacks=[lgb.early_stopping(s.early_stopping_rounds, verbose=False), lgb.record_evaluation(evals)],
        )
        best = booster.best_iteration or booster.current_iteration()
        eval_ndcg = float(evals["eval"][f"ndcg@{s.eval_at}"][best - 1])
        log.info("ranker: %d training rows, %d users (%d eval), best iteration %d, eval ndcg@%d %.4f",
                 len(rows), rows["user_idx"].nunique(), int(rows.loc[is_eval, "user_idx"].nunique()), best,
                 s.eval_at, eval_ndcg)
        eval_users = sorted(int(u) for u in rows.loc[is_eval, "user_idx"].unique())
        return RankerModel(booster.model_to_string(num_iteration=best), best_iteration=best, eval_ndcg=eval_ndcg,
                           eval_users=eval_users)


_BOOSTERS: dict[int, lgb.Booster] = {}


def _worker_booster(model_string: str) -> lgb.Booster:
    """One Booster per model string per Python worker process."""
    key = hash(model_string)
    if key not in _BOOSTERS:
        _BOOSTERS.clear()
        _BOOSTERS[key] = lgb.Booster(model_str=model_string)
    return _BOOSTERS[key]


class RankerModel:
    """A trained lambdarank booster (LightGBM model string) and its feature names; after
    :meth:`LearnedRanker.fit`, ``eval_users`` are the users held out of training (early stopping
    only), the fair ground to compare the ranker with other lists on."""

    def __init__(self, model_string: str, best_iteration: int | None = None, eval_ndcg: float | None = None,
                 eval_users: list[int] | None = None):
        self.booster = lgb.Booster(model_str=model_string)
        self.model_string = model_string
        self.best_iteration = best_iteration
        self.eval_ndcg = eval_ndcg
        self.eval_users = eval_users or []

    @property
    def feature_names(self) -> list[str]:
        return list(self.booster.feature_name())

    def to_string(self) -> str:
        """The LightGBM model text (feature names included); :meth:`from_string` reads it back."""
        return self.model_string

    @classmethod
    def from_string(cls, model_string: str) -> RankerModel:
        return cls(model_string)

    def feature_importances(self, importance_type: str = "gain") -> dict[str, float]:
        """Feature name -> total ``gain`` (or ``split`` count) over the trees, largest first."""
        values = self.booster.feature_importance(importance_type=importance_type)
        pairs = sorted(zip(self.feature_names, map(float, values)), key=lambda kv: (-kv[1], kv[0]))
        return dict(pairs)

    def score(self, features: DataFrame) -> DataFrame:
        """(user_idx, item_idx, score double) for every row of ``features`` (which needs the
        model's feature columns), scored in Spark with the model string broadcast."""
        names = self.feature_names
        missing = [c for c in KEYS + names if c not in features.columns]
        if missing:
            raise ValueError(f"features is missing column(s) {missing} the model was trained on")
        broadcast = features.sparkSession.sparkContext.broadcast(self.model_string)

        def predict(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            booster = _worker_booster(broadcast.value)
            for frame in frames:
                scores = booster.predict(frame[names].to_numpy(np.float64), num_threads=1) if len(frame) else []
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
