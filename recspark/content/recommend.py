"""Content-based recommendations with a popularity prior, for warm and cold users and items.

With ``center_embeddings`` (the default) the item embeddings are first centred: the catalogue's
mean embedding is subtracted and each vector re-normalised (:func:`centered_embeddings`).
Sentence-model embeddings share a large common direction, so the mean of a user's history items
points mostly along it and every profile ranks the same "average" items first; centring leaves
the directions that tell items apart. Measured on MovieLens latest-small's validation carve
(train minus 10%, never the test split): content NDCG@10 0.0509 -> 0.0606 for all users and
0.0070 -> 0.0176 on the cold-item cohort.

A user's profile is the recency-weighted mean of the embeddings of their history items
(weight ``0.5 ** (age_days / half_life_days)``, age measured from the user's latest event),
L2-normalised. An item's score for a user is

    w_u * cos(profile_u, embedding_i) + (1 - w_u) * popularity_i,   w_u = n_u / (n_u + s)

with ``n_u`` the user's history items, ``s`` the ``popularity_shrinkage`` and ``popularity_i``
the item's distinct-user count divided by the largest one. So a new user (n_u = 0) gets popular
items, a near-empty one mostly popular items nudged by content, and a heavy user content
neighbours.

A new item (no interactions) has no popularity of its own: it gets the similarity-weighted mean
popularity of its ``new_item_neighbours`` nearest items that have one
(:func:`estimate_new_item_popularity`; 0 turns this off and new items get 0). With 0 every
new item starts behind every popular one whatever its text says, and the prior pulled the
content source's cold-item cohort down (a small k-nearest-neighbour regression on the
embedding is how content-based cold start usually fills the missing interaction signal).
Measured on MovieLens latest-small's validation carve: BENCHMARKS.md "New items' popularity".

With ``embedding_dimensions`` (64 by default) the embeddings, centred first, are projected on
their top principal directions and re-normalised (:func:`projected_embeddings`) before the
profiles, the new items' neighbours and the scores use them. The scoring below is exact, so its
cost is users x items x dimensions and grows with the square of the data (users and items both
grow with it): at 20M synthetic interactions (200,000 x 100,000) the 384-dimension scores were
the content source's 207 s, 8.3x its 5M time for 4x the data. Measured on MovieLens
latest-small's validation carve (content NDCG@10, all users / cold items / cold users; 610
users, so a standard error of about 0.008 on the first and more on the cohorts): all 384
dimensions 0.0605 / 0.0289 / 0.0562, 128: 0.0570 / 0.0318 / 0.0562, 64: 0.0559 / 0.0241 /
0.0554, 32: 0.0574 / 0.0332 / 0.0614; on 5M synthetic interactions (50,000 users) the warm
lists lose 0.0025 (0.0266 -> 0.0241) and the cohorts do not move (BENCHMARKS.md "The content
source's dimensions"). 64 costs that for a sixth of the multiply-adds.

The blend is exact over the whole catalogue: user vectors
``[w_u * profile_u, 1 - w_u]`` and item vectors ``[embedding_i, popularity_i]`` go through the
blocked top-K scorer (:func:`recspark.recommenders.topk.top_k_by_dot_product`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.evaluation.sampling import require_user_cap
from recspark.io.session import frame_from_rows
from recspark.recommenders.sparse_topk import known_positions, list_elements
from recspark.recommenders.topk import top_k_by_dot_product

SECONDS_PER_DAY = 86_400.0
_PROFILE_SCHEMA = "user_idx int, profile array<float>, n_items int"


@dataclass
class ContentSettings:
    """Content-based and cold-start candidates (the ``content`` source) and their cold-cohort
    evaluation (the ``content`` config section); see :mod:`recspark.content.cold_start`."""

    profile_half_life_days: float | None = 365.0  # recency weight of history items; null: plain mean
    center_embeddings: bool = True  # subtract the catalogue's mean embedding first (see the module doc)
    # Blend weight of content vs popularity: n / (n + popularity_shrinkage) for a user with n
    # history items (0: pure content for every user with history; new users get popularity).
    popularity_shrinkage: float = 10.0
    # A new item's popularity: the similarity-weighted mean of its nearest items' (0: new items get 0)
    new_item_neighbours: int = 1
    # Embedding dimensions kept (the top principal directions of the centred catalogue; null:
    # all 384). The exact users x items scoring costs users x items x dimensions multiply-adds,
    # so it grows with the square of the data; see the module docstring.
    embedding_dimensions: int | None = 64
    cold_item_ratio: float = 0.1  # share of items treated as new in the cold-item cohort (0: skip)
    cold_user_ratio: float = 0.1  # share of users reduced to a near-empty history (0: skip)
    cold_user_history: int = 2  # history items a cold user keeps (their earliest)
    cold_seed: int = 42
    # Users each cohort is scored on at most (a seeded sample; null: all). The cohorts are a
    # diagnostic: 2,000 users put a standard error of ~0.005 on their NDCG@10, and capping them
    # keeps the cost linear in the catalogue instead of users x items (at 1M synthetic
    # interactions the uncapped cohorts took 40 % of the evaluate stage).
    cold_max_users: int | None = 2000

    def __post_init__(self) -> None:
        if self.profile_half_life_days is not None and not self.profile_half_life_days > 0:
            raise ValueError(f"profile_half_life_days: must be > 0 or null, got {self.profile_half_life_days}")
        if self.popularity_shrinkage < 0:
            raise ValueError(f"popularity_shrinkage: must be >= 0, got {self.popularity_shrinkage}")
        for name in ("cold_item_ratio", "cold_user_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.cold_user_history < 0:
            raise ValueError(f"cold_user_history: must be >= 0, got {self.cold_user_history}")
        if self.new_item_neighbours < 0:
            raise ValueError(f"new_item_neighbours: must be >= 0, got {self.new_item_neighbours}")
        _require_dimensions(self.embedding_dimensions)
        require_user_cap(self.cold_max_users, "cold_max_users")


def _require_dimensions(value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"embedding_dimensions: must be a positive integer or null, got {value!r}")


def projected_embeddings(embeddings: DataFrame, dimensions: int | None) -> DataFrame:
    """(item_idx, embedding) of ``embeddings`` (item_idx, embedding) projected on their top
    ``dimensions`` principal directions (eigenvectors of the second-moment matrix ``E^T E``,
    largest eigenvalues first; for centred embeddings the principal components) and
    L2-normalised (a zero vector stays zero); unchanged when ``dimensions`` is None or not below
    the embedding dimension. Computed on the driver (``dimension^2`` doubles besides the
    collected table) and returned materialised."""
    _require_dimensions(dimensions)
    item_ids, table = embedding_table(embeddings)
    if dimensions is None or table.ndim != 2 or dimensions >= table.shape[1]:
        return embeddings.select("item_idx", "embedding")
    matrix = table.astype(np.float64)
    _, vectors = np.linalg.eigh(matrix.T @ matrix)  # ascending eigenvalues of the second moments
    projected = matrix @ vectors[:, ::-1][:, :dimensions]
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    projected = (projected / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    rows = list(zip(item_ids.astype(np.int32).tolist(), projected.tolist()))
    return frame_from_rows(embeddings.sparkSession, rows, "item_idx int, embedding array<float>", 1 + dimensions)


def embedding_table(embeddings: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(item ids ascending as int64, float32 items x dimension embeddings in that order) of
    ``embeddings`` (item_idx, embedding), collected to the driver."""
    vectors = embeddings.select(F.col("item_idx").cast("long").alias("item_idx"), "embedding").toPandas()
    order = np.argsort(vectors["item_idx"].to_numpy(), kind="stable")
    item_ids = vectors["item_idx"].to_numpy()[order]
    matrix = np.stack(vectors["embedding"].to_numpy()[order]).astype(np.float32) if len(order) else np.zeros((0, 0))
    return item_ids, matrix


def user_profiles(history: DataFrame, embeddings: DataFrame, half_life_days: float | None,
                  table: tuple[np.ndarray, np.ndarray] | None = None) -> DataFrame:
    """(user_idx, ``profile`` array<float> unit length, ``n_items`` int) per user of ``history``.

    Inputs: ``history`` (user_idx, item_idx, event_ts timestamp; one row per interaction),
    ``embeddings`` (item_idx, embedding). ``n_items`` counts the user's distinct history items;
    the profile averages those with an embedding (a user with none gets no row).
    ``half_life_days`` None: a plain mean. The embeddings are collected to the driver and
    broadcast (items x dimension x 4 bytes: 154 MB for 100k items of 384 dimensions); each task
    averages a batch of users' histories with one sparse (users x items) x dense product, instead
    of shipping an embedding per history pair through a shuffle. ``table``: the
    :func:`embedding_table` of ``embeddings`` when the caller has collected it already.
    """
    _require(history, ["user_idx", "item_idx", "event_ts"], "history")
    _require(embeddings, ["item_idx", "embedding"], "embeddings")
    if half_life_days is not None and not half_life_days > 0:
        raise ValueError(f"profile half life must be positive or None, got {half_life_days!r}")
    pairs = history.groupBy("user_idx", "item_idx").agg(F.max("event_ts").alias("event_ts"))
    latest = Window.partitionBy("user_idx")
    age_days = (
        F.max(F.col("event_ts").cast("double")).over(latest) - F.col("event_ts").cast("double")
    ) / SECONDS_PER_DAY
    weight = F.lit(1.0) if half_life_days is None else F.pow(F.lit(0.5), age_days / F.lit(half_life_days))
    entries = F.struct(F.col("item_idx").cast("long").alias("item"), weight.cast("double").alias("weight"))
    histories = pairs.select("user_idx", entries.alias("_e")).groupBy("user_idx").agg(
        F.collect_list("_e").alias("_h"), F.count(F.lit(1)).cast("int").alias("n_items"))
    shared = history.sparkSession.sparkContext.broadcast(table if table is not None else embedding_table(embeddings))

    def mean_profiles(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, table = shared.value
        for batch in batches:
            parents, flat = list_elements(batch.column("_h"))
            items = flat.field("item").to_numpy(zero_copy_only=False)
            weights = flat.field("weight").to_numpy(zero_copy_only=False)
            known, positions = known_positions(items, ids)
            rows = sp.csr_matrix((weights[known], (parents[known], positions)), shape=(batch.num_rows, ids.size))
            totals = np.asarray(rows.sum(axis=1)).ravel()
            kept = np.flatnonzero(np.bincount(parents[known], minlength=batch.num_rows) > 0)
            profiles = (rows[kept] @ table) / totals[kept, None]
            norms = np.linalg.norm(profiles, axis=1, keepdims=True)
            profiles = (profiles / np.where(norms > 0, norms, 1.0)).astype(np.float32)
            offsets = np.arange(kept.size + 1, dtype=np.int32) * profiles.shape[1]
            yield pa.RecordBatch.from_arrays(
                [batch.column("user_idx").take(pa.array(kept)).cast(pa.int32()),
                 pa.ListArray.from_arrays(pa.array(offsets), pa.array(profiles.ravel())),
                 batch.column("n_items").take(pa.array(kept))],
                names=["user_idx", "profile", "n_items"],
            )

    return histories.mapInArrow(mean_profiles, _PROFILE_SCHEMA)


def centered_embeddings(embeddings: DataFrame) -> DataFrame:
    """``embeddings`` (item_idx, embedding array<float>, ...) with the mean embedding over its rows
    subtracted from every vector and the result L2-normalised (a vector equal to the mean
    becomes all zeros); other columns unchanged. The mean is computed once, on the driver side
    as ``dimension`` doubles."""
    _require(embeddings, ["embedding"], "embeddings")
    means = (
        embeddings.select(F.posexplode("embedding").alias("pos", "value"))
        .groupBy("pos").agg(F.avg(F.col("value").cast("double")).alias("mean"))
        .orderBy("pos").collect()
    )
    if not means:
        return embeddings
    mean = F.array(*[F.lit(float(row["mean"])) for row in means])
    difference = F.zip_with(F.col("embedding"), mean, lambda x, m: x.cast("double") - m)
    squared = F.aggregate(F.col("_centered"), F.lit(0.0), lambda acc, x: acc + x * x)
    return (
        embeddings.withColumn("_centered", difference)
        .withColumn("_norm", F.sqrt(squared))
        .withColumn("embedding", F.transform(
            F.col("_centered"),
            lambda x: F.when(F.col("_norm") > 0, x / F.col("_norm")).otherwise(F.lit(0.0)).cast("float"),
        ))
        .drop("_centered", "_norm")
    )


def estimate_new_item_popularity(items: DataFrame, neighbours: int) -> DataFrame:
    """``items`` (item_idx, embedding unit length, ``popularity`` null for items without
    interactions) with each null popularity replaced by the mean popularity of the item's
    ``neighbours`` most cosine-similar items that have one, weighted by max(similarity, 0)
    (0 when no neighbour is similar; null stays null when no item has a popularity or
    ``neighbours`` is 0). Exact: the new items are scored against every known one by the blocked
    top-K scorer (new items x known items x dimension multiply-adds)."""
    _require(items, ["item_idx", "embedding", "popularity"], "items")
    if neighbours == 0:
        return items
    known = items.where(F.col("popularity").isNotNull())
    new = items.where(F.col("popularity").isNull()).select(F.col("item_idx").alias("new_idx"),
                                                           F.col("embedding").alias("features"))
    nearest = top_k_by_dot_product(new, known.select("item_idx", F.col("embedding").alias("features")), neighbours,
                                   user_col="new_idx")
    weight = F.greatest(F.col("score").cast("double"), F.lit(0.0))
    estimates = (
        nearest.join(known.select("item_idx", "popularity"), "item_idx")
        .groupBy("new_idx")
        .agg(F.sum(weight * F.col("popularity")).alias("_weighted"), F.sum(weight).alias("_weights"))
        .select(F.col("new_idx").alias("item_idx"),
                F.when(F.col("_weights") > 0, F.col("_weighted") / F.col("_weights")).otherwise(F.lit(0.0))
                .alias("_estimate"))
    )
    return (items.join(estimates, "item_idx", "left")
            .withColumn("popularity", F.coalesce(F.col("popularity"), F.col("_estimate")))
            .drop("_estimate"))


class ContentRecommender:
    """Estimator (pyspark.ml style) for :class:`ContentModel`; see the module docstring.

    Params: ``k`` recommendations per user; ``popularity_shrinkage`` s >= 0;
    ``half_life_days`` of the profile recency weight (None: plain mean); ``center_embeddings``,
    ``new_item_neighbours`` and ``embedding_dimensions`` (see the module docstring).
    """

    def __init__(self, k: int = 10, popularity_shrinkage: float = 10.0, half_life_days: float | None = 365.0,
                 center_embeddings: bool = True, new_item_neighbours: int = 1, embedding_dimensions: int | None = None):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if popularity_shrinkage < 0:
            raise ValueError(f"popularity_shrinkage must be >= 0, got {popularity_shrinkage!r}")
        self.k = k
        self.popularity_shrinkage = popularity_shrinkage
        self.half_life_days = half_life_days
        self.center_embeddings = center_embeddings
        if new_item_neighbours < 0:
            raise ValueError(f"new_item_neighbours must be >= 0, got {new_item_neighbours!r}")
        self.new_item_neighbours = new_item_neighbours
        _require_dimensions(embedding_dimensions)
        self.embedding_dimensions = embedding_dimensions

    @classmethod
    def from_settings(cls, k: int, settings: ContentSettings) -> ContentRecommender:
        """The recommender the ``content`` config section describes, ``k`` items per user."""
        return cls(k, settings.popularity_shrinkage, settings.profile_half_life_days, settings.center_embeddings,
                   settings.new_item_neighbours, settings.embedding_dimensions)

    def fit(self, history: DataFrame, embeddings: DataFrame) -> ContentModel:
        """``history`` (user_idx, item_idx, event_ts), ``embeddings`` (item_idx, embedding
        array<float>, unit length): profiles and normalised item popularity, estimated for new
        items (over the centred embeddings with ``center_embeddings``)."""
        if self.center_embeddings:
            embeddings = centered_embeddings(embeddings).localCheckpoint()
        if self.embedding_dimensions is not None:
            embeddings = projected_embeddings(embeddings, self.embedding_dimensions)
        profiles = user_profiles(history, embeddings, self.half_life_days)
        # materialised: the top count, the new items' neighbours and the final join all read it
        popularity = history.groupBy("item_idx").agg(F.countDistinct("user_idx").alias("users")).localCheckpoint()
        top = popularity.agg(F.max("users")).first()[0] or 1
        items = embeddings.select(F.col("item_idx").cast("int"), "embedding").join(
            popularity.select("item_idx", (F.col("users") / F.lit(float(top))).alias("popularity")),
            "item_idx", "left",
        )
        items = estimate_new_item_popularity(items, self.new_item_neighbours).localCheckpoint()
        return ContentModel(profiles, items, self.k, self.popularity_shrinkage)


class ContentModel:
    """Fitted content recommender.

    Attributes: ``profiles`` (user_idx, profile, n_items), ``items`` (item_idx, embedding,
    ``popularity`` in [0, 1], estimated for items without interactions, null when not
    estimated), ``k``, ``popularity_shrinkage``.
    """

    def __init__(self, profiles: DataFrame, items: DataFrame, k: int, popularity_shrinkage: float):
        self.profiles = profiles
        self.items = items
        self.k = k
        self.popularity_shrinkage = popularity_shrinkage

    def recommend(self, users: DataFrame, seen: DataFrame | None = None, items: DataFrame | None = None) -> DataFrame:
        """Top ``k`` items per distinct user of ``users`` (user_idx): (user_idx, item_idx,
        ``score`` float, ``rank`` 1..k). ``seen`` (user_idx, item_idx) pairs are excluded;
        ``items`` (item_idx), optional, restricts the candidates (e.g. to new items).
        Users without a profile get the most popular items. No item embeddings (a catalogue
        without any item text): no rows."""
        _require(users, ["user_idx"], "users")
        first = self.items.select("embedding").first()
        if first is None:
            return users.sparkSession.createDataFrame([], "user_idx int, item_idx int, score float, rank int")
        dimension = len(first["embedding"])
        n = F.coalesce(F.col("n_items"), F.lit(0)).cast("double")
        weight = F.when(n == 0, F.lit(0.0)).otherwise(n / (n + F.lit(float(self.popularity_shrinkage))))
        zeros = F.array_repeat(F.lit(0.0).cast("float"), dimension)
        user_vectors = (
            users.select(F.col("user_idx").cast("int")).distinct()
            .join(self.profiles, "user_idx", "left")
            .withColumn("_w", weight)
            .select(
                "user_idx",
                F.concat(
                    F.transform(F.coalesce("profile", zeros), lambda x: (x * F.col("_w")).cast("float")),
                    F.array((F.lit(1.0) - F.col("_w")).cast("float")),
                ).alias("features"),
            )
        )
        candidates = self.items
        if items is not None:
            _require(items, ["item_idx"], "items")
            candidates = candidates.join(items.select(F.col("item_idx").cast("int")).distinct(), "item_idx")
        item_vectors = candidates.select(
            "item_idx",
            F.concat("embedding", F.array(F.coalesce("popularity", F.lit(0.0)).cast("float"))).alias("features"),
        )
        return top_k_by_dot_product(user_vectors, item_vectors, self.k, seen=seen)


def _require(df: DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {df.columns}")
