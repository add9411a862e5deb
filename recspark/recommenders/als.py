"""Matrix factorisation with Spark MLlib ALS: explicit ratings or implicit confidence, a
seeded hyperparameter search on a validation split, and exact top-K from the factors.

:class:`ALSRecommender` (estimator) wraps ``pyspark.ml.recommendation.ALS``;
:class:`ALSRecommenderModel` exposes the factors as plain ``array<float>`` frames (the
``user_factors`` / ``item_factors`` tables), recommends with the blocked top-K of
:mod:`recspark.recommenders.topk` (seen items excluded, unlike ``recommendForAllUsers``) and
predicts ratings for (user, item) pairs. :func:`search_als` fits every point of a parameter
grid on a training frame and ranks them by a ranking metric on a validation frame; on training
pairs without any rating (weight-only implicit sources: play counts, seconds played) it skips
the explicit points and says so in one log line.

Implicit mode (Hu, Koren & Volinsky 2008) treats every observed pair as a positive with
confidence ``1 + alpha * r``; ``r`` is the ``implicit_rating_col`` (by default the
``confidence`` column of ``interactions_split``, already log-scaled). Explicit mode fits the
``rating_col`` and ignores pairs without a rating.

Warm start is not offered: MLlib's ALS has no parameter for initial factors (its
``ALS.train`` draws them from the seed), so yesterday's factors cannot seed today's fit without
patching Spark's Scala code.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.evaluation import ranking_metrics
from recspark.evaluation.ranking import RANKING_METRIC_KEYS
from recspark.progress import Progress
from recspark.recommenders.topk import top_k_by_dot_product

log = logging.getLogger(__name__)

SEARCHABLE_PARAMS = ("implicit_prefs", "rank", "reg_param", "alpha")


@dataclass
class AlsGrid:
    """Hyperparameter grid of the ALS search (Cartesian product; see :func:`expand_grid`)."""

    # Explicit-rating ALS is searchable ([True, False]) but not by default: it ranks unseen items
    # poorly (test NDCG@10 ~0.01 on MovieLens, 0.0001 on 20M synthetic plays) and its MLlib
    # trials were 530 s of the 20M night-1 search's 1,050 s.
    implicit_prefs: list[bool] = field(default_factory=lambda: [True])
    rank: list[int] = field(default_factory=lambda: [16])
    reg_param: list[float] = field(default_factory=lambda: [0.01, 0.1])
    alpha: list[float] = field(default_factory=lambda: [1.0, 5.0])  # implicit confidence scale

    def __post_init__(self) -> None:
        for name in SEARCHABLE_PARAMS:
            if not getattr(self, name):
                raise ValueError(f"{name}: the grid needs at least one value")
        if min(self.rank) < 1:
            raise ValueError(f"rank: values must be >= 1, got {self.rank}")
        for name in ("reg_param", "alpha"):
            if min(getattr(self, name)) < 0:
                raise ValueError(f"{name}: values must be >= 0, got {getattr(self, name)}")


@dataclass
class AlsSettings:
    """ALS training (the ``als`` config section): search on a validation split, refit, register."""

    grid: AlsGrid = field(default_factory=AlsGrid)
    selection_metric: str = "ndcg@k"  # a ranking_metrics key, at evaluation.k
    # Share of each user's train pairs held out for the search when the split has no validation
    # pairs (the default 75/25 protocol has none); the test split is never used for tuning.
    tuning_ratio: float = 0.1
    max_iter: int = 15
    seed: int = 42
    nonnegative: bool = False
    checkpoint_interval: int = 5
    num_blocks: int | None = None  # None: from the data size, see ALSRecommender
    checkpoint_dir: str | None = None  # default: <warehouse>/_checkpoints
    implicit_rating_col: str = "confidence"  # implicit ALS input r (confidence = 1 + alpha * r)
    factor_similarity_top_n: int = 50  # neighbours per item from the factors (0: skip)
    register_model: bool = True  # register in the MLflow model registry, alias on improvement
    model_name: str = "recspark-als"
    champion_alias: str = "champion"
    # Engine of the implicit fits (recspark.recommenders.als_engines): auto | mllib | implicit;
    # auto runs the implicit library on the driver when the pairs fit memory_budget_mb (MiB).
    engine: str = "auto"
    memory_budget_mb: float = 2048.0
    # Refit with the newest params of the weekly tune stage (tuned_params) instead of searching
    # als.grid every night; without tuned params train-als searches itself.
    use_tuned_params: bool = True
    # Nights between full refits: in between, users new or changed since the last full fit get
    # factors by fold-in against its item factors (recspark.recommenders.fold_in); 0 refits in
    # full every night.
    full_retrain_every_days: int = 7
    # Drift rule: a full refit is due as soon as more than this share of the users with factors
    # would be folded in since the last full fit.
    max_share_folded_in: float = 0.2

    def __post_init__(self) -> None:
        self.engine_settings()  # validates engine and memory_budget_mb
        known = sorted(RANKING_METRIC_KEYS.values())
        if self.selection_metric not in known:
            raise ValueError(f"selection_metric: unknown metric {self.selection_metric!r}; known: {known}")
        if not 0.0 < self.tuning_ratio < 1.0:
            raise ValueError(f"tuning_ratio: must be in (0, 1), got {self.tuning_ratio}")
        for name in ("max_iter", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"num_blocks: must be >= 1 or null, got {self.num_blocks}")
        if self.factor_similarity_top_n < 0:
            raise ValueError(f"factor_similarity_top_n: must be >= 0, got {self.factor_similarity_top_n}")
        if self.full_retrain_every_days < 0:
            raise ValueError(f"full_retrain_every_days: must be >= 0, got {self.full_retrain_every_days}")
        if not 0.0 <= self.max_share_folded_in <= 1.0:
            raise ValueError(f"max_share_folded_in: must be in [0, 1], got {self.max_share_folded_in}")

    def engine_settings(self):
        """The :class:`~recspark.recommenders.als_engines.AlsEngineSettings` of these settings."""
        from recspark.recommenders.als_engines import AlsEngineSettings  # it imports this module

        return AlsEngineSettings(engine=self.engine, memory_budget_mb=self.memory_budget_mb)


class ALSRecommender:
    """Estimator of :class:`ALSRecommenderModel` (pyspark.ml style: ``fit`` -> model).

    Params:
        rank: number of latent factors.
        reg_param: L2 regularisation (MLlib ``regParam``, scaled by the ratings of each
            user/item as in MLlib).
        alpha: implicit mode only, confidence = 1 + alpha * r.
        implicit_prefs: implicit (confidence) or explicit (rating) ALS.
        max_iter: alternating least-squares sweeps.
        seed: seed of the factor initialisation; the same seed and data give the same factors.
        nonnegative: non-negative least squares.
        checkpoint_interval: checkpoint the factor RDDs every this many iterations (needs
            ``SparkContext.setCheckpointDir``; without one MLlib skips checkpointing) so long
            lineages do not overflow the stack.
        num_blocks: user and item blocks of MLlib's solve (its default is 10). None: one block
            per ``PAIRS_PER_BLOCK`` input pairs, 1 to 10, so tiny and MovieLens-sized fits skip
            most of the shuffle overhead (MovieLens latest-small, 2 cores: 6.6 s with 2 blocks vs
            11.8 s with 10). Chosen from the data size only, never the cluster's parallelism, so
            a laptop and a cluster fit the same factors (MLlib seeds each block's start).
        user_col, item_col: integer id columns (``user_idx`` / ``item_idx``).
        rating_col: explicit rating column; rows where it is null are ignored in explicit mode.
        implicit_rating_col: the ``r`` of implicit mode, a positive number per pair.
    """

    def __init__(
        self,
        rank: int = 10,
        reg_param: float = 0.1,
        alpha: float = 1.0,
        implicit_prefs: bool = True,
        max_iter: int = 15,
        seed: int = 42,
        nonnegative: bool = False,
        checkpoint_interval: int = 5,
        num_blocks: int | None = None,
        user_col: str = "user_idx",
        item_col: str = "item_idx",
        rating_col: str = "rating",
        implicit_rating_col: str = "confidence",
    ) -> None:
        for name, value in (("rank", rank), ("max_iter", max_iter), ("checkpoint_interval", checkpoint_interval)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_blocks is not None and (isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1):
            raise ValueError(f"num_blocks must be a positive integer or None, got {num_blocks!r}")
        if reg_param < 0:
            raise ValueError(f"reg_param must be >= 0, got {reg_param!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        self.rank = rank
        self.reg_param = float(reg_param)
        self.alpha = float(alpha)
        self.implicit_prefs = bool(implicit_prefs)
        self.max_iter = max_iter
        self.seed = seed
        self.nonnegative = nonnegative
        self.checkpoint_interval = checkpoint_interval
        self.num_blocks = num_blocks
        self.user_col = user_col
        self.item_col = item_col
        self.rating_col = rating_col
        self.implicit_rating_col = implicit_rating_col

    def copy(self, **overrides: Any) -> ALSRecommender:
        """A new estimator with the same params except ``overrides``."""
        names = (
            "rank", "reg_param", "alpha", "implicit_prefs", "max_iter", "seed", "nonnegative",
            "checkpoint_interval", "num_blocks", "user_col", "item_col", "rating_col", "implicit_rating_col",
        )
        return ALSRecommender(**({name: getattr(self, name) for name in names} | overrides))

    def params(self) -> dict[str, Any]:
        """The searchable params and the fixed ones, for logging."""
        return {
            "rank": self.rank,
            "reg_param": self.reg_param,
            "alpha": self.alpha,
            "implicit_prefs": self.implicit_prefs,
            "max_iter": self.max_iter,
            "seed": self.seed,
            "nonnegative": self.nonnegative,
        }

    def fit(self, interactions: DataFrame) -> ALSRecommenderModel:
        """Fit on (user_col, item_col, rating or implicit rating column) rows, one per pair."""
        value_col = self.implicit_rating_col if self.implicit_prefs else self.rating_col
        missing = [c for c in (self.user_col, self.item_col, value_col) if c not in interactions.columns]
        if missing:
            raise ValueError(f"interactions lack column(s) {missing}; they have {interactions.columns}")
        if interactions.sparkSession.sparkContext.getCheckpointDir() is None and self.max_iter > self.checkpoint_interval:
            log.warning(
                "no Spark checkpoint directory is set: ALS cannot truncate its lineage, and %d "
                "iterations may overflow the JVM stack (SparkContext.setCheckpointDir)", self.max_iter
            )
        rows = interactions.where(F.col(value_col).isNotNull()).select(
            F.col(self.user_col).cast("int").alias(self.user_col),
            F.col(self.item_col).cast("int").alias(self.item_col),
            F.col(value_col).cast("float").alias("_r"),
        )
        n_pairs = rows.count()
        if not n_pairs:
            raise ValueError(
                f"{'implicit' if self.implicit_prefs else 'explicit'} ALS has nothing to fit: no row has a "
                f"non-null {value_col!r}"
            )
        als = ALS(
            rank=self.rank,
            regParam=self.reg_param,
            alpha=self.alpha,
            implicitPrefs=self.implicit_prefs,
            maxIter=self.max_iter,
            seed=self.seed,
            nonnegative=self.nonnegative,
            checkpointInterval=self.checkpoint_interval,
            numUserBlocks=self.num_blocks or blocks_for(n_pairs),
            numItemBlocks=self.num_blocks or blocks_for(n_pairs),
            userCol=self.user_col,
            itemCol=self.item_col,
            ratingCol="_r",
            coldStartStrategy="drop",
        )
        return ALSRecommenderModel(als.fit(rows), self.user_col, self.item_col, self.params())


def _factor_frame(factors: DataFrame, id_col: str) -> DataFrame:
    """MLlib's (id, features) factors as (``id_col``, features array<float>). MLlib's features
    are already array<float>: they are cast only when not, since a no-op cast that the optimizer
    removes makes Spark warn on every checkpoint of the frame (LogicalRDD output mismatch)."""
    features = F.col("features")
    if factors.schema["features"].dataType.elementType != T.FloatType():
        features = features.cast("array<float>")
    return factors.select(F.col("id").alias(id_col), features.alias("features"))


PAIRS_PER_BLOCK = 50_000
MAX_AUTO_BLOCKS = 10  # MLlib's default


def blocks_for(n_pairs: int) -> int:
    """ALS blocks for ``n_pairs`` input pairs: ceil(n_pairs / PAIRS_PER_BLOCK) in 1..10."""
    return max(1, min(MAX_AUTO_BLOCKS, -(-n_pairs // PAIRS_PER_BLOCK)))


class ALSRecommenderModel:
    """A fitted ALS model.

    Attributes:
        als_model: the MLlib ``ALSModel`` (for ``mlflow.spark`` and ``transform``).
        user_factors: (user_col int, ``features`` array<float>), one row per training user.
        item_factors: (item_col int, ``features`` array<float>), one row per training item.
        params: the estimator params it was fitted with.
    """

    def __init__(self, als_model: ALSModel, user_col: str, item_col: str, params: dict[str, Any]):
        self.als_model = als_model
        self.user_col = user_col
        self.item_col = item_col
        self.params = params
        self.user_factors = _factor_frame(als_model.userFactors, user_col)
        self.item_factors = _factor_frame(als_model.itemFactors, item_col)

    def recommend(
        self, k: int, seen: DataFrame | None = None, users: DataFrame | None = None
    ) -> DataFrame:
        """Top ``k`` items per user by predicted score: (user_col, item_col, ``score`` float,
        ``rank`` int 1..k). ``seen`` (user_col, item_col) pairs are excluded; ``users``
        (user_col) restricts the users scored (default: every user with factors)."""
        user_factors = self.user_factors
        if users is not None:
            user_factors = user_factors.join(users.select(self.user_col).distinct(), self.user_col)
        return top_k_by_dot_product(
            user_factors, self.item_factors, k, seen=seen, user_col=self.user_col, item_col=self.item_col
        )

    def predict(self, pairs: DataFrame) -> DataFrame:
        """``pairs`` with a ``prediction`` column (float, the factor dot product); pairs whose
        user or item has no factors are dropped (cold start is handled by other sources)."""
        return self.als_model.transform(pairs)


@dataclass
class SearchTrial:
    """One grid point: its params, validation metrics (``ndcg@k`` ... keys) and fit time."""

    params: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float


@dataclass
class SearchResult:
    """Trials in grid order and the index of the best one by ``metric``."""

    metric: str
    trials: list[SearchTrial] = field(default_factory=list)
    best_index: int = -1

    @property
    def best(self) -> SearchTrial:
        return self.trials[self.best_index]


def expand_grid(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Cartesian product of ``grid`` (keys among :data:`SEARCHABLE_PARAMS`), in key order.

    ``alpha`` only matters for implicit ALS, so explicit points that differ only in alpha are
    kept once (with the first alpha).
    """
    unknown = set(grid) - set(SEARCHABLE_PARAMS)
    if unknown:
        raise ValueError(f"unknown ALS grid key(s) {sorted(unknown)}; known: {list(SEARCHABLE_PARAMS)}")
    empty = [key for key, values in grid.items() if not values]
    if empty:
        raise ValueError(f"ALS grid key(s) {empty} have no values")
    keys = list(grid)
    points, seen = [], set()
    for values in itertools.product(*(grid[key] for key in keys)):
        point = dict(zip(keys, values))
        identity = tuple(
            (key, None if key == "alpha" and point.get("implicit_prefs", True) is False else value)
            for key, value in point.items()
        )
        if identity not in seen:
            seen.add(identity)
            points.append(point)
    return points


def search_als(
    train: DataFrame,
    validation: DataFrame,
    grid: dict[str, list],
    base: ALSRecommender,
    k: int = 10,
    metric: str = "ndcg@k",
    fit: Callable[[ALSRecommender, DataFrame], ALSRecommenderModel] | None = None,
) -> SearchResult:
    """Fit ``base`` with every point of ``grid`` on ``train``, recommend ``k`` unseen items to
    every validation user (seen = ``train`` pairs) and score the lists against ``validation``
    (every validation pair relevant). Best = highest ``metric`` (a key of
    :func:`recspark.evaluation.ranking_metrics`); ties keep the earlier grid point. ``fit``
    fits one point (default ``estimator.fit``; e.g. an engine of
    :mod:`recspark.recommenders.als_engines`).
    """
    result = SearchResult(metric=metric)
    seen = train.select(base.user_col, base.item_col)
    users = validation.select(base.user_col).distinct()
    points = expand_grid(grid)
    explicit = [point for point in points if point.get("implicit_prefs", base.implicit_prefs) is False]
    if explicit and not has_ratings(train, base.rating_col):
        points = [point for point in points if point not in explicit]
        if not points:
            raise ValueError(
                f"als.grid: every point is explicit (implicit_prefs false) but no training pair has a "
                f"{base.rating_col!r}; add implicit_prefs: true for a source without ratings"
            )
        log.info("ALS search: no training pair has a %r, skipping %d explicit grid point(s)",
                 base.rating_col, len(explicit))
    progress = Progress("ALS search", total=len(points), unit="trials", interval_s=60.0, terminal=False)
    for point in points:
        estimator = base.copy(**point)
        started = time.perf_counter()
        model = fit(estimator, train) if fit else estimator.fit(train)
        recommendations = model.recommend(k, seen=seen, users=users)
        scores = ranking_metrics(recommendations, validation, k, base.user_col, base.item_col)
        trial = SearchTrial(estimator.params(), scores, time.perf_counter() - started)
        if metric not in scores:
            raise ValueError(f"unknown selection metric {metric!r}; known: {sorted(scores)}")
        result.trials.append(trial)
        best = result.best.metrics[metric] if result.best_index >= 0 else float("-inf")
        if scores[metric] > best:
            result.best_index = len(result.trials) - 1
        log.info("ALS trial %s: %s=%.4f (%.1fs)", point, metric, scores[metric], trial.fit_seconds)
        progress.advance()
    return result


def has_ratings(interactions: DataFrame, rating_col: str = "rating") -> bool:
    """Whether any row of ``interactions`` has a non-null ``rating_col`` (false when the column
    is absent): explicit ALS needs at least one."""
    if rating_col not in interactions.columns:
        return False
    return bool(interactions.where(F.col(rating_col).isNotNull()).limit(1).take(1))


def _parse_bool(value: str) -> bool:
    return value == "True"


# The searched and fixed params of a refit, as written to (and parsed back from) the factor
# tables' commit metadata under ``als.<name>``.
_PARAM_PARSERS = {
    "rank": int, "reg_param": float, "alpha": float, "implicit_prefs": _parse_bool,
    "max_iter": int, "seed": int, "nonnegative": _parse_bool,
}


def als_params_metadata(params: dict[str, Any]) -> dict[str, str]:
    """``{"als.<param>": str(value)}`` of a fitted model's params, for Delta commit metadata."""
    return {f"als.{name}": str(params[name]) for name in _PARAM_PARSERS if name in params}


def als_params_from_metadata(metadata: dict[str, str], prefix: str = "recspark.") -> dict[str, Any]:
    """The ALS params (rank, reg_param, alpha, implicit_prefs, max_iter, seed, nonnegative) of
    commit ``metadata`` written from :func:`als_params_metadata`; ValueError naming the missing
    keys."""
    missing = [name for name in _PARAM_PARSERS if f"{prefix}als.{name}" not in metadata]
    if missing:
        raise ValueError(f"the factors' commit metadata lacks the ALS param(s) {missing}; re-run the train-als stage")
    return {name: parse(metadata[f"{prefix}als.{name}"]) for name, parse in _PARAM_PARSERS.items()}


def als_estimator(settings) -> ALSRecommender:
    """The ALS estimator of the ``als`` settings before the searched params (rank, reg_param,
    alpha, implicit_prefs) are set; copy it with :func:`als_params_from_metadata` to refit the
    published factors' model."""
    return ALSRecommender(
        max_iter=settings.max_iter, seed=settings.seed, nonnegative=settings.nonnegative,
        checkpoint_interval=settings.checkpoint_interval, num_blocks=settings.num_blocks,
        implicit_rating_col=settings.implicit_rating_col,
    )
