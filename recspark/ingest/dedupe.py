"""Remove duplicate interaction events from silver rows."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

EVENT_KEY = ["user_id", "item_id", "event_type", "event_ts"]


def survivor_order() -> list[Column]:
    """Order of rows within one event key; the first row survives.

    Earliest ``ingest_date`` first, then a total order over the remaining columns so a re-run
    keeps the same row: run_id, source, source_file (nulls last), rating (a row with a rating
    beats one without, then the lower rating), weight (lower first).
    """
    return [
        F.col("ingest_date").asc(),
        F.col("run_id").asc(),
        F.col("source").asc(),
        F.col("source_file").asc_nulls_last(),
        F.col("rating").asc_nulls_last(),
        F.col("weight").asc(),
    ]


def deduplicate_interactions(interactions: DataFrame) -> DataFrame:
    """One row per (user_id, item_id, event_type, event_ts), the first by :func:`survivor_order`.

    Input and output have the columns of :data:`recspark.schemas.INTERACTIONS` (extra columns
    pass through). Rows equal in every ordered column are interchangeable, so the result is the
    same on every run.
    """
    window = Window.partitionBy(*EVENT_KEY).orderBy(*survivor_order())
    return (
        interactions.withColumn("_survivor_rank", F.row_number().over(window))
        .filter(F.col("_survivor_rank") == 1)
        .drop("_survivor_rank")
    )
