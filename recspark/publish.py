"""The nightly recommendation lists and their quality gate (pure: no table I/O).

:func:`final_recommendations` turns the candidates table into one ranked list per user,
:func:`attach_because_items` finds a "because you liked" item for recommendations without
one, :func:`with_explanations` maps ids to the published columns, and :func:`gate_breaches`
compares a run's :class:`PublishStats` with the last published run's.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.recommenders.item_similarity import NEIGHBOR_COL


def final_recommendations(candidates: DataFrame, sources: list[str], k: int) -> DataFrame:
    """``k`` items per user from ``candidates`` (user_idx, item_idx, source, score, rank,
    because_item_idx), sources in priority order: a user's list is the first source's top items,
    filled up from the next sources when it has fewer than ``k`` (or none: a user unknown to
    ALS still gets popular items). An item listed by two sources keeps the earlier source.

    Output: user_idx, rank (1..k), item_idx, score, source, because_item_idx.
    """
    if not sources:
        raise ValueError("publish needs at least one candidate source")
    priority = F.create_map(*[F.lit(v) for i, s in enumerate(sources) for v in (s, i)])[F.col("source")]
    pool = candidates.where(F.col("source").isin(sources) & (F.col("rank") <= k)).withColumn(
        "_priority", priority
    )
    first_source = Window.partitionBy("user_idx", "item_idx").orderBy("_priority", "rank")
    deduplicated = pool.withColumn("_n", F.row_number().over(first_source)).where(F.col("_n") == 1)
    in_list = Window.partitionBy("user_idx").orderBy("_priority", "rank", "item_idx")
    return (
        deduplicated.withColumn("_final_rank", F.row_number().over(in_list))
        .where(F.col("_final_rank") <= k)
        .select(
            "user_idx",
            F.col("_final_rank").cast("int").alias("rank"),
            "item_idx",
            "score",
            "source",
            "because_item_idx",
        )
    )


def attach_because_items(
    recommendations: DataFrame, history: DataFrame, similarities: DataFrame
) -> DataFrame:
    """Fill a null ``because_item_idx`` with the user's history item most similar to the
    recommended item (largest ``score`` in ``similarities``, ties by smaller id); it stays null
    when no history item has the recommended item among its neighbours."""
    neighbours = similarities.select(
        F.col("item_idx").alias("_history_item"), F.col(NEIGHBOR_COL).alias("item_idx"), "score"
    ).withColumnRenamed("score", "_sim")
    best = (
        recommendations.where(F.col("because_item_idx").isNull())
        .select("user_idx", "item_idx")
        .join(history.select("user_idx", F.col("item_idx").alias("_history_item")), "user_idx")
        .join(neighbours, ["_history_item", "item_idx"])
        .groupBy("user_idx", "item_idx")
        .agg(F.min(F.struct((-F.col("_sim")).alias("_neg"), F.col("_history_item").alias("_item"))).alias("_best"))
        .select("user_idx", "item_idx", F.col("_best._item").alias("_because"))
    )
    return recommendations.join(best, ["user_idx", "item_idx"], "left").select(
        *[c for c in recommendations.columns if c != "because_item_idx"],
        F.coalesce("because_item_idx", "_because").alias("because_item_idx"),
    )


def with_explanations(recommendations: DataFrame, user_index: DataFrame, items: DataFrame) -> DataFrame:
    """Published columns: user_id, rank, item_id, title, score, source and ``explanation``
    ("because you liked <title>" when there is a because item, else null).

    ``user_index`` (user_id, user_idx); ``items`` (item_id, item_idx, title).
    """
    titles = items.select("item_id", "item_idx", "title")
    because = titles.select(F.col("item_idx").alias("because_item_idx"), F.col("title").alias("_because_title"))
    return (
        recommendations.join(user_index.select("user_id", "user_idx"), "user_idx")
        .join(titles, "item_idx")
        .join(because, "because_item_idx", "left")
        .select(
            "user_id",
            "rank",
            "item_id",
            "title",
            F.col("score").cast("double").alias("score"),
            "source",
            F.when(
                F.col("_because_title").isNotNull(), F.concat(F.lit("because you liked "), F.col("_because_title"))
            ).alias("explanation"),
        )
    )


@dataclass
class PublishStats:
    """What the quality gate compares between runs. ``metric`` is the evaluation metric of
    the primary source (None when this run was not evaluated)."""

    users: int
    known_users: int
    rows: int
    catalog_coverage: float
    metric: float | None

    @property
    def user_coverage(self) -> float:
        return self.users / self.known_users if self.known_users else 0.0

    def as_metadata(self) -> dict[str, str]:
        return {
            "gate.users": str(self.users),
            "gate.known_users": str(self.known_users),
            "gate.rows": str(self.rows),
            "gate.catalog_coverage": repr(self.catalog_coverage),
            "gate.metric": "" if self.metric is None else repr(self.metric),
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> PublishStats | None:
        """Read back :meth:`as_metadata` (keys with or without the ``recspark.`` prefix)."""
        values = {key.removeprefix("recspark."): value for key, value in metadata.items()}
        if "gate.users" not in values:
            return None
        metric = values.get("gate.metric") or None
        return cls(
            users=int(values["gate.users"]),
            known_users=int(values["gate.known_users"]),
            rows=int(values["gate.rows"]),
            catalog_coverage=float(values["gate.catalog_coverage"]),
            metric=None if metric is None else float(metric),
        )


def gate_breaches(
    current: PublishStats,
    previous: PublishStats | None,
    min_user_coverage: float,
    max_relative_drop: float,
) -> list[str]:
    """Reasons not to publish, empty when the run passes: user coverage below
    ``min_user_coverage``, and users, rows, catalog coverage or the metric more than
    ``max_relative_drop`` (a fraction) below the last published run."""
    breaches = []
    if current.user_coverage < min_user_coverage:
        breaches.append(
            f"user coverage {current.user_coverage:.4f} ({current.users} of {current.known_users} known users) "
            f"is below the minimum {min_user_coverage}"
        )
    if previous is None:
        return breaches
    pairs = {
        "users with recommendations": (current.users, previous.users),
        "rows": (current.rows, previous.rows),
        "catalog coverage": (current.catalog_coverage, previous.catalog_coverage),
        "evaluation metric": (current.metric, previous.metric),
    }
    for name, (now, before) in pairs.items():
        if now is None or before is None or before <= 0:
            continue
        if now < before * (1 - max_relative_drop):
            breaches.append(
                f"{name} fell from {before:g} to {now:g} (more than {max_relative_drop:.0%} below the last published run)"
            )
    return breaches
