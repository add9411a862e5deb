"""Most-popular-items baseline: the same ranked item list for every user, minus what they saw.

Popularity is the number of distinct users who interacted with an item, or the sum of a weight
column, counted over all events or over a trailing window ending at the latest event. Ties are
broken by item id ascending everywhere (``popularity_rank`` and the per-user ``rank``).
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.ordering import with_row_number

SECONDS_PER_DAY = 86_400.0


class PopularityRecommender:
    """Estimator (pyspark.ml style) for :class:`PopularityModel`.

    Params:
        k: recommendations per user (positive).
        window_days: count only events in the ``window_days`` days ending at the latest event in
            the fitted data, the half-open interval ``(latest - window_days, latest]``; ``None``
            counts all events.
        user_col, item_col: id columns of the interactions (and of ``users``/``seen`` later).
        weight_col: when set, score = sum of this column; otherwise score = distinct users.
        timestamp_col: event time, a ``timestamp`` or epoch seconds; used only with a window.
    """

    def __init__(
        self,
        k: int = 10,
        window_days: float | None = None,
        user_col: str = "user_idx",
        item_col: str = "item_idx",
        weight_col: str | None = None,
        timestamp_col: str = "event_ts",
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if window_days is not None and not window_days > 0:
            raise ValueError(f"window_days must be positive or None, got {window_days!r}")
        self.k = k
        self.window_days = window_days
        self.user_col = user_col
        self.item_col = item_col
        self.weight_col = weight_col
        self.timestamp_col = timestamp_col

    def fit(self, interactions: DataFrame) -> PopularityModel:
        """Score every item in ``interactions`` (one row per event); see the class params."""
        required = [self.user_col, self.item_col]
        required += [self.weight_col] if self.weight_col else []
        required += [self.timestamp_col] if self.window_days is not None else []
        missing = [c for c in required if c not in interactions.columns]
        if missing:
            raise ValueError(
                f"interactions lack column(s) {missing}; they have {interactions.columns}"
            )
        events = interactions
        if self.window_days is not None:
            seconds = F.col(self.timestamp_col).cast("double")
            latest = interactions.agg(F.max(seconds).alias("__latest_s"))
            events = interactions.crossJoin(latest).where(
                seconds > F.col("__latest_s") - F.lit(self.window_days * SECONDS_PER_DAY)
            )
        if self.weight_col:
            score = F.sum(F.col(self.weight_col).cast("double"))
        else:
            score = F.countDistinct(self.user_col).cast("double")
        item_scores = with_row_number(
            events.groupBy(self.item_col).agg(score.alias("score")),
            [F.col("score").desc(), F.col(self.item_col).asc()], "popularity_rank",
        ).withColumn("popularity_rank", F.col("popularity_rank").cast("int"))
        return PopularityModel(item_scores, self.k, self.user_col, self.item_col)


class PopularityModel:
    """Fitted popularity ranking.

    Attributes:
        item_scores: (item_col, ``score`` double, ``popularity_rank`` int 1..n), one row per item
            with at least one event in the window; rank by score descending, then item id.
        k, user_col, item_col: as given to :class:`PopularityRecommender`.
    """

    def __init__(self, item_scores: DataFrame, k: int, user_col: str, item_col: str) -> None:
        self.item_scores = item_scores
        self.k = k
        self.user_col = user_col
        self.item_col = item_col

    def recommend(self, users: DataFrame, seen: DataFrame | None = None) -> DataFrame:
        """Top ``k`` unseen popular items for each distinct user in ``users`` (user_col).

        ``seen`` (user_col, item_col), optional: items excluded per user. Output: (user_col,
        item_col, ``score`` double, ``rank`` int 1..k); fewer than ``k`` rows only when a user has
        seen all but fewer than ``k`` of the scored items.

        Candidate bound: walking down the popularity list, a user's seen item at their i-th seen
        position (by popularity rank r_i) lies before their k-th unseen item exactly when
        ``r_i - i < k``. With ``c_u`` such items, the user's answer is exactly the unseen items
        among the top ``k + c_u``. Only the top ``k + max(c_u)`` items (one small scalar
        aggregate) are broadcast and joined to the users, each user keeping those ranked within
        its own ``k + c_u``; so the work is at most users x (k + max(c_u)) rows, and it is correct
        even for a user who has seen every top item.
        """
        if self.user_col not in users.columns:
            raise ValueError(f"users lacks column {self.user_col!r}; it has {users.columns}")
        distinct_users = users.select(self.user_col).distinct()
        if seen is None:
            top_k = self.item_scores.where(F.col("popularity_rank") <= self.k)
            return distinct_users.crossJoin(F.broadcast(top_k)).select(
                self.user_col,
                self.item_col,
                "score",
                F.col("popularity_rank").alias("rank"),
            )
        missing = [c for c in (self.user_col, self.item_col) if c not in seen.columns]
        if missing:
            raise ValueError(f"seen lacks column(s) {missing}; it has {seen.columns}")
        seen_pairs = seen.select(self.user_col, self.item_col).distinct()
        seen_before_kth = self._seen_before_kth_unseen(seen_pairs)
        n_candidates = self.k + (seen_before_kth.agg(F.max("n_seen_before")).first()[0] or 0)
        candidates = self.item_scores.where(F.col("popularity_rank") <= n_candidates)
        per_user_depth = distinct_users.join(seen_before_kth, self.user_col, "left").select(
            self.user_col, (F.lit(self.k) + F.coalesce("n_seen_before", F.lit(0))).alias("depth")
        )
        by_rank = Window.partitionBy(self.user_col).orderBy("popularity_rank")
        return (
            per_user_depth.join(
                F.broadcast(candidates), F.col("popularity_rank") <= F.col("depth")
            )
            .join(seen_pairs, [self.user_col, self.item_col], "left_anti")
            .withColumn("rank", F.row_number().over(by_rank))
            .where(F.col("rank") <= self.k)
            .select(self.user_col, self.item_col, "score", "rank")
        )

    def _seen_before_kth_unseen(self, seen_pairs: DataFrame) -> DataFrame:
        """(user_col, n_seen_before): per user, seen items ranked before their k-th unseen item."""
        by_rank = Window.partitionBy(self.user_col).orderBy("popularity_rank")
        ranks = self.item_scores.select(self.item_col, "popularity_rank")
        return (
            seen_pairs.join(ranks, self.item_col)
            .withColumn("seen_position", F.row_number().over(by_rank))
            .where(F.col("popularity_rank") - F.col("seen_position") < self.k)
            .groupBy(self.user_col)
            .agg(F.count(F.lit(1)).alias("n_seen_before"))
        )
