"""Top-N of sparse weighted sums, scored block by block in the Python workers: the scoring of
the neighbourhood recommenders (item-item and user-KNN).

A query (a user) holds keys ``k`` with weights ``w_k``; a sparse matrix ``M`` (keys x items)
gives each key's items. The user's score of item ``j`` is ``sum_k w_k * M[k, j]`` over the
keys whose row of ``M`` holds ``j`` (a stored entry, zero or not), and only such items are
candidates. For item-item the keys are the user's history items and ``M`` the item-item
similarity table; for user-KNN the keys are the user's neighbours (weights: similarities) and
``M`` the users' interactions. The ``because`` key of an item is the key with the largest
contribution ``w_k * M[k, j]`` (ties: smallest key id).

This replaces a join of every (user, key) with every (key, item) and a ``groupBy`` of the
result, which at 1M synthetic interactions meant 100M shuffled rows per source: ``M`` is
collected to the driver once (CSR arrays; ``nnz x 12`` bytes, e.g. 240 MB for 20M
interactions) and broadcast, and each task turns a block of queries into a sparse query matrix
``Q`` and computes ``Q @ M`` with scipy, then the top ``n`` of each row with
:func:`recspark.recommenders.topk.top_k_of_score_block` (score descending, ties by item id
ascending), skipping the items in the query's exclusion list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.recommenders.topk import top_k_of_score_block

QUERY_COL, KEYS_COL, WEIGHTS_COL, EXCLUDE_COL = "query", "keys", "weights", "exclude"
MAX_BLOCK_CELLS = 1 << 22  # queries x items cells of one dense score block (float64)
RESULT_SCHEMA = T.StructType([
    T.StructField(QUERY_COL, T.LongType()),
    T.StructField("item", T.LongType()),
    T.StructField("score", T.DoubleType()),
    T.StructField("rank", T.IntegerType()),
    T.StructField("because", T.LongType()),
])


@dataclass
class SparseRows:
    """A keys x items sparse matrix in CSR form: row ``r`` is key ``key_ids[r]``, column ``c``
    item ``item_ids[c]`` (both sorted ascending); ``values`` None means every stored entry is 1."""

    key_ids: np.ndarray
    item_ids: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None

    @classmethod
    def from_entries(cls, key_ids: np.ndarray, item_ids: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     values: np.ndarray | None) -> SparseRows:
        """From entries in any order: ``rows`` index ``key_ids``, ``cols`` index ``item_ids``,
        ``values`` aligned with them (None: every entry is 1); one entry per (row, col)."""
        order = np.lexsort((cols, rows))
        indptr = np.zeros(key_ids.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=key_ids.size), out=indptr[1:])
        ordered = None if values is None else np.asarray(values, dtype=np.float64)[order]
        return cls(key_ids, item_ids, indptr, cols[order].astype(np.int32), ordered)

    def matrix(self) -> sp.csr_matrix:
        values = np.ones(self.indices.size) if self.values is None else self.values
        return sp.csr_matrix((values, self.indices, self.indptr), shape=(self.key_ids.size, self.item_ids.size))

    def pattern(self) -> sp.csr_matrix:
        """The stored entries as ones (a stored zero is still an entry)."""
        ones = np.ones(self.indices.size)
        return sp.csr_matrix((ones, self.indices, self.indptr), shape=(self.key_ids.size, self.item_ids.size))


def collect_sparse_rows(frame: DataFrame, key_col: str, item_col: str, value_col: str | None = None) -> SparseRows:
    """:class:`SparseRows` of ``frame`` (key_col, item_col[, value_col]; repeated pairs keep one
    value, rows with a null id are dropped), collected to the driver through Arrow."""
    columns = [F.col(key_col).cast("long").alias("k"), F.col(item_col).cast("long").alias("i")]
    if value_col is not None:
        columns.append(F.col(value_col).cast("double").alias("v"))
    pairs = (frame.where(F.col(key_col).isNotNull() & F.col(item_col).isNotNull()).select(*columns)
             .dropDuplicates(["k", "i"]).toPandas())
    keys, items = pairs["k"].to_numpy(np.int64), pairs["i"].to_numpy(np.int64)
    key_ids, rows = np.unique(keys, return_inverse=True)
    item_ids, cols = np.unique(items, return_inverse=True)
    return SparseRows.from_entries(key_ids, item_ids, rows, cols, None if value_col is None else pairs["v"].to_numpy())


def weighted_queries(entries: DataFrame, query_col: str, key_col: str, weight_col: str) -> DataFrame:
    """(:data:`QUERY_COL`, :data:`KEYS_COL`, :data:`WEIGHTS_COL`) of ``entries`` (one row per
    (query, key) with its weight): each query's keys and weights as aligned arrays. Add
    :data:`EXCLUDE_COL` before :func:`top_n_weighted_sums`."""
    entry = F.struct(F.col(key_col).cast("long").alias("key"), F.col(weight_col).cast("double").alias("weight"))
    return entries.groupBy(query_col).agg(F.collect_list(entry).alias("_e")).select(
        F.col(query_col).cast("long").alias(QUERY_COL), F.col("_e.key").alias(KEYS_COL),
        F.col("_e.weight").alias(WEIGHTS_COL),
    )


def top_n_weighted_sums(queries: DataFrame, rows: SparseRows, n: int, normalize: bool = False) -> DataFrame:
    """Top ``n`` items of each query of ``queries`` (:data:`QUERY_COL` long, :data:`KEYS_COL`
    array<long>, :data:`WEIGHTS_COL` array<double> of the same length, :data:`EXCLUDE_COL`
    array<long>, may be null) against ``rows``. Output :data:`RESULT_SCHEMA`: (query, item,
    score, rank 1..n, because key), queries without a candidate giving no rows. ``normalize``
    divides each score by ``sum_k |M[k, j]|`` over the keys holding ``j`` (0 when that is 0)."""
    spark = queries.sparkSession
    shared = spark.sparkContext.broadcast(rows)
    block = max(1, min(1024, MAX_BLOCK_CELLS // max(1, rows.item_ids.size)))

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        matrix_rows = shared.value
        matrix, pattern = matrix_rows.matrix(), matrix_rows.pattern()
        absolute = abs(matrix) if normalize else None
        for batch in batches:
            for start in range(0, batch.num_rows, block):
                result = score_block(batch.slice(start, block), matrix_rows, matrix, pattern, absolute, n)
                if result is not None:
                    yield result

    return queries.coalesce(spark.sparkContext.defaultParallelism).mapInArrow(score, RESULT_SCHEMA)


def known_positions(ids: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of ``ids`` present in the sorted ``known``, their positions in it)."""
    at = np.minimum(np.searchsorted(known, ids), max(known.size - 1, 0))
    found = known[at] == ids if known.size else np.zeros(ids.size, dtype=bool)
    return found, at[found]


def list_elements(lists: pa.ListArray) -> tuple[np.ndarray, pa.Array]:
    """(index of the list of each element, elements) of ``lists`` (null lists hold nothing)."""
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    return parents, lists.flatten()


def _flat(batch: pa.RecordBatch, column: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`list_elements` of a column of ``batch``, the elements as a numpy array."""
    parents, elements = list_elements(batch.column(column))
    return parents, elements.to_numpy(zero_copy_only=False)


def score_block(batch: pa.RecordBatch, rows: SparseRows, matrix: sp.csr_matrix, pattern: sp.csr_matrix,
                absolute: sp.csr_matrix | None, n: int) -> pa.RecordBatch | None:
    """The top ``n`` of one block of queries (see :func:`top_n_weighted_sums`)."""
    key_parents, keys = _flat(batch, KEYS_COL)
    _, weights = _flat(batch, WEIGHTS_COL)
    known, key_rows = known_positions(keys.astype(np.int64), rows.key_ids)
    key_parents, weights = key_parents[known], weights[known].astype(np.float64)
    shape = (batch.num_rows, rows.key_ids.size)
    query = sp.csr_matrix((weights, (key_parents, key_rows)), shape=shape)
    holds = sp.csr_matrix((np.ones(key_rows.size), (key_parents, key_rows)), shape=shape)
    reached = (holds @ pattern).nonzero()
    if reached[0].size == 0:
        return None
    sums = (query @ matrix).toarray()[reached]
    if absolute is not None:
        totals = (holds @ absolute).toarray()[reached]
        sums = np.divide(sums, totals, out=np.zeros_like(sums), where=totals > 0)
    scores = np.full(shape[:1] + (rows.item_ids.size,), -np.inf)
    scores[reached] = sums
    exclude_parents, excluded = _flat(batch, EXCLUDE_COL)
    found, exclude_cols = known_positions(excluded.astype(np.int64), rows.item_ids)
    scores[exclude_parents[found], exclude_cols] = -np.inf
    top_rows, cols, values, ranks = top_k_of_score_block(scores, n)
    because = np.empty(top_rows.size, dtype=np.int64)
    order = np.lexsort((key_rows, key_parents))  # each query's keys ascending: argmax keeps the smallest
    key_parents, key_rows, weights = key_parents[order], key_rows[order], weights[order]
    bounds = np.searchsorted(key_parents, np.arange(batch.num_rows + 1))
    top_bounds = np.searchsorted(top_rows, np.arange(batch.num_rows + 1))
    for row in np.unique(top_rows):
        own, picks = slice(bounds[row], bounds[row + 1]), slice(top_bounds[row], top_bounds[row + 1])
        held = pattern[key_rows[own]][:, cols[picks]].toarray() > 0
        values_held = matrix[key_rows[own]][:, cols[picks]].toarray()
        contributions = np.where(held, weights[own, None] * values_held, -np.inf)
        because[picks] = rows.key_ids[key_rows[own][np.argmax(contributions, axis=0)]]
    query_ids = batch.column(QUERY_COL).to_numpy(zero_copy_only=False).astype(np.int64)
    return pa.RecordBatch.from_arrays(
        [pa.array(query_ids[top_rows]), pa.array(rows.item_ids[cols]), pa.array(values.astype(np.float64)),
         pa.array(ranks.astype(np.int32)), pa.array(because)],
        names=[f.name for f in RESULT_SCHEMA],
    )
