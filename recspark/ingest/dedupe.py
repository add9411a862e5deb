"""One row per interaction event; conflicting rows resolved by "the last-written row wins".

An event is a (user_id, item_id, event_type, event_ts) key. Rows of one event are ordered by
when they were written: ingest_date, then source_file (path order), then read_order (position in
the file), then run_id and source (tie breaks). Then:

* the **value** of the event (rating, weight) is the one of the last-written row;
* of the rows holding that value, the **first-written** one is kept (so an identical re-delivery
  never replaces a stored row); the others are plain **duplicates** and are dropped;
* rows holding another value are **conflicts**: they lost to a later-written row and go to
  quarantine with reason ``duplicate_conflict``, so every removed row is findable.

Row accounting: silver rows = silver rows kept + valid rows - duplicates - conflicts, where
duplicates and conflicts count rows of either side (:class:`RowAccounting`).

Inputs are "candidate" rows: the columns of :data:`recspark.schemas.INTERACTIONS`, optionally
``read_order`` and ``raw_record`` (rows from the silver table have neither; they are treated as
null). Outputs of :func:`deduplicate_interactions` and :class:`SilverMerge` ``append`` have the
silver columns only.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recspark import schemas
from recspark.ingest import reasons

EVENT_KEY = ["user_id", "item_id", "event_type", "event_ts"]
VALUE_COLUMNS = ["rating", "weight"]
KEPT, DUPLICATE, CONFLICT = "kept", "duplicate", "conflict"
STATUS = "event_status"
WINNER = "_winner"  # struct of the last-written row of the event (values and lineage)


class RowAccountingError(RuntimeError):
    """Rows were lost or invented between reading and writing."""


def write_order() -> list[Column]:
    """Sort expressions, earliest-written row first (nulls first: a stored silver row without
    read_order comes before rows of the same file read tonight)."""
    return [
        F.col("ingest_date").asc_nulls_first(),
        F.col("source_file").asc_nulls_first(),
        F.col("read_order").asc_nulls_first(),
        F.col("run_id").asc_nulls_first(),
        F.col("source").asc_nulls_first(),
        F.col("rating").asc_nulls_first(),
        F.col("weight").asc_nulls_first(),
    ]


def _write_position() -> Column:
    """Struct comparable in :func:`write_order` (struct comparison puts nulls first)."""
    return F.struct(
        "ingest_date", "source_file", "read_order", "run_id", "source", "rating", "weight"
    )


def _with_optional_lineage(rows: DataFrame) -> DataFrame:
    for name, sql_type in (("read_order", "long"), ("raw_record", "string")):
        if name not in rows.columns:
            rows = rows.withColumn(name, F.lit(None).cast(sql_type))
    return rows


def classify_events(rows: DataFrame) -> DataFrame:
    """``rows`` plus ``event_status`` (kept | duplicate | conflict) and ``_winner`` (struct of the
    event's last-written row: rating, weight, source_file, ingest_date, read_order).

    Exactly one row per event is ``kept``; the result does not depend on the input's order or
    partitioning.
    """
    rows = _with_optional_lineage(rows)
    event = Window.partitionBy(*EVENT_KEY)
    winner = F.max_by(
        F.struct("rating", "weight", "source_file", "ingest_date", "read_order"), _write_position()
    ).over(event)
    same_value = F.col("rating").eqNullSafe(F.col(f"{WINNER}.rating")) & F.col("weight").eqNullSafe(
        F.col(f"{WINNER}.weight")
    )
    first_of_winning_value = F.row_number().over(
        Window.partitionBy(*EVENT_KEY).orderBy(F.col("_same").desc(), *write_order())
    )
    return (
        rows.withColumn(WINNER, winner)
        .withColumn("_same", same_value)
        .withColumn(
            STATUS,
            F.when(first_of_winning_value == 1, F.lit(KEPT))
            .when(F.col("_same"), F.lit(DUPLICATE))
            .otherwise(F.lit(CONFLICT)),
        )
        .drop("_same")
    )


def deduplicate_interactions(interactions: DataFrame) -> DataFrame:
    """One row per (user_id, item_id, event_type, event_ts): the kept row of
    :func:`classify_events`, with the silver columns of :data:`recspark.schemas.INTERACTIONS`."""
    return _silver_columns(classify_events(interactions).filter(F.col(STATUS) == KEPT))


@dataclass(frozen=True)
class SilverMerge:
    """Result of :func:`merge_into_silver`.

    append: tonight's rows to add to silver (silver columns). retire: stored silver rows to
    delete (they lost a conflict to, or duplicate an earlier-written one of, tonight's rows;
    silver columns; silver holds one row per event, so the event key identifies them).
    duplicates / conflicts: every removed row of either side, classified rows (candidate columns
    plus ``event_status`` and ``_winner``). All four read one persisted classification of the
    rows; :meth:`unpersist` frees it once they have been written.
    """

    append: DataFrame
    retire: DataFrame
    duplicates: DataFrame
    conflicts: DataFrame
    classified: DataFrame

    def unpersist(self) -> None:
        self.classified.unpersist()


def merge_into_silver(existing_silver: DataFrame | None, new_rows: DataFrame,
                      storage: StorageLevel = StorageLevel.DISK_ONLY) -> SilverMerge:
    """Resolve tonight's candidate rows against stored silver without rewriting it.

    Only stored rows whose event key occurs in ``new_rows`` are compared (a semi-join on the
    key: silver's key columns are scanned, the rest of history is neither shuffled nor
    rewritten). ``existing_silver`` holds one row per event (None: no silver yet).
    :func:`apply_merge` gives the resulting silver, which equals
    :func:`deduplicate_interactions` over all rows ever merged.

    The classified rows are persisted at ``storage`` (default local disk: a night's rows grow
    with the data while storage memory does not; at 5M interactions a memory-and-disk
    checkpoint of 8 blocks of 236 MiB did not fit a 4g driver and logged a "Not enough space to
    cache" WARN per attempt), so the four outputs agree row for row.
    """
    new_rows = _with_optional_lineage(new_rows).withColumn("_stored", F.lit(False))
    if existing_silver is None:
        candidates = new_rows
    else:
        touched = existing_silver.join(new_rows.select(*EVENT_KEY).distinct(), on=EVENT_KEY, how="left_semi")
        stored = _with_optional_lineage(_silver_columns(touched)).withColumn("_stored", F.lit(True))
        candidates = stored.unionByName(new_rows.select(*stored.columns))
    classified = classify_events(candidates).persist(storage)
    status, stored_flag = F.col(STATUS), F.col("_stored")
    return SilverMerge(
        append=_silver_columns(classified.filter((status == KEPT) & ~stored_flag)),
        retire=_silver_columns(classified.filter((status != KEPT) & stored_flag)),
        duplicates=classified.filter(status == DUPLICATE).drop("_stored"),
        conflicts=classified.filter(status == CONFLICT).drop("_stored"),
        classified=classified,
    )


def apply_merge(existing_silver: DataFrame | None, merge: SilverMerge) -> DataFrame:
    """Silver after ``merge``: stored rows minus ``retire`` (by event key) plus ``append``."""
    if existing_silver is None:
        return merge.append
    kept = existing_silver.join(merge.retire.select(*EVENT_KEY), on=EVENT_KEY, how="left_anti")
    return _silver_columns(kept).unionByName(merge.append)


def conflict_quarantine_rows(conflicts: DataFrame, ingest_date: dt.date, run_id: str) -> DataFrame:
    """Quarantine rows (:data:`recspark.schemas.QUARANTINE`) for conflict losers: reason
    ``duplicate_conflict``, column ``rating`` (or ``weight`` when only the weight differs),
    detail naming the lost and the winning values and the winner's file. ``raw_record`` is the
    row as read, or for a stored silver row a JSON object of its values."""
    winner = F.col(WINNER)
    rating_differs = ~F.col("rating").eqNullSafe(winner["rating"])
    as_json = F.to_json(F.struct(*[F.col(f.name) for f in schemas.INTERACTIONS.fields]))
    detail = F.format_string(
        "event (%s, %s, %s, %s) has rating %s weight %s in this row (ingest_date %s) but a "
        "later-written row has rating %s weight %s (%s, ingest_date %s); the later row wins",
        "user_id",
        "item_id",
        "event_type",
        F.date_format("event_ts", "yyyy-MM-dd HH:mm:ss"),
        F.coalesce(F.col("rating").cast("string"), F.lit("null")),
        F.col("weight").cast("string"),
        F.col("ingest_date").cast("string"),
        F.coalesce(winner["rating"].cast("string"), F.lit("null")),
        winner["weight"].cast("string"),
        F.coalesce(winner["source_file"], F.lit("stored silver row")),
        winner["ingest_date"].cast("string"),
    )
    return conflicts.select(
        F.col("source"),
        F.col("source_file"),
        F.coalesce(F.col("raw_record"), as_json).alias("raw_record"),
        F.lit(reasons.DUPLICATE_CONFLICT).alias("reason"),
        F.when(rating_differs, F.lit("rating")).otherwise(F.lit("weight")).alias("column"),
        detail.alias("detail"),
        F.lit(ingest_date).cast("date").alias("ingest_date"),
        F.lit(run_id).alias("run_id"),
    )


@dataclass(frozen=True)
class RowAccounting:
    """Counts of one ingest run that must add up (:meth:`check`).

    rows_read = rows_valid + rows_quarantined (validation rejects only), and
    silver_rows = silver_rows_kept + rows_valid - duplicates_removed - conflicts_quarantined.
    """

    rows_read: int
    rows_valid: int
    rows_quarantined: int
    silver_rows_kept: int  # silver rows before tonight's rows were merged
    duplicates_removed: int
    conflicts_quarantined: int
    silver_rows: int

    def check(self) -> None:
        """Raise RowAccountingError naming the equation that does not hold."""
        if self.rows_read != self.rows_valid + self.rows_quarantined:
            raise RowAccountingError(
                f"rows read {self.rows_read} != valid {self.rows_valid} + quarantined {self.rows_quarantined}"
            )
        expected = self.silver_rows_kept + self.rows_valid - self.duplicates_removed - self.conflicts_quarantined
        if self.silver_rows != expected or min(self.duplicates_removed, self.conflicts_quarantined) < 0:
            raise RowAccountingError(
                f"silver {self.silver_rows} != kept {self.silver_rows_kept} + valid {self.rows_valid}"
                f" - duplicates {self.duplicates_removed} - conflicts {self.conflicts_quarantined}"
            )


def merge_counts(merge: SilverMerge) -> tuple[int, int]:
    """(duplicates removed, conflicts quarantined) of ``merge``."""
    return merge.duplicates.count(), merge.conflicts.count()


def _silver_columns(df: DataFrame) -> DataFrame:
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schemas.INTERACTIONS.fields])
