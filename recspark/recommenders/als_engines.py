"""ALS engines: Spark MLlib on the cluster, or the ``implicit`` library on the driver.

``engine: mllib`` fits :class:`~recspark.recommenders.als.ALSRecommender` as is. ``engine:
implicit`` gathers the interactions to the driver through Arrow, builds a scipy CSR matrix,
fits ``implicit``'s ALS (its GPU build when ``implicit.gpu.HAS_CUDA``, else CPU) and wraps the
factors in a real MLlib ``ALSModel`` (built through the JVM constructor), so the result is the
same :class:`~recspark.recommenders.als.ALSRecommenderModel`: the same ``user_factors`` /
``item_factors`` frames (user_idx / item_idx int, features array<float>), ``recommend``,
``predict`` and MLflow flavour. ``engine: auto`` picks ``implicit`` when its estimated driver
memory (:func:`implicit_footprint_mb`) fits ``memory_budget_mb`` and ``mllib`` otherwise, and
logs which and why. Implicit mode only: explicit-rating ALS always runs on MLlib.

Objective mapping (so the same params mean the same model):

* Confidence. MLlib: ``c = 1 + alpha * r``, preference 1 for ``r > 0``. ``implicit``
  reads the matrix entry as ``alpha_implicit * value`` and uses it as the confidence itself
  (``A += (c - 1) y y^T``, ``b += c y``). The engine therefore stores ``1 + alpha * r`` in the
  matrix and fits with ``implicit``'s ``alpha = 1``: identical confidences.
* Regularisation. MLlib scales ``reg_param`` by the number of ratings of each user (and item)
  in its solve (ALS-WR): ``lambda_u = reg_param * n_u``. ``implicit`` adds one constant
  ``lambda`` to every user and item. No constant equals the per-row one; the engine uses
  ``lambda = reg_param * nnz / sqrt(n_users * n_items)`` (``reg_mapping: geometric_mean``, the
  geometric mean of the mean ratings per user and per item), so the typical row is as strongly
  regularised as under MLlib; ``reg_mapping: none`` passes ``reg_param`` through unchanged.
  bench/bench_als_engines.py measures the NDCG@10 of both engines on the same split.
* Initialisation and solver differ (``implicit``: conjugate gradient, uniform [0, 0.01)
  start), so factors are not identical; quality is.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, IntegerType, StructField, StructType

from recspark.io.session import frame_from_rows
from recspark.recommenders.als import ALSRecommender, ALSRecommenderModel

log = logging.getLogger(__name__)

ENGINES = ("auto", "mllib", "implicit")
REG_MAPPINGS = ("geometric_mean", "none")
# Bytes the driver holds per interaction on the implicit path: the Arrow/pandas columns
# (int32 user, int32 item, float32 value: 12), the COO build (~16), the CSR matrix and its
# transpose (float32 value + int32 index, twice: 16) and slack for scipy's temporaries (20).
BYTES_PER_PAIR = 64


@dataclass
class AlsEngineSettings:
    """Which engine fits ALS and how.

    engine: auto | mllib | implicit.
    memory_budget_mb: driver memory (MiB) the implicit path may use; auto picks implicit when
        implicit_footprint_mb fits it.
    reg_mapping: how reg_param maps to implicit's constant regularisation (module docstring).
    use_gpu: implicit's GPU build when True, CPU when False, the GPU when available when None.
    num_threads: implicit CPU threads (0 = all cores).
    """

    engine: str = "auto"
    memory_budget_mb: float = 2048.0
    reg_mapping: str = "geometric_mean"
    use_gpu: bool | None = None
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"als.engine must be one of {list(ENGINES)}, got {self.engine!r}")
        if not self.memory_budget_mb > 0:
            raise ValueError(f"als.memory_budget_mb must be > 0, got {self.memory_budget_mb!r}")
        if self.reg_mapping not in REG_MAPPINGS:
            raise ValueError(f"als.reg_mapping must be one of {list(REG_MAPPINGS)}, got {self.reg_mapping!r}")
        if self.num_threads < 0:
            raise ValueError(f"als.num_threads must be >= 0, got {self.num_threads!r}")


@dataclass
class InteractionShape:
    """Size of an interaction frame: pairs (non-null values), and the id ranges (max id + 1)."""

    n_pairs: int
    n_user_ids: int
    n_item_ids: int

    @staticmethod
    def of(interactions: DataFrame, user_col: str, item_col: str, value_col: str) -> InteractionShape:
        row = (
            interactions.where(F.col(value_col).isNotNull())
            .agg(F.count(F.lit(1)), F.max(user_col), F.max(item_col))
            .first()
        )
        return InteractionShape(int(row[0]), int(row[1] or -1) + 1, int(row[2] or -1) + 1)


def implicit_footprint_mb(shape: InteractionShape, rank: int) -> float:
    """Estimated peak driver memory (MiB) of the implicit path: BYTES_PER_PAIR per pair plus the
    float32 factors (users and items, with implicit's copies: x3) and the CSR row pointers."""
    factors = 3 * 4 * rank * (shape.n_user_ids + shape.n_item_ids)
    pointers = 2 * 8 * (shape.n_user_ids + shape.n_item_ids + 2)
    return (BYTES_PER_PAIR * shape.n_pairs + factors + pointers) / 2**20


def choose_engine(settings: AlsEngineSettings, shape: InteractionShape | None, rank: int) -> tuple[str, str]:
    """(engine, reason): settings.engine unless it is auto; auto picks implicit when the
    library imports and implicit_footprint_mb(shape, rank) <= memory_budget_mb."""
    if settings.engine != "auto":
        return settings.engine, f"als.engine is {settings.engine}"
    if shape is None:
        raise ValueError("engine auto needs the interaction shape")
    if not implicit_available():
        return "mllib", "the implicit library is not installed"
    need = implicit_footprint_mb(shape, rank)
    pairs = f"{shape.n_pairs:,} pairs, {shape.n_user_ids:,} x {shape.n_item_ids:,} ids, rank {rank}"
    if need <= settings.memory_budget_mb:
        return "implicit", f"{pairs} need ~{need:,.0f} MiB <= budget {settings.memory_budget_mb:,.0f} MiB"
    return "mllib", f"{pairs} need ~{need:,.0f} MiB > budget {settings.memory_budget_mb:,.0f} MiB"


def implicit_available() -> bool:
    try:
        import implicit  # noqa: F401
    except ImportError:
        return False
    return True


def implicit_regularization(reg_param: float, shape: InteractionShape, mapping: str) -> float:
    """implicit's constant lambda for MLlib's reg_param (see the module docstring)."""
    if mapping == "none" or shape.n_pairs == 0:
        return reg_param
    return reg_param * shape.n_pairs / math.sqrt(shape.n_user_ids * shape.n_item_ids)


def pick_engine(
    estimator: ALSRecommender, interactions: DataFrame, settings: AlsEngineSettings
) -> tuple[str, str]:
    """(engine, reason) ``fit_als`` uses for ``estimator`` on ``interactions``: mllib for
    explicit ratings, else :func:`choose_engine` (auto measures the frame's shape, one Spark job)."""
    if not estimator.implicit_prefs:
        return "mllib", "explicit ratings run on MLlib only"
    shape = None
    if settings.engine == "auto":
        shape = InteractionShape.of(interactions, estimator.user_col, estimator.item_col, estimator.implicit_rating_col)
    return choose_engine(settings, shape, estimator.rank)


def fit_als(
    estimator: ALSRecommender, interactions: DataFrame, settings: AlsEngineSettings
) -> ALSRecommenderModel:
    """Fit ``estimator``'s params with the engine :func:`pick_engine` picks (logged); explicit-rating
    estimators always use MLlib. Input and output as ``ALSRecommender.fit``."""
    engine, reason = pick_engine(estimator, interactions, settings)
    log.info("ALS engine: %s (%s)", engine, reason)
    if engine == "mllib":
        return estimator.fit(interactions)
    return fit_implicit(estimator, interactions, settings)


def engine_fit(
    engine: str, settings: AlsEngineSettings
) -> Callable[[ALSRecommender, DataFrame], ALSRecommenderModel]:
    """fit(estimator, interactions) -> model on an engine already picked (``mllib`` or
    ``implicit``, e.g. by :func:`pick_engine` once for a whole search); explicit estimators
    always fit on MLlib."""
    if engine not in ("mllib", "implicit"):
        raise ValueError(f"engine_fit needs mllib or implicit, got {engine!r}")

    def fit(estimator: ALSRecommender, interactions: DataFrame) -> ALSRecommenderModel:
        if engine == "implicit" and estimator.implicit_prefs:
            return fit_implicit(estimator, interactions, settings)
        return estimator.fit(interactions)

    return fit


def interactions_csr(
    interactions: DataFrame, user_col: str, item_col: str, value_col: str, alpha: float
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """(user x item CSR of ``1 + alpha * r`` float32, user ids present, item ids present).

    Collected through Arrow (``toPandas``); rows with a null value are dropped; shape is
    (max user id + 1, max item id + 1). Duplicate (user, item) rows are summed.
    """
    rows = interactions.where(F.col(value_col).isNotNull()).select(
        F.col(user_col).cast("int").alias("u"),
        F.col(item_col).cast("int").alias("i"),
        (1.0 + alpha * F.col(value_col).cast("double")).cast("float").alias("c"),
    )
    frame = rows.toPandas()
    users = frame["u"].to_numpy(np.int32)
    items = frame["i"].to_numpy(np.int32)
    shape = (int(users.max()) + 1 if len(users) else 0, int(items.max()) + 1 if len(items) else 0)
    matrix = sp.csr_matrix((frame["c"].to_numpy(np.float32), (users, items)), shape=shape)
    return matrix, np.unique(users), np.unique(items)


def fit_implicit(
    estimator: ALSRecommender, interactions: DataFrame, settings: AlsEngineSettings
) -> ALSRecommenderModel:
    """Fit ``estimator``'s implicit-ALS params with the implicit library on the driver."""
    from threadpoolctl import threadpool_limits

    from implicit.als import AlternatingLeastSquares
    import implicit.gpu

    if estimator.nonnegative:
        raise ValueError("the implicit engine has no non-negative solver; use engine mllib")
    began = time.perf_counter()
    matrix, user_ids, item_ids = interactions_csr(
        interactions, estimator.user_col, estimator.item_col, estimator.implicit_rating_col, estimator.alpha
    )
    if matrix.nnz == 0:
        raise ValueError("no interactions to fit")
    shape = InteractionShape(matrix.nnz, len(user_ids), len(item_ids))
    use_gpu = implicit.gpu.HAS_CUDA if settings.use_gpu is None else settings.use_gpu
    regularization = implicit_regularization(estimator.reg_param, shape, settings.reg_mapping)
    collected = time.perf_counter()
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads only contend
        model = AlternatingLeastSquares(
            factors=estimator.rank,
            regularization=regularization,
            alpha=1.0,
            iterations=estimator.max_iter,
            random_state=estimator.seed,
            use_gpu=use_gpu,
            num_threads=settings.num_threads,
        )
        model.fit(matrix, show_progress=False)
    if use_gpu:
        model = model.to_cpu()
    log.info(
        "implicit ALS (%s): %d pairs collected in %.1fs, fitted in %.1fs",
        "gpu" if use_gpu else "cpu", matrix.nnz, collected - began, time.perf_counter() - collected,
    )
    spark = interactions.sparkSession
    user_factors = _factor_frame(spark, user_ids, np.asarray(model.user_factors)[user_ids])
    item_factors = _factor_frame(spark, item_ids, np.asarray(model.item_factors)[item_ids])
    return ALSRecommenderModel(
        _mllib_model(spark, estimator, user_factors, item_factors),
        estimator.user_col,
        estimator.item_col,
        estimator.params() | {"engine": "implicit", "implicit_regularization": regularization},
    )


def _factor_frame(spark: SparkSession, ids: np.ndarray, factors: np.ndarray) -> DataFrame:
    """(id int, features array<float>), MLlib's factor table layout."""
    schema = StructType(
        [StructField("id", IntegerType(), nullable=False), StructField("features", ArrayType(FloatType(), containsNull=False))]
    )
    rows = list(zip(ids.astype(np.int32).tolist(), factors.astype(np.float32).tolist()))
    return frame_from_rows(spark, rows, schema, 1 + factors.shape[1])


def _mllib_model(
    spark: SparkSession, estimator: ALSRecommender, user_factors: DataFrame, item_factors: DataFrame
) -> ALSModel:
    """A Spark ``ALSModel`` holding the given factors (its package-private constructor, public
    in bytecode), with the column params ALSRecommender's fit sets."""
    java_model = spark._jvm.org.apache.spark.ml.recommendation.ALSModel(
        f"ALSModel_implicit_{estimator.seed}", estimator.rank, user_factors._jdf, item_factors._jdf
    )
    model = ALSModel._from_java(java_model)
    return (
        model.setUserCol(estimator.user_col)
        .setItemCol(estimator.item_col)
        .setColdStartStrategy("drop")
    )
