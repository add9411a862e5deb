"""Exact top-K retrieval over factor matrices: blocked numpy scoring inside ``mapInArrow``.

Why not ``ALSModel.recommendForAllUsers``: it cannot exclude items a user has already seen, and
it blockifies both factor sets, cross-joins every user block with every item block (reading the
whole item matrix once per user block), selects a top-k per block pair with boxed JVM
comparisons and then shuffles those partial lists into a per-user aggregation. Here the
candidate (item) factor matrix is collected to the driver once and broadcast; each Python
worker scores a block of query rows against all candidates with one float32 matrix product,
masks excluded candidates to ``-inf`` and selects the top K (a group-maximum bound narrows each
row to a few candidates, then an exact sort).

Memory bounds:

- The driver and every executor hold the candidate matrix, ``n_items * rank * 4`` bytes
  (float32), plus the ids: 50k items x rank 64 is 12.8 MB; 1M items x rank 128 is 512 MB, about
  the practical limit of this design.
- Each Python worker holds one score block of ``rows * n_items * 4`` bytes, where ``rows`` is
  ``block_size`` capped so the block stays under :data:`MAX_SCORE_BLOCK_BYTES`; the top-k
  selection adds arrays of ``rows * n_items / 32`` entries and, unless scores tie massively,
  about ``rows * k`` candidates.

Parallelism: the query rows are coalesced (no shuffle) to at most ``spark.default.parallelism``
partitions, because each Python task has a fixed start-up cost of a fraction of a second while
the scoring work is streamed block by block, so fewer, larger tasks are faster.

Tie-breaking (deterministic): results are ordered by score descending, then candidate id
ascending. A tie that straddles the k-th place is resolved the same way: every candidate scoring
at least the k-th largest score is kept before the final sort, so the pre-selection never cuts
a tie arbitrarily. Ids are compared as integers, or as strings by code point (the same order as
Spark's binary string order).

Scores are float32 dot products, the precision ALS itself scores with.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_type

MAX_SCORE_BLOCK_BYTES = 256 * 1024 * 1024  # cap on one block's float32 score matrix
# Users scored per matrix product. Small blocks keep the score matrix near the CPU caches: on
# 20k items, 256-row blocks ran the product + selection about 2x faster than 4096-row ones.
DEFAULT_BLOCK_SIZE = 256
SCORE_GROUP_WIDTH = 32  # columns per group in the top-k pre-selection (see _top_k_superset)
_SEEN_COL = "__seen_item_ids"
_METRICS = ("cosine", "dot")


def top_k_by_dot_product(
    user_factors: DataFrame,
    item_factors: DataFrame,
    k: int,
    seen: DataFrame | None = None,
    user_col: str = "user_idx",
    item_col: str = "item_idx",
    factors_col: str = "features",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> DataFrame:
    """Top ``k`` items per user by the dot product of user and item factors, exact.

    Inputs: ``user_factors`` (user_col, factors_col) and ``item_factors`` (item_col, factors_col),
    factors as ``array<float|double>`` or an ml ``Vector``, all of the same rank; item ids must be
    unique. ``seen`` (user_col, item_col), optional: pairs excluded from the results; they are
    grouped into one list per user and joined to the user rows on the executors (no driver
    collect); seen items unknown to ``item_factors`` are ignored.

    Output: (user_col, item_col, ``score`` float, ``rank`` int 1..k), ``k`` rows per user, fewer
    when a user has fewer than ``k`` unseen items. Ties: score descending, then item id
    ascending. ``block_size`` users are scored per matrix product (capped by
    :data:`MAX_SCORE_BLOCK_BYTES`); results do not depend on it.

    For an ``ALSModel``, rename the shared ``id`` column of its factor frames::

        top_k_by_dot_product(model.userFactors.withColumnRenamed("id", "user_idx"),
                             model.itemFactors.withColumnRenamed("id", "item_idx"), k=10)
    """
    _check_k_and_block_size(k, block_size)
    if user_col == item_col:
        raise ValueError(
            f"user_col and item_col are both {user_col!r}; rename one id column "
            "(ALS factor frames both call it 'id')"
        )
    _require_columns(user_factors, [user_col, factors_col], "user_factors")
    _require_columns(item_factors, [item_col, factors_col], "item_factors")
    _require_id_column(user_factors, user_col, "user_factors")
    _require_id_column(item_factors, item_col, "item_factors")
    queries = user_factors.select(user_col, _as_float_array(user_factors, factors_col))
    seen_col = None
    if seen is not None:
        _require_columns(seen, [user_col, item_col], "seen")
        item_type = item_factors.schema[item_col].dataType
        seen_lists = seen.groupBy(user_col).agg(
            F.collect_list(F.col(item_col).cast(item_type)).alias(_SEEN_COL)
        )
        queries = queries.join(seen_lists, on=user_col, how="left")
        seen_col = _SEEN_COL
    return _blocked_top_k(
        queries,
        item_factors,
        k,
        query_col=user_col,
        candidate_col=item_col,
        output_candidate_col=item_col,
        factors_col=factors_col,
        seen_col=seen_col,
        exclude_self=False,
        normalize=False,
        block_size=block_size,
    )


def top_k_similar_items(
    item_factors: DataFrame,
    k: int,
    metric: str = "cosine",
    item_col: str = "item_idx",
    factors_col: str = "features",
    similar_item_col: str | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> DataFrame:
    """Exact ``k`` nearest neighbours of every item among all other items.

    Input: ``item_factors`` (item_col, factors_col), factors as ``array<float|double>`` or an ml
    ``Vector``; item ids must be unique. ``metric``: ``"cosine"`` (factors scaled to unit length
    first; an all-zero vector has similarity 0 to everything) or ``"dot"`` (raw dot product).

    Output: (item_col, similar_item_col, ``score`` float, ``rank`` int 1..k); an item is never its
    own neighbour, so there are ``min(k, n_items - 1)`` rows per item. ``similar_item_col``
    defaults to ``"similar_" + item_col``. Ties: score descending, then neighbour id ascending.
    Same blocked machinery and memory bound as :func:`top_k_by_dot_product`.
    """
    _check_k_and_block_size(k, block_size)
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    _require_columns(item_factors, [item_col, factors_col], "item_factors")
    _require_id_column(item_factors, item_col, "item_factors")
    similar_item_col = similar_item_col or f"similar_{item_col}"
    if similar_item_col == item_col:
        raise ValueError(f"similar_item_col must differ from item_col {item_col!r}")
    queries = item_factors.select(item_col, _as_float_array(item_factors, factors_col))
    return _blocked_top_k(
        queries,
        item_factors,
        k,
        query_col=item_col,
        candidate_col=item_col,
        output_candidate_col=similar_item_col,
        factors_col=factors_col,
        seen_col=None,
        exclude_self=True,
        normalize=metric == "cosine",
        block_size=block_size,
    )


def top_k_of_score_block(
    scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` columns of each row of a score matrix, the numpy core of this module.

    Input: ``scores`` (n_rows x n_candidates), columns in ascending candidate-id order, ``-inf``
    marking excluded candidates. Output: (row, column, score, rank) arrays ordered by row, then
    rank; ranks run 1..k, and rows with fewer than ``k`` finite scores give fewer entries.

    :func:`_top_k_superset` keeps every score at least a lower bound of its row's k-th largest,
    so ties at the k-th place all survive; ``np.lexsort`` on (row, -score, column) then orders
    the survivors by score descending and column ascending before cutting at ``k``.
    """
    n_rows, n_candidates = scores.shape
    k = min(k, n_candidates)
    if k == 0 or n_rows == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=scores.dtype), empty
    rows, cols = _top_k_superset(scores, k)
    values = scores[rows, cols]
    finite = values > -np.inf
    rows, cols, values = rows[finite], cols[finite], values[finite]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    ranks = np.arange(rows.size) - np.searchsorted(rows, rows, side="left") + 1
    top = ranks <= k
    return rows[top], cols[top], values[top], ranks[top]


def _top_k_superset(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every score at least a lower bound of its row's k-th largest score.

    The first ``n_groups * width`` columns are dealt into ``n_groups`` interleaved groups (column
    ``j`` to group ``j % n_groups``) of ``width`` columns, at most :data:`SCORE_GROUP_WIDTH`,
    with at least ``min(4 * k, n_candidates)`` groups. The
    k-th largest group maximum is such a bound, since those k maxima are k scores of the row.
    Only groups whose maximum reaches the bound are searched (about ``k`` of them), plus the
    columns left over after the last whole group. Group maxima over interleaved columns are an
    element-wise maximum of contiguous slices, so this costs about one pass over the scores,
    several times less than an ``np.partition`` of every row.
    """
    n_rows, n_candidates = scores.shape
    width = max(1, min(SCORE_GROUP_WIDTH, n_candidates // (4 * k)))
    n_groups = n_candidates // width
    head = n_groups * width
    grouped = scores[:, :head].reshape(n_rows, width, n_groups)
    group_max = grouped.max(axis=1)
    bound = np.partition(group_max, n_groups - k, axis=1)[:, n_groups - k]
    group_rows, groups = np.nonzero(group_max >= bound[:, None])
    hits, offsets = np.nonzero(grouped[group_rows, :, groups] >= bound[group_rows, None])
    tail_rows, tail_cols = np.nonzero(scores[:, head:] >= bound[:, None])
    rows = np.concatenate([group_rows[hits], tail_rows])
    cols = np.concatenate([offsets * n_groups + groups[hits], tail_cols + head])
    return rows, cols


def _check_k_and_block_size(k: int, block_size: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")


def _require_columns(df: DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {df.columns}")


def _require_id_column(df: DataFrame, id_col: str, name: str) -> None:
    data_type = df.schema[id_col].dataType
    if not isinstance(data_type, (T.IntegralType, T.StringType)):
        raise ValueError(f"{name}.{id_col} must hold integer or string ids, got {data_type}")


def _as_float_array(df: DataFrame, factors_col: str):
    """The factors column as ``array<float|double>`` (ml Vectors converted), keeping its name."""
    data_type = df.schema[factors_col].dataType
    if isinstance(data_type, VectorUDT):
        return vector_to_array(F.col(factors_col), "float32").alias(factors_col)
    if isinstance(data_type, T.ArrayType) and isinstance(data_type.elementType, T.NumericType):
        return F.col(factors_col)
    raise ValueError(f"{factors_col} must be an array of numbers or an ml Vector, got {data_type}")


def _id_array(ids) -> np.ndarray:
    """Ids as a numpy array that sorts and compares like Spark: int64, or str for strings."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False)
    return ids.astype(str)


def _collect_candidates(
    item_factors: DataFrame, item_col: str, factors_col: str, normalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate ids (ascending) and their float32 factor matrix, rows in the same order."""
    frame = item_factors.select(item_col, _as_float_array(item_factors, factors_col)).toPandas()
    if frame[item_col].isna().any() or frame[factors_col].isna().any():
        raise ValueError("item_factors has null ids or factors")
    ids = _id_array(frame[item_col].to_numpy())
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if ids.size > 1 and np.any(ids[1:] == ids[:-1]):
        raise ValueError(f"item_factors has duplicate ids in {item_col!r}")
    vectors = [np.asarray(frame[factors_col].iat[i], dtype=np.float32) for i in order]
    if len({v.size for v in vectors}) > 1:
        raise ValueError(f"item_factors rows have different ranks in {factors_col!r}")
    rank = vectors[0].size if vectors else 0
    matrix = np.stack(vectors) if vectors else np.empty((0, rank), dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise ValueError("item_factors holds non-finite factors")
    if normalize:
        matrix = _unit_rows(matrix)
    return ids, matrix


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1).astype(matrix.dtype)


def _blocked_top_k(
    queries: DataFrame,
    item_factors: DataFrame,
    k: int,
    *,
    query_col: str,
    candidate_col: str,
    output_candidate_col: str,
    factors_col: str,
    seen_col: str | None,
    exclude_self: bool,
    normalize: bool,
    block_size: int,
) -> DataFrame:
    """Score ``queries`` against all candidates in ``item_factors``; shared by the public API."""
    candidate_ids, candidate_matrix = _collect_candidates(
        item_factors, candidate_col, factors_col, normalize
    )
    n_candidates, rank = candidate_matrix.shape
    rows_per_block = max(1, min(block_size, MAX_SCORE_BLOCK_BYTES // max(1, 4 * n_candidates)))
    candidates = queries.sparkSession.sparkContext.broadcast((candidate_ids, candidate_matrix))
    output_schema = T.StructType(
        [
            T.StructField(query_col, queries.schema[query_col].dataType),
            T.StructField(output_candidate_col, item_factors.schema[candidate_col].dataType),
            T.StructField("score", T.FloatType()),
            T.StructField("rank", T.IntegerType()),
        ]
    )
    arrow_schema = pa.schema([pa.field(f.name, to_arrow_type(f.dataType)) for f in output_schema])

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, matrix = candidates.value
        if ids.size == 0:
            return
        for batch in batches:
            parts = []  # (rows, cols, values, ranks) of each block, rows relative to the batch
            for start in range(0, batch.num_rows, rows_per_block):
                block = batch.slice(start, rows_per_block)
                scores = _query_matrix(block.column(factors_col), rank, normalize) @ matrix.T
                if seen_col is not None:
                    _mask_lists(scores, block.column(seen_col), ids)
                if exclude_self:
                    _mask_own_ids(scores, block.column(query_col), ids)
                rows, cols, values, ranks = top_k_of_score_block(scores, k)
                parts.append((rows + start, cols, values, ranks))
            if not parts:
                continue
            rows, cols, values, ranks = (np.concatenate(arrays) for arrays in zip(*parts))
            yield pa.RecordBatch.from_arrays(
                [
                    batch.column(query_col).take(pa.array(rows)),
                    pa.array(ids[cols], type=arrow_schema.field(1).type),
                    pa.array(values, type=pa.float32()),
                    pa.array(ranks, type=pa.int32()),
                ],
                schema=arrow_schema,
            )

    # Scoring cost is per query row, Python start-up cost per task: no more tasks than cores.
    parallelism = queries.sparkSession.sparkContext.defaultParallelism
    return queries.coalesce(parallelism).mapInArrow(score_batches, output_schema)


def _query_matrix(factors: pa.ListArray, rank: int, normalize: bool) -> np.ndarray:
    """A block's factor lists as a float32 (rows x rank) matrix, checked against ``rank``."""
    lengths = pc.list_value_length(factors).to_numpy(zero_copy_only=False)
    if factors.null_count or np.any(lengths != rank):
        raise ValueError(f"every query needs {rank} factors, the rank of the candidates")
    matrix = factors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = matrix.reshape(len(factors), rank)
    if not np.isfinite(matrix).all():
        raise ValueError("query factors hold null or non-finite values")
    return _unit_rows(matrix) if normalize else matrix


def _candidate_columns(candidate_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column of each id in the sorted ``candidate_ids`` and a mask of the ids found there."""
    if candidate_ids.size == 0:
        return np.zeros(ids.size, dtype=np.int64), np.zeros(ids.size, dtype=bool)
    columns = np.minimum(np.searchsorted(candidate_ids, ids), candidate_ids.size - 1)
    return columns, candidate_ids[columns] == ids


def _mask_lists(scores: np.ndarray, id_lists: pa.ListArray, candidate_ids: np.ndarray) -> None:
    """Set ``scores[row, column of id]`` to -inf for every id in each row's list (sparse mask)."""
    rows = pc.list_parent_indices(id_lists).to_numpy(zero_copy_only=False)
    ids = _id_array(id_lists.flatten().to_numpy(zero_copy_only=False))
    columns, found = _candidate_columns(candidate_ids, ids)
    scores[rows[found], columns[found]] = -np.inf


def _mask_own_ids(scores: np.ndarray, query_ids: pa.Array, candidate_ids: np.ndarray) -> None:
    """Set each row's score against its own id to -inf."""
    ids = _id_array(query_ids.to_numpy(zero_copy_only=False))
    columns, found = _candidate_columns(candidate_ids, ids)
    scores[np.flatnonzero(found), columns[found]] = -np.inf
