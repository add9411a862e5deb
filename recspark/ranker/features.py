"""Per-(user, item) features of the union of candidate sources, for the learned ranker.

One row per distinct (user_idx, item_idx) of the candidates frame, every feature a double:

* per source ``s`` of ``sources``: ``score_<s>`` (the source's score, 0 when it did not propose
  the item), ``rank_<s>`` (its rank, ``n + 1`` when it did not) and ``in_<s>`` (1 or 0);
* ``n_sources``: how many of the sources proposed the item;
* ``item_popularity``: distinct users of the item in the history (0 for an item without any);
* ``item_recency_days``: days from the item's last history event to ``as_of``
  (:data:`NO_HISTORY_DAYS` for an item without any);
* ``user_activity``: distinct history items of the user (0 for a user without any);
* with ``item_embeddings``: ``content_similarity``, the cosine of the item's embedding and the
  user's profile (mean embedding of the history items, :func:`recspark.content.recommend.user_profiles`
  without recency weighting); 0 when either is missing;
* with ``item_similarity``: ``cooccurrence_score`` / ``cooccurrence_support`` (sums of ``score``
  and ``support`` over the user's history items that list the item as a neighbour) and
  ``cooccurrence_links`` (how many history items do); 0 without any link;
* with ``user_factors`` and ``item_factors``: ``als_dot``, the dot product of the factors
  (0 when either side has none).

:func:`feature_columns` declares the names in their fixed order; :func:`ranker_features`
returns ``user_idx``, ``item_idx`` and exactly those columns. The history is the one the
candidates were built from (seen items); it must not contain test rows, and a history with a
``split`` column holding ``test`` is refused.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recspark.content.recommend import embedding_table, user_profiles
from recspark.recommenders.sparse_topk import known_positions, list_elements

SECONDS_PER_DAY = 86_400.0
# item_recency_days of an item without history events (about 100 years).
NO_HISTORY_DAYS = 36_500.0
KEYS = ["user_idx", "item_idx"]
CONTENT_COLUMNS = ["content_similarity"]
COOCCURRENCE_COLUMNS = ["cooccurrence_score", "cooccurrence_support", "cooccurrence_links"]
ALS_COLUMNS = ["als_dot"]
BASE_COLUMNS = ["n_sources", "item_popularity", "item_recency_days", "user_activity"]
COSINE_CHUNK_PAIRS = 16_384  # pairs per numpy dot in content_similarity_feature (x dimension x 8 bytes)


@dataclass(frozen=True)
class FeatureSet:
    """Which features a feature frame has: the candidate ``sources`` (in order), the candidate
    list length ``n`` (missing rank = n + 1) and the optional groups."""

    sources: tuple[str, ...]
    n: int
    content: bool = False
    cooccurrence: bool = False
    als: bool = False

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("sources must name at least one candidate source")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources must be distinct, got {list(self.sources)}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive integer, got {self.n!r}")

    @property
    def columns(self) -> list[str]:
        """The feature column names, in their fixed order."""
        per_source = [f"{kind}_{s}" for s in self.sources for kind in ("score", "rank", "in")]
        return (
            per_source
            + BASE_COLUMNS
            + (CONTENT_COLUMNS if self.content else [])
            + (COOCCURRENCE_COLUMNS if self.cooccurrence else [])
            + (ALS_COLUMNS if self.als else [])
        )


def _require(frame: DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; it has {frame.columns}")


def require_no_test_rows(frame: DataFrame, name: str) -> None:
    """Raise ValueError when ``frame`` has a ``split`` column with any value but train or
    validation (the ranker's inputs must never carry test rows)."""
    if "split" not in frame.columns:
        return
    leaked = frame.where(~F.col("split").isin("train", "validation") | F.col("split").isNull()).limit(1).count()
    if leaked:
        raise ValueError(f"{name} contains rows of split other than train/validation (test rows must never reach the ranker)")


def source_features(candidates: DataFrame, sources: tuple[str, ...], n: int) -> DataFrame:
    """Pivot ``candidates`` (user_idx, item_idx, source, score, rank) to one row per pair with
    ``score_<s>``, ``rank_<s>``, ``in_<s>`` per source and ``n_sources``; rows of other sources
    are ignored, a pair listed twice by a source keeps its best rank and highest score."""
    _require(candidates, KEYS + ["source", "score", "rank"], "candidates")
    known = candidates.where(F.col("source").isin(list(sources)))
    aggregates = []
    for s in sources:
        of_source = F.col("source") == s
        aggregates += [
            F.max(F.when(of_source, F.col("score").cast("double"))).alias(f"score_{s}"),
            F.min(F.when(of_source, F.col("rank").cast("double"))).alias(f"rank_{s}"),
        ]
    pivoted = known.groupBy(*KEYS).agg(*aggregates)
    columns = [F.col("user_idx").cast("int"), F.col("item_idx").cast("int")]
    flags = []
    for s in sources:
        present = F.col(f"rank_{s}").isNotNull()
        flags.append(present.cast("double"))
        columns += [
            F.coalesce(F.col(f"score_{s}"), F.lit(0.0)).alias(f"score_{s}"),
            F.coalesce(F.col(f"rank_{s}"), F.lit(float(n + 1))).alias(f"rank_{s}"),
            present.cast("double").alias(f"in_{s}"),
        ]
    n_sources = flags[0]
    for flag in flags[1:]:
        n_sources = n_sources + flag
    return pivoted.select(*columns, n_sources.alias("n_sources"))


def item_popularity_features(history: DataFrame, as_of: dt.datetime) -> DataFrame:
    """(item_idx, ``item_popularity`` distinct users, ``item_recency_days`` days from the item's
    last event to ``as_of``) per item of ``history`` (user_idx, item_idx, event_ts)."""
    as_of_seconds = _epoch_seconds(as_of)
    return history.groupBy("item_idx").agg(
        F.countDistinct("user_idx").cast("double").alias("item_popularity"),
        ((F.lit(as_of_seconds) - F.max(F.col("event_ts").cast("double"))) / SECONDS_PER_DAY).alias("item_recency_days"),
    )


def user_activity_features(history: DataFrame) -> DataFrame:
    """(user_idx, ``user_activity`` distinct history items) per user of ``history``."""
    return history.groupBy("user_idx").agg(F.countDistinct("item_idx").cast("double").alias("user_activity"))


def _dot(left: Column, right: Column) -> Column:
    return F.aggregate(F.zip_with(left, right, lambda a, b: a * b), F.lit(0.0), lambda acc, x: acc + x)


def content_similarity_feature(pairs: DataFrame, history: DataFrame, item_embeddings: DataFrame) -> DataFrame:
    """(user_idx, item_idx, ``content_similarity``) for ``pairs``: cosine of the item's
    embedding and the user's unweighted mean-embedding profile (0 when either vector is zero);
    pairs without both get no row.

    The item embeddings are broadcast once, L2-normalised (items x dimension x 4 bytes), and the
    pairs travel as one row per user (the user's candidate items and profile): shipping a profile
    and an embedding with every pair (768 floats a pair at 384 dimensions, 30M pairs at 5M
    interactions) was most of the ranker's feature cost. Each task dots
    :data:`COSINE_CHUNK_PAIRS` pairs at a time."""
    _require(item_embeddings, ["item_idx", "embedding"], "item_embeddings")
    item_ids, table = embedding_table(item_embeddings)
    profiles = user_profiles(history, item_embeddings, None, (item_ids, table)).select("user_idx", "profile")
    matrix = table.astype(np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    shared = pairs.sparkSession.sparkContext.broadcast(
        (item_ids, (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)))
    per_user = (
        pairs.groupBy("user_idx").agg(F.collect_list(F.col("item_idx").cast("long")).alias("_items"))
        .join(profiles, "user_idx")
    )

    def cosines(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, units = shared.value
        for batch in batches:
            parents, items = list_elements(batch.column("_items"))
            items = items.to_numpy(zero_copy_only=False)
            known, positions = known_positions(items, ids)
            parents, items = parents[known], items[known]
            profile = batch.column("profile").flatten().to_numpy(zero_copy_only=False).astype(np.float64)
            profile = profile.reshape(batch.num_rows, -1) if batch.num_rows else profile.reshape(0, 1)
            lengths = np.linalg.norm(profile, axis=1, keepdims=True)
            profile = (profile / np.where(lengths > 0, lengths, 1.0)).astype(np.float32)
            similarity = np.empty(items.size, dtype=np.float64)
            for start in range(0, items.size, COSINE_CHUNK_PAIRS):
                chunk = slice(start, start + COSINE_CHUNK_PAIRS)
                similarity[chunk] = np.einsum("ij,ij->i", units[positions[chunk]], profile[parents[chunk]])
            users = batch.column("user_idx").to_numpy(zero_copy_only=False)[parents]
            yield pa.RecordBatch.from_arrays(
                [pa.array(users, pa.int32()), pa.array(items, pa.int32()), pa.array(similarity, pa.float64())],
                names=["user_idx", "item_idx", "content_similarity"])

    return per_user.mapInArrow(cosines, "user_idx int, item_idx int, content_similarity double")


def cooccurrence_features(pairs: DataFrame, history: DataFrame, item_similarity: DataFrame) -> DataFrame:
    """(user_idx, item_idx, cooccurrence_score, cooccurrence_support, cooccurrence_links) for the
    ``pairs`` linked to the user's history by ``item_similarity`` (item_idx = a history item,
    neighbor_idx = the candidate, score, support)."""
    _require(item_similarity, ["item_idx", "neighbor_idx", "score", "support"], "item_similarity")
    history_items = history.select("user_idx", F.col("item_idx").alias("history_item")).distinct()
    links = item_similarity.select(
        F.col("item_idx").alias("history_item"), F.col("neighbor_idx").alias("item_idx"), "score", "support"
    )
    linked = history_items.join(links, "history_item").join(pairs, KEYS)
    return linked.groupBy(*KEYS).agg(
        F.sum(F.col("score").cast("double")).alias("cooccurrence_score"),
        F.sum(F.col("support").cast("double")).alias("cooccurrence_support"),
        F.count(F.lit(1)).cast("double").alias("cooccurrence_links"),
    )


def als_dot_feature(pairs: DataFrame, user_factors: DataFrame, item_factors: DataFrame) -> DataFrame:
    """(user_idx, item_idx, ``als_dot``) for ``pairs`` whose user and item both have factors
    (``user_factors``: user_idx, features; ``item_factors``: item_idx, features)."""
    _require(user_factors, ["user_idx", "features"], "user_factors")
    _require(item_factors, ["item_idx", "features"], "item_factors")
    users = user_factors.select("user_idx", F.col("features").cast("array<double>").alias("user_vector"))
    items = item_factors.select("item_idx", F.col("features").cast("array<double>").alias("item_vector"))
    joined = pairs.join(users, "user_idx").join(items, "item_idx")
    return joined.select(*KEYS, _dot(F.col("user_vector"), F.col("item_vector")).alias("als_dot"))


def _epoch_seconds(moment: dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def latest_event(history: DataFrame) -> dt.datetime:
    """The latest ``event_ts`` of ``history`` as an aware UTC datetime (the default ``as_of``)."""
    seconds = history.agg(F.max(F.col("event_ts").cast("double"))).first()[0]
    if seconds is None:
        raise ValueError("history is empty: pass as_of explicitly")
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def ranker_features(
    candidates: DataFrame,
    history: DataFrame,
    features: FeatureSet,
    as_of: dt.datetime | None = None,
    item_embeddings: DataFrame | None = None,
    item_similarity: DataFrame | None = None,
    user_factors: DataFrame | None = None,
    item_factors: DataFrame | None = None,
) -> DataFrame:
    """The feature frame: ``user_idx``, ``item_idx`` and ``features.columns`` (doubles), one row per
    distinct candidate pair; see the module docstring.

    Inputs: ``candidates`` (user_idx, item_idx, source, score, rank), ``history`` (user_idx,
    item_idx, event_ts; the rows the candidates treated as seen, never test rows), ``as_of``
    (recency reference; default: the latest history event). Each optional frame must be given
    exactly when ``features`` asks for its group (content: ``item_embeddings``; cooccurrence:
    ``item_similarity``; als: both factor frames); a mismatch raises ValueError.
    """
    _require(history, KEYS + ["event_ts"], "history")
    require_no_test_rows(history, "history")
    for wanted, frames, label in (
        (features.content, [item_embeddings], "item_embeddings (content)"),
        (features.cooccurrence, [item_similarity], "item_similarity (cooccurrence)"),
        (features.als, [user_factors, item_factors], "user_factors and item_factors (als)"),
    ):
        given = [f is not None for f in frames]
        if wanted != all(given) or any(given) != all(given):
            raise ValueError(f"feature set asks for {label}: {wanted}, but the frame(s) given: {given}")
    as_of = as_of if as_of is not None else latest_event(history)
    history = history.select(F.col("user_idx").cast("int"), F.col("item_idx").cast("int"), "event_ts")
    frame = source_features(candidates, features.sources, features.n)
    pairs = frame.select(*KEYS)
    frame = (
        frame.join(item_popularity_features(history, as_of), "item_idx", "left")
        .join(user_activity_features(history), "user_idx", "left")
    )
    optional = []
    if features.content:
        optional.append(content_similarity_feature(pairs, history, item_embeddings))
    if features.cooccurrence:
        optional.append(cooccurrence_features(pairs, history, item_similarity))
    if features.als:
        optional.append(als_dot_feature(pairs, user_factors, item_factors))
    for part in optional:
        frame = frame.join(part, KEYS, "left")
    fill = {c: 0.0 for c in features.columns} | {"item_recency_days": NO_HISTORY_DAYS}
    return frame.select(
        *KEYS, *[F.coalesce(F.col(c).cast("double"), F.lit(fill[c])).alias(c) for c in features.columns]
    )
