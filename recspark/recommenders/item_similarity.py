"""Item-item similarity from co-occurrence or ALS factors, and item-based CF recommendations.

Co-occurrence similarity (:class:`ItemSimilarity`) counts, for every pair of items, the users
who interacted with both, by a *user-wise pair expansion*: each user's distinct items are
collected into one array, and every item of the array (the *anchor*) is paired with the user's
other items. The work is ``sum over users of n_u * (n_u - 1)`` pair entries, never an items x
items cross join. Items are hashed into ``spark.sql.shuffle.partitions`` buckets; each user's
array is shipped once to every bucket that holds one of its items, one task per bucket, so a
task sees every co-occurrence of its anchors. A vectorised numpy pass in the task
(``mapInArrow``) expands the pairs, counts them (``np.bincount`` over a dense anchors x items
grid), drops those under ``min_support``, scores the rest and keeps each anchor's top N: no row
per pair is ever created, shuffled or aggregated by Spark.

Why not Spark rows per pair (measured on MovieLens ml-latest-small, 30.4M pairs i < j, exact
mode, local[2]): generating the pair rows (explode of each item against the slice of the sorted
array after it, or a self-join on user with ``i < j``; the two took about the same time) costs
a few CPU-seconds, but Spark's hash aggregation of those rows cost 20-30 CPU-seconds, and
scoring, both directions and a top-N window on the 4.7M surviving pairs 10-20 more; the
numpy pass does all of it in about 5. It counts each pair from both anchors (``i < j`` and
``j < i``), twice the cheap expansion, so that each item's whole neighbour list is local.
``bench/bench_item_similarity.py`` compares the whole computation with the textbook self-join.

Memory per task: its share of ``sum over users of n_u * min(n_u, n_buckets)`` item entries
(8-16 bytes each), plus one count pass of at most about :data:`PAIRS_PER_CHUNK` pair entries and
:data:`MAX_DENSE_PAIR_GRID` grid cells. Raise ``spark.sql.shuffle.partitions`` for larger data.

Similarity tables (``ItemSimilarityModel.similarities``, :func:`factor_similarity`) all have the
columns (item_col, :data:`NEIGHBOR_COL`, ``score`` double, ``support`` long), one row per item
and neighbour, at most ``top_n`` neighbours per item, an item never its own neighbour.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.recommenders.sparse_topk import (
    EXCLUDE_COL,
    KEYS_COL,
    QUERY_COL,
    collect_sparse_rows,
    top_n_weighted_sums,
    weighted_queries,
)
from recspark.recommenders.topk import DEFAULT_BLOCK_SIZE, top_k_similar_items

NEIGHBOR_COL = "neighbor_idx"  # the neighbour item's id, same type as the item column
METRICS = ("cosine", "jaccard", "lift")
PAIRS_PER_CHUNK = 8_000_000  # pair entries one numpy pass holds (about 40 bytes each at peak)
MAX_DENSE_PAIR_GRID = 1 << 24  # anchors x items cells counted with bincount (8 bytes each)


@dataclass
class SimilaritySettings:
    """Item-item co-occurrence similarity (the ``similarity`` config section); see
    :class:`ItemSimilarity`."""

    metric: str = "cosine"  # cosine | jaccard | lift
    min_support: int = 2  # users a pair needs in common
    top_n: int = 50  # neighbours kept per item
    max_items_per_user: int | None = 500  # heavy users down-sampled (seeded); null: exact
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric: must be one of {list(METRICS)}, got {self.metric!r}")
        for name in ("min_support", "top_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_items_per_user is not None and self.max_items_per_user < 2:
            raise ValueError(f"max_items_per_user: must be >= 2 or null, got {self.max_items_per_user}")


_ITEMS = "_items"  # per-user array of distinct items (structs with weights if weighted)
_BUCKET = "_bucket"  # anchor bucket of a (bucket, user item array) row, see _item_bucket
_BUCKET_KEY = "_bucket_key"  # an item of that bucket: Spark partitions the row to the bucket
_ANCHOR = "_anchor"


def _require_columns(frame: DataFrame, columns: list[str], frame_name: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{frame_name} lacks column(s) {missing}; it has {frame.columns}")


def _require_positive_int(value: object, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


class ItemSimilarity:
    """Estimator of item-item co-occurrence similarity (pyspark.ml style: ``fit`` -> model).

    Input of :meth:`fit`: interactions with ``user_col``, ``item_col`` (integer ids, e.g. the
    dense ``user_idx`` / ``item_idx`` of :mod:`recspark.featurize.ids`) and, when
    ``weight_col`` is set, a positive weight. Rows with a null user or item (or a null or
    non-positive weight) are ignored; repeated (user, item) rows count once (binary) or have
    their weights summed (weighted).

    Metrics, with ``c_ij`` the number of users with both items, ``n_i`` the users with item i and
    ``N`` the number of users:

    * ``cosine``  = ``c_ij / sqrt(n_i * n_j)``; weighted: ``sum_u w_ui w_uj /
      sqrt(sum_u w_ui^2 * sum_u w_uj^2)`` (weights are only allowed for cosine);
    * ``jaccard`` = ``c_ij / (n_i + n_j - c_ij)``;
    * ``lift``    = ``c_ij * N / (n_i * n_j)`` (observed over expected co-occurrence).

    Pairs with ``support = c_ij < min_support`` are dropped before scoring. Each item keeps its
    ``top_n`` neighbours by score descending, ties by neighbour id ascending.

    Heavy users (more than ``max_items_per_user`` distinct items) are down-sampled to
    ``max_items_per_user`` items: those with the smallest ``xxhash64(seed, user, item)`` (ties by
    item id), so the sample is the same on every run and partitioning. This is the only
    approximation; every count (``c_ij``, ``n_i``, ``N``) is taken on the sampled data, so scores
    stay in their ranges. ``max_items_per_user=None`` computes exact similarities.
    """

    def __init__(
        self,
        metric: str = "cosine",
        min_support: int = 2,
        top_n: int = 50,
        max_items_per_user: int | None = 500,
        seed: int = 0,
        user_col: str = "user_idx",
        item_col: str = "item_idx",
        weight_col: str | None = None,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        _require_positive_int(min_support, "min_support")
        _require_positive_int(top_n, "top_n")
        if max_items_per_user is not None:
            _require_positive_int(max_items_per_user, "max_items_per_user", minimum=2)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if weight_col is not None and metric != "cosine":
            raise ValueError(f"weight_col is only supported for metric 'cosine', not {metric!r}")
        if len({user_col, item_col, NEIGHBOR_COL}) < 3:
            raise ValueError(
                f"user_col {user_col!r}, item_col {item_col!r} and {NEIGHBOR_COL!r} must differ"
            )
        self.metric = metric
        self.min_support = min_support
        self.top_n = top_n
        self.max_items_per_user = max_items_per_user
        self.seed = seed
        self.user_col = user_col
        self.item_col = item_col
        self.weight_col = weight_col

    def fit(self, interactions: DataFrame) -> ItemSimilarityModel:
        """Compute the similarity table.

        Runs a Spark job at once: the per-item counts (``n_i``, and ``sum w^2`` when weighted;
        about 24 bytes per item) are collected to the driver and broadcast to the scoring tasks.
        The similarity table itself is computed when it is used.
        """
        columns = [self.user_col, self.item_col] + ([self.weight_col] if self.weight_col else [])
        _require_columns(interactions, columns, "interactions")
        item_type = interactions.schema[self.item_col].dataType
        if not isinstance(item_type, T.IntegralType):
            raise ValueError(
                f"{self.item_col} must hold integer ids, got {item_type.simpleString()}"
            )
        spark = interactions.sparkSession
        n_buckets = int(spark.conf.get("spark.sql.shuffle.partitions"))
        user_items = self._user_item_arrays(interactions)
        stats = spark.sparkContext.broadcast(self._item_stats(user_items, n_buckets))
        settings = _ScoringSettings(
            self.metric,
            self.min_support,
            self.top_n,
            weighted=self.weight_col is not None,
            pairs_per_chunk=PAIRS_PER_CHUNK,
            max_dense_grid=MAX_DENSE_PAIR_GRID,
        )

        def similarity_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            return _similarity_batches(batches, stats.value, settings)

        bucket_rows = self._bucket_rows(user_items, n_buckets)
        similarities = bucket_rows.repartition(n_buckets, _BUCKET_KEY).mapInArrow(
            similarity_batches, f"{_ANCHOR} long, {NEIGHBOR_COL} long, score double, support long"
        )
        return ItemSimilarityModel(
            similarities.select(
                F.col(_ANCHOR).cast(item_type).alias(self.item_col),
                F.col(NEIGHBOR_COL).cast(item_type).alias(NEIGHBOR_COL),
                "score",
                "support",
            ),
            user_col=self.user_col,
            item_col=self.item_col,
        )

    def _entry_item(self, entry: Column) -> Column:
        """The item id of an element of a user's ``_items`` array."""
        return entry["item"] if self.weight_col else entry

    def _user_item_arrays(self, interactions: DataFrame) -> DataFrame:
        """One row per user: ``_items``, the user's distinct items (binary), or structs
        (``item``, ``_w`` summed weight) (weighted); heavy users down-sampled."""
        user, item = F.col(self.user_col), F.col(self.item_col)
        present = interactions.where(user.isNotNull() & item.isNotNull())
        if self.weight_col is None:
            lists = present.groupBy(self.user_col).agg(F.collect_set(self.item_col).alias(_ITEMS))
        else:
            lists = (
                present.where(F.col(self.weight_col) > 0)
                .groupBy(self.user_col, self.item_col)
                .agg(F.sum(F.col(self.weight_col).cast("double")).alias("_w"))
                .groupBy(self.user_col)
                .agg(F.collect_list(F.struct(item.alias("item"), "_w")).alias(_ITEMS))
            )
        items = F.col(_ITEMS)
        if self.max_items_per_user is None:
            return lists.select(self.user_col, items)
        by_hash = F.array_sort(
            F.transform(
                items,
                lambda e: F.struct(
                    F.xxhash64(F.lit(self.seed), user, self._entry_item(e)).alias("h"),
                    self._entry_item(e).alias("i"),
                    e.alias("e"),
                ),
            )
        )
        sampled = F.transform(F.slice(by_hash, 1, self.max_items_per_user), lambda s: s["e"])
        capped = F.when(F.size(items) > self.max_items_per_user, sampled).otherwise(items)
        return lists.select(self.user_col, capped.alias(_ITEMS))

    def _bucket_rows(self, user_items: DataFrame, n_buckets: int) -> DataFrame:
        """(``_bucket_key``, ``_bucket``, ``_items``): one row per user and bucket among the
        user's items, keyed by the user's smallest item of that bucket.

        Spark hash-partitions a long column to ``pmod(hash(key), n)``, which for an item of
        bucket b is b itself: ``repartition(n_buckets, _bucket_key)`` puts exactly one bucket in
        each task (partitioning by the bucket number would hash the numbers and collide).
        """
        tagged = F.array_sort(
            F.transform(
                _ITEMS,
                lambda e: F.struct(
                    _item_bucket(self._entry_item(e), n_buckets).alias("b"),
                    self._entry_item(e).cast("long").alias("i"),
                ),
            )
        )
        tags = F.col("_tags")
        firsts = F.filter(tags, lambda tag, k: (k == 0) | (tags[k - 1]["b"] != tag["b"]))
        return (
            user_items.select(_ITEMS, tagged.alias("_tags"))
            .select(F.explode(firsts).alias("_first"), _ITEMS)
            .select(
                F.col("_first.i").alias(_BUCKET_KEY), F.col("_first.b").alias(_BUCKET), _ITEMS
            )
        )

    def _item_stats(self, user_items: DataFrame, n_buckets: int) -> _ItemStats:
        """Collect the per-item counts and buckets of the (sampled) user arrays."""
        weighted = self.weight_col is not None
        exploded = user_items.select(F.explode(_ITEMS).alias("_e"))
        item = self._entry_item(F.col("_e")).cast("long").alias("item")
        norm2 = F.sum(F.col("_e._w") * F.col("_e._w")) if weighted else F.count("*").cast("double")
        rows = (
            exploded.groupBy(item)
            .agg(F.count("*").alias("n"), norm2.alias("norm2"))
            .withColumn("bucket", _item_bucket(F.col("item"), n_buckets))
            .collect()
        )
        return _ItemStats.build(
            ids=np.array([r["item"] for r in rows], dtype=np.int64),
            n=np.array([r["n"] for r in rows], dtype=np.int64),
            norm2=np.array([r["norm2"] for r in rows], dtype=np.float64),
            buckets=np.array([r["bucket"] for r in rows], dtype=np.int64),
            n_users=user_items.count() if self.metric == "lift" else 0,
        )


def _item_bucket(item: Column, n_buckets: int) -> Column:
    """Anchor bucket of an item: ``pmod(hash(item as long), n_buckets)``, Spark's own hash
    partitioning of a long column."""
    return F.pmod(F.hash(item.cast("long")), F.lit(n_buckets))


@dataclass(frozen=True)
class _ItemStats:
    """Per-item counts on the driver, broadcast to the scoring tasks; arrays ordered by id."""

    ids: np.ndarray  # int64 item ids, ascending
    n: np.ndarray  # int64 users with the item
    norm2: np.ndarray  # float64 sum of squared weights (n when binary)
    buckets: np.ndarray  # int64 anchor bucket of the item (see _item_bucket)
    n_users: int  # N for lift (0 for the other metrics)
    lookup: np.ndarray | None  # position of id ids[0] + k at index k, when the id span is small

    @classmethod
    def build(
        cls, ids: np.ndarray, n: np.ndarray, norm2: np.ndarray, buckets: np.ndarray, n_users: int
    ) -> _ItemStats:
        order = np.argsort(ids)
        ids = ids[order]
        lookup = None
        if ids.size and ids[-1] - ids[0] < 4 * ids.size + 1024:
            lookup = np.full(ids[-1] - ids[0] + 1, -1, dtype=np.int64)
            lookup[ids - ids[0]] = np.arange(ids.size)
        return cls(ids, n[order], norm2[order], buckets[order], n_users, lookup)

    def positions(self, item_ids: np.ndarray) -> np.ndarray:
        """Index into the stats arrays of each id (every id must be present)."""
        if self.lookup is not None:
            return self.lookup[item_ids - self.ids[0]]
        return np.searchsorted(self.ids, item_ids)


@dataclass(frozen=True)
class _ScoringSettings:
    metric: str
    min_support: int
    top_n: int
    weighted: bool
    pairs_per_chunk: int  # PAIRS_PER_CHUNK when fitted
    max_dense_grid: int  # MAX_DENSE_PAIR_GRID when fitted


@dataclass
class _UserArrays:
    """A task's (bucket, user item array) rows flattened: ``positions[k]`` is an item of row
    ``rows[k]`` (rows ascending), as a position in the item stats; ``weights`` or None."""

    row_buckets: np.ndarray
    positions: np.ndarray
    rows: np.ndarray
    weights: np.ndarray | None

    @classmethod
    def from_batches(
        cls, batches: list[pa.RecordBatch], stats: _ItemStats, weighted: bool
    ) -> _UserArrays:
        row_buckets, positions, rows, weights = [], [], [], []
        row_offset = 0
        for batch in batches:
            items = batch.column(_ITEMS)
            values = items.flatten()
            ids = values.field("item") if weighted else values
            row_buckets.append(batch.column(_BUCKET).to_numpy())
            positions.append(stats.positions(ids.to_numpy(zero_copy_only=False).astype(np.int64)))
            rows.append(pc.list_parent_indices(items).to_numpy(zero_copy_only=False) + row_offset)
            if weighted:
                weights.append(values.field("_w").to_numpy(zero_copy_only=False))
            row_offset += batch.num_rows
        return cls(
            np.concatenate(row_buckets),
            np.concatenate(positions),
            np.concatenate(rows).astype(np.int64),
            np.concatenate(weights) if weighted else None,
        )

    def where(self, keep: np.ndarray) -> _UserArrays:
        weights = None if self.weights is None else self.weights[keep]
        return _UserArrays(self.row_buckets, self.positions[keep], self.rows[keep], weights)


def _similarity_batches(
    batches: Iterator[pa.RecordBatch], stats: _ItemStats, settings: _ScoringSettings
) -> Iterator[pa.RecordBatch]:
    """Top-N neighbours of every anchor item of a task's buckets.

    A task holds every (bucket, user item array) row of its buckets; the anchors of a row are
    its items in the row's bucket (:func:`_item_bucket`), paired with every other item of the
    row, so each anchor's pairs are all in this task. Items with ``n_i < min_support`` cannot
    reach the support and are dropped first. Anchors are processed in chunks of about
    ``settings.pairs_per_chunk`` pair entries.
    """
    batches = [batch for batch in batches if batch.num_rows]
    if not batches:
        return
    arrays = _UserArrays.from_batches(batches, stats, settings.weighted)
    arrays = arrays.where(stats.n[arrays.positions] >= settings.min_support)
    row_lengths = np.bincount(arrays.rows, minlength=arrays.row_buckets.size)
    row_starts = np.cumsum(row_lengths) - row_lengths
    is_anchor = stats.buckets[arrays.positions] == arrays.row_buckets[arrays.rows]
    anchor_entries = np.flatnonzero(is_anchor)
    n_pairs = int(row_lengths[arrays.rows[anchor_entries]].sum())
    n_chunks = max(1, -(-n_pairs // settings.pairs_per_chunk))
    chunk_of_anchor = arrays.positions[anchor_entries] % n_chunks
    for chunk in range(n_chunks):
        anchors = anchor_entries[chunk_of_anchor == chunk]
        counts = row_lengths[arrays.rows[anchors]]
        pair_starts = np.cumsum(counts) - counts
        partners = np.repeat(row_starts[arrays.rows[anchors]] - pair_starts, counts) + np.arange(
            counts.sum()
        )
        anchor_items, anchor_local = np.unique(arrays.positions[anchors], return_inverse=True)
        others = partners != np.repeat(anchors, counts)
        products = None
        if arrays.weights is not None:
            anchor_weights = np.repeat(arrays.weights[anchors], counts)
            products = (anchor_weights * arrays.weights[partners])[others]
        pairs = _count_pairs(
            np.repeat(anchor_local, counts)[others],
            arrays.positions[partners[others]],
            products,
            n_anchors=anchor_items.size,
            n_items=stats.ids.size,
            settings=settings,
        )
        yield _score_and_rank(anchor_items[pairs.anchors], pairs, stats, settings)


@dataclass
class _PairCounts:
    """Distinct (anchor, partner) pairs with ``support >= min_support``, ordered by (anchor,
    partner); ``anchors`` index the chunk's anchor items, ``partners`` are item positions."""

    anchors: np.ndarray
    partners: np.ndarray
    support: np.ndarray  # int64 users with both items
    dots: np.ndarray | None  # float64 sum of weight products (weighted only)


def _count_pairs(
    anchors: np.ndarray,
    partners: np.ndarray,
    products: np.ndarray | None,
    n_anchors: int,
    n_items: int,
    settings: _ScoringSettings,
) -> _PairCounts:
    """Count pair entries (anchor indexes < ``n_anchors``, partner positions < ``n_items``).

    ``np.bincount`` over the dense anchors x items grid when it has at most
    ``settings.max_dense_grid`` cells (linear time), else ``np.unique`` (a sort); same result.
    """
    entry_keys = anchors * n_items + partners
    grid = n_anchors * n_items
    if grid <= settings.max_dense_grid:
        counts = np.bincount(entry_keys, minlength=grid)
        keys = np.flatnonzero(counts >= settings.min_support)
        support = counts[keys]
        dots = None
        if products is not None:
            dots = np.bincount(entry_keys, weights=products, minlength=grid)[keys]
    else:
        if products is None:
            keys, support = np.unique(entry_keys, return_counts=True)
            dots = None
        else:
            keys, inverse, support = np.unique(entry_keys, return_inverse=True, return_counts=True)
            dots = np.bincount(inverse, weights=products, minlength=keys.size)
        kept = support >= settings.min_support
        keys, support = keys[kept], support[kept]
        dots = None if dots is None else dots[kept]
    anchors, partners = np.divmod(keys, n_items)
    return _PairCounts(anchors, partners, support.astype(np.int64), dots)


def _score_and_rank(
    anchors: np.ndarray, pairs: _PairCounts, stats: _ItemStats, settings: _ScoringSettings
) -> pa.RecordBatch:
    """Score counted pairs (``anchors``: the pairs' anchor item positions) and keep each
    anchor's top N, as an Arrow batch of item ids.

    Scores use the same floating-point operations, in the same order, as the Spark expressions
    of the metric definitions, so they equal a Spark reference bit for bit (binary counts).
    """
    partners, support = pairs.partners, pairs.support
    n_a, n_p = stats.n[anchors], stats.n[partners]
    if pairs.dots is not None:
        score = pairs.dots / np.sqrt(stats.norm2[anchors] * stats.norm2[partners])
    elif settings.metric == "cosine":
        score = support / np.sqrt((n_a * n_p).astype(np.float64))
    elif settings.metric == "jaccard":
        score = support / (n_a + n_p - support)
    else:
        score = support.astype(np.float64) * float(stats.n_users) / (n_a * n_p).astype(np.float64)
    top = _top_n_per_anchor(anchors, score, settings.top_n)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(stats.ids[anchors[top]], type=pa.int64()),
            pa.array(stats.ids[partners[top]], type=pa.int64()),
            pa.array(score[top], type=pa.float64()),
            pa.array(support[top], type=pa.int64()),
        ],
        names=[_ANCHOR, NEIGHBOR_COL, "score", "support"],
    )


def _top_n_per_anchor(anchors: np.ndarray, score: np.ndarray, top_n: int) -> np.ndarray:
    """Indices of each anchor's ``top_n`` entries by score descending; entries come ordered by
    (anchor, partner), so a stable sort on score keeps ties in partner order."""
    by_score = np.argsort(-score, kind="stable")
    score_rank = np.empty_like(by_score)
    score_rank[by_score] = np.arange(by_score.size)
    order = np.argsort(anchors * by_score.size + score_rank)
    sorted_anchors = anchors[order]
    is_first = np.ones(order.size, dtype=bool)
    is_first[1:] = sorted_anchors[1:] != sorted_anchors[:-1]
    group_start = np.maximum.accumulate(np.where(is_first, np.arange(order.size), 0))
    return order[np.arange(order.size) - group_start < top_n]


class ItemSimilarityModel:
    """A similarity table and item-based CF recommendations from it.

    ``similarities``: (item_col, :data:`NEIGHBOR_COL`, ``score`` double, ``support`` long), e.g.
    from :meth:`ItemSimilarity.fit`, from :func:`factor_similarity`, or read back from a table.
    """

    def __init__(
        self, similarities: DataFrame, user_col: str = "user_idx", item_col: str = "item_idx"
    ) -> None:
        _require_columns(similarities, [item_col, NEIGHBOR_COL, "score"], "similarities")
        self.similarities = similarities
        self.user_col = user_col
        self.item_col = item_col

    def recommend(
        self,
        interactions: DataFrame,
        k: int,
        exclude_seen: bool = True,
        normalize: bool = False,
        weight_col: str | None = None,
    ) -> DataFrame:
        """Top ``k`` items per user: (user_col, item_col, ``score`` double, ``rank`` int 1..k,
        ``because_item``).

        ``interactions`` (user_col, item_col[, weight_col]) are the users' histories; repeated
        (user, item) rows count once, or with summed weights when ``weight_col`` is given
        (``None``: every history item weighs 1).

        ``score(u, j) = sum over history items i of sim(i, j) * w_ui``, where ``sim(i, j)`` is
        j's score among i's neighbours in ``similarities`` (i's top-N list, so j is a candidate
        only if it is among the neighbours of some history item). ``normalize=True`` divides by
        ``sum of |sim(i, j)|`` over the same items (a weighted average of the history weights,
        which favours items backed by a single strong neighbour); the default ``False`` keeps the
        plain sum, which rewards items similar to many history items and ranks better for top-N.

        With ``exclude_seen`` (default) items in the user's history are never recommended.
        Ranking: score descending, ties by item id ascending. ``because_item`` is the history item
        with the largest contribution ``sim(i, j) * w_ui`` (ties: smallest id), for "because you
        liked ...". Users with no candidate get no rows. A null weight counts 0. Scored by
        :mod:`recspark.recommenders.sparse_topk`: ``similarities`` is collected to the driver and
        broadcast (``items x top_n x 12`` bytes).
        """
        _require_positive_int(k, "k")
        columns = [self.user_col, self.item_col] + ([weight_col] if weight_col else [])
        _require_columns(interactions, columns, "interactions")
        user, item = F.col(self.user_col), F.col(self.item_col)
        present = interactions.where(user.isNotNull() & item.isNotNull())
        weight = F.sum(F.col(weight_col).cast("double")) if weight_col else F.lit(1.0)
        history = present.groupBy(self.user_col, self.item_col).agg(F.coalesce(weight, F.lit(0.0)).alias("_w"))
        queries = weighted_queries(history, self.user_col, self.item_col, "_w").withColumn(
            EXCLUDE_COL, F.col(KEYS_COL) if exclude_seen else F.lit(None).cast("array<long>"))
        rows = collect_sparse_rows(self.similarities, self.item_col, NEIGHBOR_COL, "score")
        user_type = interactions.schema[self.user_col].dataType
        item_type, because_type = (self.similarities.schema[c].dataType for c in (NEIGHBOR_COL, self.item_col))
        return top_n_weighted_sums(queries, rows, k, normalize).select(
            F.col(QUERY_COL).cast(user_type).alias(self.user_col), F.col("item").cast(item_type).alias(self.item_col),
            "score", "rank", F.col("because").cast(because_type).alias("because_item"),
        )


def factor_similarity(
    item_factors: DataFrame,
    top_n: int,
    item_col: str = "item_idx",
    factors_col: str = "features",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> DataFrame:
    """Exact cosine neighbours from ALS item factors, as a similarity table.

    Input: ``item_factors`` (item_col, factors_col) with unique ids; factors as an array of
    numbers or an ml Vector (for an ALSModel: ``model.itemFactors.withColumnRenamed("id",
    "item_idx")``). Output: (item_col, :data:`NEIGHBOR_COL`, ``score`` double, ``support`` long,
    always null: factors have no co-occurrence count), ``top_n`` neighbours per item, ties by
    neighbour id ascending; pass it to :class:`ItemSimilarityModel` to recommend from it.

    A thin wrapper over :func:`recspark.recommenders.topk.top_k_similar_items` (blocked float32
    matrix products on the executors): scores carry float32 precision.
    """
    neighbours = top_k_similar_items(
        item_factors,
        top_n,
        metric="cosine",
        item_col=item_col,
        factors_col=factors_col,
        similar_item_col=NEIGHBOR_COL,
        block_size=block_size,
    )
    return neighbours.select(
        item_col,
        NEIGHBOR_COL,
        F.col("score").cast("double").alias("score"),
        F.lit(None).cast("long").alias("support"),
    )


# The ``method`` partitions of the item_similarity table.
COOCCURRENCE_METHOD = "cooccurrence"
FACTOR_SIMILARITY_METHOD = "als_factors"


def similarity_estimator(settings) -> ItemSimilarity:
    """The co-occurrence estimator of the ``similarity`` settings (metric, min_support, top_n,
    max_items_per_user, seed)."""
    return ItemSimilarity(
        metric=settings.metric, min_support=settings.min_support, top_n=settings.top_n,
        max_items_per_user=settings.max_items_per_user, seed=settings.seed,
    )
