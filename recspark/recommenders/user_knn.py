"""User-based collaborative filtering: user-user neighbourhoods from co-rated items, and
"users like you" recommendations.

Similarity of users u and v, with ``c_uv`` their common items and ``n_u`` the items of u:
``cosine = c_uv / sqrt(n_u * n_v)``, ``jaccard = c_uv / (n_u + n_v - c_uv)``. Pairs with
``c_uv < min_support`` are dropped, and each user keeps its ``top_k`` most similar users (ties by
neighbour id ascending). The pairs are counted by :class:`ItemSimilarity` with the roles of
users and items swapped (each item's users are paired inside a numpy task; see
:mod:`recspark.recommenders.item_similarity`), so the work is ``sum over items of n_i^2`` pair
entries, never a users x users cross join.

Two seeded down-samplings bound that work, both keeping the elements with the smallest
``xxhash64(seed, user, item)`` (ties by id), so they are the same on every run and partitioning:
``max_items_per_user`` caps each user's items before anything is counted (heavy users, as
item-item does), and ``max_users_per_item`` caps each popular item's users inside the pair
counting (the quadratic term). ``None`` disables either; every count is taken on the sample.

Both default to 500. Uncapped, the pair work grows faster than the data: on the generator's
power-law catalogue ``sum n_i^2`` is 1.9e8 at 1M interactions and 3.5e9 at 5M (18x for 5x the
data; the 5M candidates stage was stopped after 8.5 minutes in it, unfinished); capped at 500
users per item it is 6.5e7 and 3.0e8 (4.6x; user_knn 67 s at 5M). MovieLens latest-small's most popular item has 329 users, so its lists
do not change.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.recommenders.item_similarity import NEIGHBOR_COL, ItemSimilarity
from recspark.recommenders.sparse_topk import (
    EXCLUDE_COL,
    QUERY_COL,
    collect_sparse_rows,
    top_n_weighted_sums,
    weighted_queries,
)

USER_COL, ITEM_COL = "user_idx", "item_idx"
NEIGHBOR_USER_COL = "neighbor_user_idx"
BECAUSE_COL = "because_user_idx"
METRICS = ("cosine", "jaccard")


def _require_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _require_columns(frame: DataFrame, columns: list[str], frame_name: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{frame_name} lacks column(s) {missing}; it has {frame.columns}")


@dataclass
class UserKnnSettings:
    """User-KNN hyper-parameters (see the module docstring).

    metric: ``cosine`` or ``jaccard``. min_support: fewest common items for a neighbour pair.
    top_k: neighbours kept per user. max_items_per_user / max_users_per_item: seeded sample caps
    (>= 2, or ``None`` for exact). seed: the sampling seed.

    Defaults: cosine with ``top_k=100`` had the best NDCG@10 on a validation carve of MovieLens
    latest-small's train split (grid cosine/jaccard x 20/50/100/200; bench/bench_ease_user_knn.py).
    """

    metric: str = "cosine"
    min_support: int = 2
    top_k: int = 100
    max_items_per_user: int | None = 500
    max_users_per_item: int | None = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        _require_int(self.min_support, "min_support", 1)
        _require_int(self.top_k, "top_k", 1)
        for name in ("max_items_per_user", "max_users_per_item"):
            if getattr(self, name) is not None:
                _require_int(getattr(self, name), name, 2)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")


class UserKnn:
    """Estimator (pyspark.ml style) of :class:`UserKnnModel`."""

    def __init__(self, settings: UserKnnSettings | None = None) -> None:
        self.settings = settings or UserKnnSettings()

    def fit(self, interactions: DataFrame) -> UserKnnModel:
        """Neighbourhoods of the users of ``interactions`` (``user_idx``, ``item_idx`` integer
        ids; repeated pairs count once, null ids are dropped). Lazy: the neighbour table is
        computed when used, apart from ItemSimilarity's small per-user count job."""
        _require_columns(interactions, [USER_COL, ITEM_COL], "interactions")
        settings = self.settings
        pairs = (
            interactions.where(F.col(USER_COL).isNotNull() & F.col(ITEM_COL).isNotNull())
            .select(USER_COL, ITEM_COL)
            .distinct()
        )
        sampled = pairs
        if settings.max_items_per_user is not None:
            by_hash = Window.partitionBy(USER_COL).orderBy(
                F.xxhash64(F.lit(settings.seed), F.col(USER_COL), F.col(ITEM_COL)), ITEM_COL
            )
            sampled = (
                pairs.withColumn("_position", F.row_number().over(by_hash))
                .where(F.col("_position") <= settings.max_items_per_user)
                .drop("_position")
            )
        similarity = ItemSimilarity(
            metric=settings.metric,
            min_support=settings.min_support,
            top_n=settings.top_k,
            max_items_per_user=settings.max_users_per_item,
            seed=settings.seed,
            user_col=ITEM_COL,  # roles swapped: items are the "users" whose lists are paired
            item_col=USER_COL,
        ).fit(sampled)
        neighbours = similarity.similarities.withColumnRenamed(NEIGHBOR_COL, NEIGHBOR_USER_COL)
        return UserKnnModel(neighbours, pairs)


class UserKnnModel:
    """Fitted user-KNN.

    ``neighbours``: (``user_idx``, :data:`NEIGHBOR_USER_COL`, ``score`` double, ``support``
    long), at most ``top_k`` rows per user; ``interactions``: the distinct fitted (``user_idx``,
    ``item_idx``) pairs, whose items the neighbours recommend (whole histories, not sampled).
    """

    def __init__(self, neighbours: DataFrame, interactions: DataFrame) -> None:
        _require_columns(neighbours, [USER_COL, NEIGHBOR_USER_COL, "score"], "neighbours")
        _require_columns(interactions, [USER_COL, ITEM_COL], "interactions")
        self.neighbours = neighbours
        self.interactions = interactions

    def recommend(self, users: DataFrame, n: int, seen: DataFrame | None = None) -> DataFrame:
        """Top ``n`` items for each distinct ``user_idx`` of ``users`` that has neighbours.

        ``score(u, j)`` = sum of ``sim(u, v)`` over u's neighbours v whose fitted history holds
        j. ``seen`` (``user_idx``, ``item_idx``), optional: items excluded per user (typically
        the training interactions). Output: (``user_idx``, ``item_idx``, ``score`` double,
        ``rank`` int 1..n, :data:`BECAUSE_COL`: the most similar neighbour holding the item,
        ties to the smallest id), ranked by score descending, ties by item id. Scored by
        :mod:`recspark.recommenders.sparse_topk`: the fitted interactions are collected to the
        driver and broadcast (``pairs x 12`` bytes).
        """
        _require_int(n, "n", 1)
        _require_columns(users, [USER_COL], "users")
        neighbours = self.neighbours.join(users.select(USER_COL).distinct(), USER_COL, "left_semi")
        queries = weighted_queries(neighbours, USER_COL, NEIGHBOR_USER_COL, "score")
        if seen is not None:
            _require_columns(seen, [USER_COL, ITEM_COL], "seen")
            excluded = seen.groupBy(USER_COL).agg(F.collect_list(F.col(ITEM_COL).cast("long")).alias(EXCLUDE_COL))
            queries = queries.join(excluded.withColumn(QUERY_COL, F.col(USER_COL).cast("long")).drop(USER_COL),
                                   QUERY_COL, "left")
        else:
            queries = queries.withColumn(EXCLUDE_COL, F.lit(None).cast("array<long>"))
        histories = collect_sparse_rows(self.interactions, USER_COL, ITEM_COL)
        return top_n_weighted_sums(queries, histories, n).select(
            F.col(QUERY_COL).cast(T.IntegerType()).alias(USER_COL), F.col("item").cast(T.IntegerType()).alias(ITEM_COL),
            "score", "rank", F.col("because").cast(T.IntegerType()).alias(BECAUSE_COL),
        )
