"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form
item-item model, fitted from a Gram matrix that Spark aggregates and solved on the driver.

With ``X`` the binary users x items interaction matrix, ``G = X^T X`` (``G_ij`` = users with
both items, ``G_ii`` = users with item i) and ``lambda > 0``::

    P = (G + lambda I)^-1,   B_ij = -P_ij / P_jj (i != j),   B_ii = 0,   score(u, j) = x_u . B[:, j]

Fit:

1. Spark builds ``G`` one row per item, never a row per interaction or per item pair: each
   user's item array is shipped to every item bucket (``pmod(hash(item), n_buckets)``, with
   ``spark.sql.shuffle.partitions`` buckets, one task each) holding one of its items; the task
   counts, for its anchor items, the co-occurrences with every item (``np.bincount`` on a dense
   anchors x items grid, at most :data:`MAX_GRAM_GRID` cells at a time) and emits each anchor's
   dense row of ``G``. The work is ``sum over users of n_u^2`` pair entries.
2. The driver streams those rows in (``toLocalIterator``: one partition at a time) into a dense
   float32 ``G`` and solves with a Cholesky factorisation in torch, on CUDA when a GPU is
   present (``EaseSettings.device``), else on the CPU.

Driver memory: ``n_items^2 x 4 bytes x ~3`` (``G``, its Cholesky factor and ``P``, float32;
``B`` overwrites ``P``): 10k items need about 1.2 GB, 30k items about 10.8 GB. Catalogues above
``EaseSettings.max_items`` raise :class:`CatalogueTooLarge` (a ValueError) before any of it is
allocated, so a pipeline can catch it and skip the source. Spark's result limit
``spark.driver.maxResultSize`` must exceed one partition's rows: ``n_items^2 x 4 / n_buckets``.

Recommend: up to ``dense_max_items`` items (12,000) ``B`` is broadcast once and every task
scores blocks of users with one dense float32 matrix product ``X_block @ B``, exact; the
broadcast costs ``n_items^2 x 4`` bytes in the driver JVM (twice, while it is cut into blocks)
and in every executor Python worker: 576 MB at 12k items, 2.5 GB at 25k, which ran the default
4 GB driver heap out of memory at 5M synthetic interactions (25k items). Above it each row
``B[i, :]`` keeps its ``top_n_neighbours`` (500) largest weights and recommendations are the
sparse top-N of :mod:`recspark.recommenders.sparse_topk` (item-item's scoring: a broadcast CSR
of ``n_items x M`` entries, 12 bytes each), an approximation that drops the small and
negative weights; ``B``'s rows are pruned in blocks, so the driver never holds a second dense
copy. The accuracy cost of pruning is measured by ``bench/bench_ease_user_knn.py`` (BENCHMARKS.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.evaluation.sampling import require_user_cap
from recspark.recommenders.sparse_topk import (
    EXCLUDE_COL,
    KEYS_COL,
    QUERY_COL,
    SparseRows,
    known_positions,
    list_elements,
    top_n_weighted_sums,
    weighted_queries,
)
from recspark.recommenders.topk import top_k_of_score_block

USER_COL, ITEM_COL = "user_idx", "item_idx"
BECAUSE_COL = "because_item_idx"
DEVICES = ("auto", "cpu", "cuda")
MAX_GRAM_GRID = 1 << 24  # anchors x items cells one bincount pass holds (8 bytes each)
SCORE_BLOCK_USERS = 128  # users per dense score block (block x n_items float32)
RECOMMENDATION_SCHEMA = T.StructType(
    [
        T.StructField(USER_COL, T.IntegerType()),
        T.StructField(ITEM_COL, T.IntegerType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField(BECAUSE_COL, T.IntegerType()),
    ]
)

_ITEMS, _ANCHORS, _KEY, _SEEN = "_items", "_anchors", "_bucket_key", "_seen"


if TYPE_CHECKING:
    import torch

class CatalogueTooLarge(ValueError):
    """The catalogue exceeds ``EaseSettings.max_items``: skip EASE (or raise the limit)."""


@dataclass
class EaseSettings:
    """EASE hyper-parameters and limits.

    reg_lambda: L2 weight ``lambda`` added to the diagonal of the Gram matrix (> 0); Steck's
        MovieLens/Netflix optima lie between 200 and 1000 for binary data.
    max_items: largest catalogue to fit; driver memory is ``max_items^2 x 4 bytes x ~3``.
    dense_max_items: largest catalogue scored with the dense ``B`` (exact, broadcast; 0: never).
    top_n_neighbours: above ``dense_max_items``, the weights kept per item for sparse scoring.
    device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu`` or ``cuda`` for the solve.
    popularity_exponent: ``beta >= 0``; column j of ``B`` is multiplied by ``pop_j^-beta``
        (``pop_j = G_jj``, the item's users in the history), i.e. every score of item j is
        divided by ``pop_j^beta``: 0 is plain EASE, larger values push the lists away from the
        most popular items. The ``because`` item is unchanged (a positive column scale).
    grid: the weekly tune's search (:func:`search_ease`, Cartesian product of ``reg_lambda`` x
        ``popularity_exponent``) on a ``tuning_ratio`` carve of train (stratified like the test split); the nights then
        fit with the recorded point when ``use_tuned_params`` (else with the two values above).
    tuning_max_users: the search scores a seeded sample of at most this many validation users
        (None: all); each grid point's lists cost ``users x n_items`` scores, so at 25k items and
        38k validation users the lists, not the solve, were most of the search.
    """

    reg_lambda: float = 500.0
    popularity_exponent: float = 0.0
    max_items: int = 30_000
    dense_max_items: int = 12_000
    top_n_neighbours: int = 500
    device: str = "auto"
    grid: EaseGrid = field(default_factory=lambda: EaseGrid())
    tuning_ratio: float = 0.1
    tuning_max_users: int | None = 10_000
    use_tuned_params: bool = True

    def __post_init__(self) -> None:
        _require_reg_lambda(self.reg_lambda)
        _require_exponent(self.popularity_exponent)
        if not 0 < self.tuning_ratio < 1:
            raise ValueError(f"tuning_ratio must be in (0, 1), got {self.tuning_ratio!r}")
        _require_positive_int(self.max_items, "max_items")
        _require_positive_int(self.top_n_neighbours, "top_n_neighbours")
        _require_positive_int(self.dense_max_items, "dense_max_items", minimum=0)
        require_user_cap(self.tuning_max_users, "tuning_max_users")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")


@dataclass
class EaseGrid:
    """The values :func:`search_ease` tries (every combination)."""

    reg_lambda: list[float] = field(default_factory=lambda: [100.0, 200.0, 500.0, 1000.0])
    popularity_exponent: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.25])

    def __post_init__(self) -> None:
        if not self.reg_lambda or not self.popularity_exponent:
            raise ValueError("the EASE grid needs at least one reg_lambda and one popularity_exponent")
        for value in self.reg_lambda:
            _require_reg_lambda(value)
        for value in self.popularity_exponent:
            _require_exponent(value)

    def points(self) -> list[dict[str, float]]:
        return [{"reg_lambda": float(lam), "popularity_exponent": float(beta)}
                for lam in self.reg_lambda for beta in self.popularity_exponent]


def _require_reg_lambda(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"reg_lambda must be a number, got {value!r}")
    if not value > 0:
        raise ValueError(f"reg_lambda must be > 0, got {value!r}")


def _require_exponent(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"popularity_exponent must be a number >= 0, got {value!r}")


def _require_positive_int(value: object, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _require_columns(frame: DataFrame, columns: list[str], frame_name: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{frame_name} lacks column(s) {missing}; it has {frame.columns}")


class Ease:
    """Estimator (pyspark.ml style) of :class:`EaseModel`; see the module docstring."""

    def __init__(self, settings: EaseSettings | None = None) -> None:
        self.settings = settings or EaseSettings()

    def fit(self, interactions: DataFrame) -> EaseModel:
        """Fit on ``interactions`` (``user_idx``, ``item_idx`` integer ids; other columns are
        ignored, repeated pairs count once, rows with a null id are dropped).

        Raises :class:`CatalogueTooLarge` (a ValueError) when the distinct items exceed
        ``max_items``, ValueError when there are none.
        """
        item_ids, gram = gram_matrix(interactions, self.settings.max_items)
        weights = ease_weights(gram, self.settings.reg_lambda, torch_device(self.settings.device),
                               self.settings.popularity_exponent)
        return EaseModel(item_ids, weights, self.settings)


def gram_matrix(interactions: DataFrame, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(item ids ascending, dense float32 ``G = X^T X`` in that order) of ``interactions``
    (``user_idx``, ``item_idx`` integer ids; repeated pairs count once, null ids dropped).

    ``G`` does not depend on ``lambda``: tune it with one ``gram_matrix`` and several
    :func:`ease_weights` calls (on copies, as the solve overwrites its input). Raises
    :class:`CatalogueTooLarge` above ``max_items`` distinct items (before building ``G``) and
    ValueError when there are none.
    """
    _require_columns(interactions, [USER_COL, ITEM_COL], "interactions")
    for name in (USER_COL, ITEM_COL):
        data_type = interactions.schema[name].dataType
        if not isinstance(data_type, T.IntegralType):
            raise ValueError(f"{name} must hold integer ids, got {data_type.simpleString()}")
    user_items = (
        interactions.where(F.col(USER_COL).isNotNull() & F.col(ITEM_COL).isNotNull())
        .groupBy(USER_COL)
        .agg(F.collect_set(F.col(ITEM_COL).cast("long")).alias(_ITEMS))
        .cache()
    )
    try:
        item_ids = np.array(
            sorted(r[0] for r in user_items.select(F.explode(_ITEMS)).distinct().collect()),
            dtype=np.int64,
        )
        _check_catalogue(item_ids.size, max_items)
        return item_ids, _gram_matrix(user_items, item_ids)
    finally:
        user_items.unpersist()


def _check_catalogue(n_items: int, max_items: int) -> None:
    if n_items == 0:
        raise ValueError("interactions hold no (user_idx, item_idx) pair")
    if n_items > max_items:
        gib = 3 * 4 * n_items**2 / 2**30
        raise CatalogueTooLarge(
            f"EASE needs a dense {n_items} x {n_items} solve (about {gib:.1f} GiB on the "
            f"driver) and max_items is {max_items}: skipping"
        )


def torch_device(device: str) -> "torch.device":
    """The torch device of an :class:`EaseSettings` ``device`` value (torch is imported here, not
    at module import, so the settings load without it)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def ease_weights(gram: np.ndarray, reg_lambda: float, device: "torch.device",
                 popularity_exponent: float = 0.0) -> np.ndarray:
    """EASE's ``B`` (float32 numpy, zero diagonal) from a dense Gram matrix, its column j scaled
    by ``G_jj^-popularity_exponent`` (``G_jj`` at least 1).

    ``gram`` (n x n float32, symmetric) is overwritten on the CPU (its diagonal gets
    ``reg_lambda``). ``P`` comes from a Cholesky factorisation and ``cholesky_inverse``.
    """
    import torch

    column_scale = None
    if popularity_exponent:
        column_scale = torch.from_numpy(np.maximum(np.diagonal(gram), 1.0) ** -popularity_exponent).to(device)
    matrix = torch.from_numpy(gram).to(device)
    matrix.diagonal().add_(reg_lambda)
    factor = torch.linalg.cholesky(matrix)
    del matrix
    weights = torch.cholesky_inverse(factor)
    del factor
    weights.div_(-weights.diagonal().clone().unsqueeze(0))  # column j divided by -P_jj
    weights.diagonal().zero_()
    if column_scale is not None:
        weights.mul_(column_scale.to(weights.dtype).unsqueeze(0))
    return weights.cpu().numpy()


def _gram_matrix(user_items: DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """Dense float32 ``G = X^T X`` of the users' item arrays (``_items``), rows and columns in
    the order of ``item_ids`` (ascending)."""
    spark = user_items.sparkSession
    n_buckets = int(spark.conf.get("spark.sql.shuffle.partitions"))
    ids = spark.sparkContext.broadcast(item_ids)

    def bucket(item):
        return F.pmod(F.hash(item), F.lit(n_buckets))

    # One row per (user, bucket among the user's items): the bucket's anchors, all the items,
    # and a key item of the bucket, so that hash partitioning on the key sends bucket b to task b.
    per_bucket = user_items.select(
        _ITEMS, F.explode(F.array_distinct(F.transform(_ITEMS, bucket))).alias("_b")
    ).select(_ITEMS, F.filter(_ITEMS, lambda item: bucket(item) == F.col("_b")).alias(_ANCHORS))
    rows = per_bucket.select(F.array_min(_ANCHORS).alias(_KEY), _ANCHORS, _ITEMS)

    def gram_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _gram_rows(batches, ids.value, MAX_GRAM_GRID)

    gram_frame = rows.repartition(n_buckets, _KEY).mapInArrow(
        gram_rows, "item long, counts binary"
    )
    gram = np.zeros((item_ids.size, item_ids.size), dtype=np.float32)
    for row in gram_frame.toLocalIterator():
        gram[np.searchsorted(item_ids, row["item"])] = np.frombuffer(row["counts"], np.float32)
    ids.unpersist()
    return gram


def _flat_positions(lists: pa.ListArray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``item_ids`` of every list element, index of its list)."""
    parents, values = list_elements(lists)
    return np.searchsorted(item_ids, values.to_numpy(zero_copy_only=False).astype(np.int64)), parents


def _gram_rows(
    batches: Iterator[pa.RecordBatch], item_ids: np.ndarray, max_grid: int
) -> Iterator[pa.RecordBatch]:
    """The Gram rows of a task's anchor items: ``G[a, j]`` = rows holding both a and j."""
    batches = [batch for batch in batches if batch.num_rows]
    if not batches:
        return
    table = pa.Table.from_batches(batches).combine_chunks()
    anchors, anchor_rows = _flat_positions(table.column(_ANCHORS).chunk(0), item_ids)
    items, item_rows = _flat_positions(table.column(_ITEMS).chunk(0), item_ids)
    n_items = item_ids.size
    row_lengths = np.bincount(item_rows, minlength=table.num_rows)
    row_starts = np.cumsum(row_lengths) - row_lengths  # items come grouped by row, in order
    distinct_anchors = np.unique(anchors)
    per_chunk = max(1, max_grid // n_items)
    for start in range(0, distinct_anchors.size, per_chunk):
        chunk = distinct_anchors[start : start + per_chunk]
        entries = np.flatnonzero(np.isin(anchors, chunk))
        local = np.searchsorted(chunk, anchors[entries])
        counts = row_lengths[anchor_rows[entries]]
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        partners = items[np.repeat(row_starts[anchor_rows[entries]], counts) + offsets]
        keys = np.repeat(local, counts) * n_items + partners
        grid = np.bincount(keys, minlength=chunk.size * n_items).astype(np.float32)
        grid = grid.reshape(chunk.size, n_items)
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(item_ids[chunk], type=pa.int64()),
                pa.array([row.tobytes() for row in grid], type=pa.binary()),
            ],
            names=["item", "counts"],
        )


class EaseModel:
    """Fitted EASE: ``item_ids`` (int64, ascending) and ``weights`` ``B`` (float32 n x n, rows
    and columns in ``item_ids`` order, zero diagonal); ``B[i, j]`` is what history item i adds
    to item j's score."""

    def __init__(self, item_ids: np.ndarray, weights: np.ndarray, settings: EaseSettings) -> None:
        self.item_ids = item_ids
        self.weights = weights
        self.settings = settings

    def recommend(self, users: DataFrame, n: int, seen: DataFrame) -> DataFrame:
        """Top ``n`` items for each distinct ``user_idx`` of ``users``.

        ``seen`` (``user_idx``, ``item_idx``): each user's history, both the input ``x_u`` of
        the scores and the items excluded from the results; history items unknown to the model
        are ignored and users without a known history item get no rows.

        Output: :data:`RECOMMENDATION_SCHEMA` (``user_idx``, ``item_idx``, ``score`` double,
        ``rank`` int 1..n, ``because_item_idx``: the history item with the largest weight
        ``B[i, j]``, ties to the smallest id). Ranking: score descending, ties by item id.
        """
        _require_positive_int(n, "n")
        _require_columns(users, [USER_COL], "users")
        _require_columns(seen, [USER_COL, ITEM_COL], "seen")
        history = seen.where(F.col(USER_COL).isNotNull() & F.col(ITEM_COL).isNotNull()).join(
            users.select(USER_COL).distinct(), USER_COL, "left_semi"
        )
        if self.scores_dense:
            return self._recommend_dense(history, n)
        return self._recommend_sparse(history, n)

    @property
    def scores_dense(self) -> bool:
        """True when :meth:`recommend` broadcasts the dense ``B`` (catalogue within
        ``dense_max_items``), False when it scores each item's ``top_n_neighbours`` weights."""
        return self.item_ids.size <= self.settings.dense_max_items

    def pruned_rows(self) -> SparseRows:
        """``B`` with each row's ``top_n_neighbours`` largest off-diagonal weights (ties by
        column), as the CSR rows :func:`recspark.recommenders.sparse_topk.top_n_weighted_sums`
        scores: keys and items are both ``item_ids``."""
        rows, cols = _top_weights(self.weights, self.settings.top_n_neighbours)
        return SparseRows.from_entries(self.item_ids, self.item_ids, rows, cols, self.weights[rows, cols])

    def _recommend_sparse(self, history: DataFrame, n: int) -> DataFrame:
        pairs = history.select(USER_COL, ITEM_COL).distinct().withColumn("_w", F.lit(1.0))
        queries = weighted_queries(pairs, USER_COL, ITEM_COL, "_w").withColumn(EXCLUDE_COL, F.col(KEYS_COL))
        return top_n_weighted_sums(queries, self.pruned_rows(), n).select(
            F.col(QUERY_COL).cast("int").alias(USER_COL),
            F.col("item").cast("int").alias(ITEM_COL),
            "score",
            "rank",
            F.col("because").cast("int").alias(BECAUSE_COL),
        )

    def _recommend_dense(self, history: DataFrame, n: int) -> DataFrame:
        spark = history.sparkSession
        model = spark.sparkContext.broadcast((self.item_ids, self.weights))
        queries = history.groupBy(USER_COL).agg(
            F.collect_set(F.col(ITEM_COL).cast("long")).alias(_SEEN)
        )

        def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            item_ids, weights = model.value
            for batch in batches:
                for start in range(0, batch.num_rows, SCORE_BLOCK_USERS):
                    block = batch.slice(start, SCORE_BLOCK_USERS)
                    result = _score_block(block, item_ids, weights, n)
                    if result is not None:
                        yield result

        parallelism = spark.sparkContext.defaultParallelism
        return queries.coalesce(parallelism).mapInArrow(score, RECOMMENDATION_SCHEMA)


TOP_WEIGHTS_BLOCK_CELLS = 1 << 24  # cells of B copied at a time to find each row's largest weights


def _top_weights(weights: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each row's ``top_n`` largest off-diagonal weights, ties by column; rows
    are taken in blocks of at most :data:`TOP_WEIGHTS_BLOCK_CELLS` cells."""
    n_rows, n_cols = weights.shape
    per_block = max(1, TOP_WEIGHTS_BLOCK_CELLS // max(n_cols, 1))
    all_rows, all_cols = [], []
    for start in range(0, n_rows, per_block):
        block = weights[start : start + per_block].copy()
        local = np.arange(block.shape[0])
        block[local, start + local] = -np.inf
        rows, cols, _, _ = top_k_of_score_block(block, top_n)
        all_rows.append(rows + start)
        all_cols.append(cols)
    if not all_rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(all_rows), np.concatenate(all_cols)


def _score_block(
    block: pa.RecordBatch, item_ids: np.ndarray, weights: np.ndarray, n: int
) -> pa.RecordBatch | None:
    """Top ``n`` unseen items of a block of (user, seen items) rows, with their because-item."""
    parents, seen_ids = list_elements(block.column(_SEEN))
    known, positions = known_positions(seen_ids.to_numpy(zero_copy_only=False).astype(np.int64), item_ids)
    parents = parents[known]
    users = np.unique(parents)
    if users.size == 0:
        return None
    rows = np.searchsorted(users, parents)
    history = np.zeros((users.size, item_ids.size), dtype=np.float32)
    history[rows, positions] = 1.0
    scores = history @ weights
    scores[rows, positions] = -np.inf
    top_rows, cols, values, ranks = top_k_of_score_block(scores, n)
    because = np.empty(top_rows.size, dtype=np.int64)
    for row in np.unique(top_rows):
        picks = np.flatnonzero(top_rows == row)
        own = np.sort(positions[rows == row])  # ascending ids: argmax keeps the smallest on ties
        because[picks] = own[np.argmax(weights[np.ix_(own, cols[picks])], axis=0)]
    return pa.RecordBatch.from_arrays(
        [
            block.column(USER_COL).take(pa.array(users[top_rows])).cast(pa.int32()),
            pa.array(item_ids[cols].astype(np.int32)),
            pa.array(values.astype(np.float64)),
            pa.array(ranks.astype(np.int32)),
            pa.array(item_ids[because].astype(np.int32)),
        ],
        schema=pa.schema([pa.field(f.name, _arrow_type(f.dataType)) for f in RECOMMENDATION_SCHEMA]),
    )


def _arrow_type(data_type: T.DataType) -> pa.DataType:
    return {T.IntegerType(): pa.int32(), T.DoubleType(): pa.float64()}[data_type]
