"""Aggregated interaction, user and item features from the silver tables.

Time arithmetic is done on epoch seconds, so results do not depend on the session time zone;
"days" are 86,400-second spans and calendar days are UTC days. ``as_of`` datetimes without a
time zone are taken as UTC.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recspark.featurize.splits import SplitSettings
from recspark.ordering import with_row_number

SECONDS_PER_DAY = 86_400.0


@dataclass
class FeaturizeSettings:
    """The ``featurize`` config section: the split protocol and the feature parameters."""

    split: SplitSettings = field(default_factory=SplitSettings)
    confidence_alpha: float = 1.0  # implicit confidence = 1 + alpha * log1p(weight / epsilon)
    confidence_epsilon: float = 1.0  # same unit as the interaction weight
    recency_half_life_days: float = 30.0

    def __post_init__(self) -> None:
        if self.confidence_alpha < 0:
            raise ValueError(f"confidence_alpha: must be >= 0, got {self.confidence_alpha}")
        for name in ("confidence_epsilon", "recency_half_life_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")


def _epoch_seconds(moment: dt.datetime) -> float:
    """Seconds since the Unix epoch; a naive datetime is read as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _age_days(ts: Column, as_of: dt.datetime) -> Column:
    """Days from ``ts`` to ``as_of`` (double), floored at 0 for events later than ``as_of``;
    null when ``ts`` is null."""
    age = (F.lit(_epoch_seconds(as_of)) - ts.cast("double")) / SECONDS_PER_DAY
    return F.when(ts.isNotNull(), F.greatest(age, F.lit(0.0)))


def aggregate_user_item(
    interactions: DataFrame, confidence_alpha: float, confidence_epsilon: float
) -> DataFrame:
    """One row per (user_id, item_id) from the silver interactions.

    Output columns: ``user_id``, ``item_id``, ``rating`` (the latest explicit rating; null when
    the pair has none; among ratings with the same latest timestamp the highest wins),
    ``weight`` (sum of event weights, in the weight unit of the source: counts, seconds, ...),
    ``n_events``, ``first_ts``, ``event_ts`` (time of the last event) and ``confidence``.

    ``confidence = 1 + alpha * ln(1 + weight / epsilon)`` is the log-scaled confidence of Hu,
    Koren & Volinsky (2008), "Collaborative Filtering for Implicit Feedback Datasets", eq. 6:
    unitless, 1 for no evidence and growing with the log of the total weight; ``epsilon`` is in
    the weight's unit and sets where the log starts to bend.
    """
    if confidence_alpha < 0:
        raise ValueError(f"confidence_alpha must be >= 0, got {confidence_alpha}")
    if confidence_epsilon <= 0:
        raise ValueError(f"confidence_epsilon must be > 0, got {confidence_epsilon}")
    latest_rating = F.max(
        F.when(F.col("rating").isNotNull(), F.struct("event_ts", "rating"))
    ).getField("rating")
    aggregated = interactions.groupBy("user_id", "item_id").agg(
        latest_rating.alias("rating"),
        F.sum("weight").alias("weight"),
        F.count(F.lit(1)).alias("n_events"),
        F.min("event_ts").alias("first_ts"),
        F.max("event_ts").alias("event_ts"),
    )
    return aggregated.withColumn(
        "confidence",
        1.0 + confidence_alpha * F.log1p(F.col("weight") / F.lit(float(confidence_epsilon))),
    )


def user_features(
    interactions: DataFrame, user_index: DataFrame, as_of: dt.datetime, half_life_days: float
) -> DataFrame:
    """Per-user activity features as of ``as_of``.

    Output columns: ``user_id``, ``user_idx``, ``n_interactions`` (events), ``n_items``
    (distinct items), ``n_ratings`` (events with an explicit rating), ``mean_rating`` and
    ``rating_std`` (population standard deviation, 0 for one rating; both null without
    ratings), ``first_ts``, ``last_ts``, ``active_days`` (distinct UTC calendar days with an
    event), ``days_since_last`` (``as_of - last_ts`` in days, double) and
    ``recency_weighted_activity`` (sum over events of ``0.5 ** (age_days / half_life_days)``,
    so an event ``half_life_days`` old counts 0.5).

    Events later than ``as_of`` count as age 0 (``days_since_last`` is floored at 0 too).
    Users come from ``interactions`` joined (inner) with ``user_index``, which must have been
    built from the same interactions (see :func:`recspark.featurize.ids.user_index`).
    """
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    event_day = F.floor(F.col("event_ts").cast("double") / SECONDS_PER_DAY)
    recency_weight = F.pow(F.lit(0.5), _age_days(F.col("event_ts"), as_of) / half_life_days)
    per_user = interactions.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n_interactions"),
        F.countDistinct("item_id").alias("n_items"),
        F.count("rating").alias("n_ratings"),
        F.avg("rating").alias("mean_rating"),
        F.stddev_pop("rating").alias("rating_std"),
        F.min("event_ts").alias("first_ts"),
        F.max("event_ts").alias("last_ts"),
        F.countDistinct(event_day).alias("active_days"),
        F.sum(recency_weight).alias("recency_weighted_activity"),
    )
    return per_user.join(user_index, on="user_id", how="inner").select(
        "user_id",
        "user_idx",
        "n_interactions",
        "n_items",
        "n_ratings",
        "mean_rating",
        "rating_std",
        "first_ts",
        "last_ts",
        "active_days",
        _age_days(F.col("last_ts"), as_of).alias("days_since_last"),
        "recency_weighted_activity",
    )


def genre_vocabulary(items: DataFrame) -> list[str]:
    """Sorted distinct non-empty genres of ``items``.

    Collected to the driver on purpose: the vocabulary is small (tens of genres) and fixes the
    positions of ``genre_multi_hot`` for training and serving alike.
    """
    genres = (
        items.select(F.explode("genres").alias("genre"))
        .where(F.col("genre").isNotNull() & (F.col("genre") != ""))
        .distinct()
        .collect()
    )
    return sorted(row.genre for row in genres)


def item_features(
    interactions: DataFrame,
    items: DataFrame,
    item_index: DataFrame,
    genres: list[str],
    as_of: dt.datetime,
) -> DataFrame:
    """Per-item popularity and content features.

    Output columns: ``item_id``, ``item_idx``, ``n_interactions`` (events), ``n_users``
    (distinct users), ``mean_rating`` (over rating events, null without ratings),
    ``rating_count``, ``popularity_rank`` (1 = most events; ties by ascending item_id, so ranks
    are unique), ``first_ts``, ``last_ts``, ``days_since_last`` (``as_of - last_ts`` in days,
    floored at 0; null without events), ``genre_multi_hot`` (array<int>, position i is 1 when
    the item has ``genres[i]``), ``title`` and ``text``.

    Items are those in ``interactions`` or ``items``: items with metadata but no interactions
    get zero counts and null timestamps; items with interactions but no metadata get null
    ``title``/``text`` and an all-zero multi-hot. ``item_index`` must cover them all (see
    :func:`recspark.featurize.ids.item_index`); the join is inner. The rank is computed over
    one global window (one partition), which is fine for up to millions of items.
    """
    per_item = interactions.groupBy("item_id").agg(
        F.count(F.lit(1)).alias("n_interactions"),
        F.countDistinct("user_id").alias("n_users"),
        F.avg("rating").alias("mean_rating"),
        F.count("rating").alias("rating_count"),
        F.min("event_ts").alias("first_ts"),
        F.max("event_ts").alias("last_ts"),
    )
    metadata = items.select("item_id", "title", "text", "genres")
    genre_array = F.array(*[F.lit(genre) for genre in genres]).cast("array<string>")
    item_genres = F.coalesce(F.col("genres"), F.array().cast("array<string>"))
    multi_hot = F.transform(
        genre_array, lambda genre: F.array_contains(item_genres, genre).cast("int")
    )
    joined = (
        per_item.join(metadata, on="item_id", how="full_outer")
        .join(item_index, on="item_id", how="inner")
        .fillna(0, subset=["n_interactions", "n_users", "rating_count"])
    )
    ranked = with_row_number(joined, [F.col("n_interactions").desc(), F.col("item_id").asc()], "_popularity_rank")
    return (
        ranked.select(
            "item_id",
            "item_idx",
            "n_interactions",
            "n_users",
            "mean_rating",
            "rating_count",
            F.col("_popularity_rank").cast("int").alias("popularity_rank"),
            "first_ts",
            "last_ts",
            _age_days(F.col("last_ts"), as_of).alias("days_since_last"),
            multi_hot.alias("genre_multi_hot"),
            "title",
            "text",
        )
    )
