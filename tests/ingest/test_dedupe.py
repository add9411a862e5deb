"""dedupe: one row per event, the last-written value wins, conflicts quarantined, counts add up."""
from __future__ import annotations

import datetime as dt

import pytest

from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import schemas
from recspark.ingest import reasons
from recspark.ingest.dedupe import (
    CONFLICT,
    DUPLICATE,
    KEPT,
    RowAccounting,
    RowAccountingError,
    classify_events,
    conflict_quarantine_rows,
    deduplicate_interactions,
    merge_into_silver,
)
from recspark.ingest.read import read_source
from recspark.ingest.settings import SourceSettings
from recspark.ingest.validate import (
    to_quarantine_rows,
    to_silver_candidates,
    to_silver_rows,
    validate_interactions,
)

pytestmark = pytest.mark.unit

TS = dt.datetime(2024, 1, 1, 12, 0)
DAY1 = dt.date(2024, 1, 1)
DAY2 = dt.date(2024, 1, 2)


def row(user, item, rating, ingest_date=DAY1, event_type="rating", ts=TS, run_id="r1"):
    return (user, item, event_type, rating, 1.0, ts, "ratings", "f1", ingest_date, run_id)


def test_exact_duplicates_collapse_to_one_row(spark):
    interactions = spark.createDataFrame([row("u", "i", 4.0)] * 3, schemas.INTERACTIONS)

    actual = deduplicate_interactions(interactions)

    assert_df_equality(actual, spark.createDataFrame([row("u", "i", 4.0)], schemas.INTERACTIONS))


def candidate(user, rating, ingest_date=DAY1, source_file="f1", read_order=0, weight=1.0, raw=None):
    """A candidate row (silver columns + read_order + raw_record) of event (user, "i", TS)."""
    return (user, "i", "rating", rating, weight, TS, "ratings", source_file, ingest_date, "r1", read_order, raw)


CANDIDATE_SCHEMA = T.StructType(
    schemas.INTERACTIONS.fields
    + [T.StructField("read_order", T.LongType(), True), T.StructField("raw_record", T.StringType(), True)]
)


def test_last_written_row_wins_by_ingest_date_then_file_then_position(spark):
    rows = [
        # A later ingest date wins, whatever the rating.
        candidate("u1", 5.0, ingest_date=DAY1),
        candidate("u1", 1.0, ingest_date=DAY2),
        # Same date: the later file (path order) wins.
        candidate("u2", 2.0, source_file="file:/in/b.csv"),
        candidate("u2", 4.5, source_file="file:/in/a.csv"),
        # Same file: the later row wins, also when it has no rating.
        candidate("u3", 3.0, read_order=1),
        candidate("u3", None, read_order=2),
        candidate("u3", 4.0, read_order=0),
    ]
    expected = [candidate("u1", 1.0, ingest_date=DAY2), candidate("u2", 2.0, source_file="file:/in/b.csv"),
                candidate("u3", None, read_order=2)]  # fmt: skip

    forward = deduplicate_interactions(spark.createDataFrame(rows, CANDIDATE_SCHEMA))
    backward = deduplicate_interactions(spark.createDataFrame(rows[::-1], CANDIDATE_SCHEMA).repartition(3))

    expected_df = deduplicate_interactions(spark.createDataFrame(expected, CANDIDATE_SCHEMA))
    assert_df_equality(forward, expected_df, ignore_row_order=True)
    assert_df_equality(backward, expected_df, ignore_row_order=True)
    assert sorted((r.user_id, r.rating) for r in forward.collect()) == [("u1", 1.0), ("u2", 2.0), ("u3", None)]


def test_identical_redelivery_keeps_the_first_written_row(spark):
    rows = [
        candidate("u", 4.0, ingest_date=DAY1, source_file="day1.csv"),
        candidate("u", 2.0, ingest_date=DAY2, source_file="day2.csv", read_order=0),
        candidate("u", 4.0, ingest_date=DAY2, source_file="day2.csv", read_order=5),
    ]

    classified = classify_events(spark.createDataFrame(rows, CANDIDATE_SCHEMA)).collect()

    status = {(r.source_file, r.rating): r.event_status for r in classified}
    # The value 4.0 is the last written; its first-written row (day 1) stays, so stored silver
    # is not rewritten; the identical day-2 row is a plain duplicate; 2.0 lost: a conflict.
    assert status == {("day1.csv", 4.0): KEPT, ("day2.csv", 4.0): DUPLICATE, ("day2.csv", 2.0): CONFLICT}


def test_conflict_losers_are_quarantined_with_reason_and_the_winner_named(spark):
    rows = [
        candidate("u", 2.5, read_order=0, raw="u,i,2.5,1704110400"),
        candidate("u", 4.0, read_order=1, raw="u,i,4.0,1704110400"),
        candidate("v", 3.0, weight=1.0, read_order=0, raw="v,i,3.0,1"),
        candidate("v", 3.0, weight=2.0, read_order=1, raw="v,i,3.0,2"),
    ]
    classified = classify_events(spark.createDataFrame(rows, CANDIDATE_SCHEMA))

    quarantine = conflict_quarantine_rows(classified.filter(F.col("event_status") == CONFLICT), DAY2, "r2")

    assert [(f.name, f.dataType) for f in quarantine.schema.fields] == [
        (f.name, f.dataType) for f in schemas.QUARANTINE.fields
    ]
    got = sorted(quarantine.collect(), key=lambda r: r.raw_record)
    assert [(r.raw_record, r.reason, r.column, r.ingest_date, r.run_id) for r in got] == [
        ("u,i,2.5,1704110400", reasons.DUPLICATE_CONFLICT, "rating", DAY2, "r2"),
        ("v,i,3.0,1", reasons.DUPLICATE_CONFLICT, "weight", DAY2, "r2"),
    ]
    assert "rating 2.5 weight 1.0 in this row" in got[0].detail
    assert "later-written row has rating 4.0 weight 1.0 (f1, ingest_date 2024-01-01)" in got[0].detail


def test_rows_differing_in_a_key_column_are_not_duplicates(spark):
    rows = [
        row("u", "i", 4.0),
        row("u", "i", 4.0, event_type="click"),
        row("u", "i", 4.0, ts=TS + dt.timedelta(seconds=1)),
        row("u", "j", 4.0),
        row("v", "i", 4.0),
    ]
    interactions = spark.createDataFrame(rows, schemas.INTERACTIONS)

    assert_df_equality(deduplicate_interactions(interactions), interactions, ignore_row_order=True)


def test_duplicate_lines_in_a_file_are_counted_and_conflicts_quarantined(spark, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n"
        "1,10,4.0,964982703\n"
        "1,10,4.0,964982703\n"  # exact duplicate
        "1,10,2.5,964982703\n"  # same event, later line: wins over both 4.0 rows
        "2,10,1.0,964982703\n"
        "2,10,5.0,964982703\n"  # later line, higher rating: wins (not "the lower rating")
        "3,10,3.0,964982703\n"
    )
    source = SourceSettings(
        name="ratings",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "userId", "item_id": "movieId", "rating": "rating", "event_ts": "timestamp"},
        event_type="rating",
    )
    bronze = read_source(spark, source)
    validated = validate_interactions(bronze, source, dt.datetime(2030, 1, 1))

    merge = merge_into_silver(None, to_silver_candidates(validated, DAY1, "r1"))
    silver = merge.append.collect()
    conflicts = conflict_quarantine_rows(merge.conflicts, DAY1, "r1").collect()
    accounting = RowAccounting(
        rows_read=bronze.count(),
        rows_valid=to_silver_rows(validated, DAY1, "r1").count(),
        rows_quarantined=to_quarantine_rows(validated, DAY1, "r1").count(),
        silver_rows_kept=0,
        duplicates_removed=merge.duplicates.count(),
        conflicts_quarantined=len(conflicts),
        silver_rows=len(silver),
    )

    accounting.check()
    assert (accounting.rows_read, accounting.rows_valid, accounting.duplicates_removed) == (6, 6, 0)
    assert sorted((r.user_id, r.rating) for r in silver) == [("1", 2.5), ("2", 5.0), ("3", 3.0)]
    assert sorted(r.raw_record for r in conflicts) == ["1,10,4.0,964982703", "1,10,4.0,964982703", "2,10,1.0,964982703"]


def test_accounting_names_the_equation_that_fails():
    good = RowAccounting(rows_read=10, rows_valid=8, rows_quarantined=2, silver_rows_kept=5,
                         duplicates_removed=1, conflicts_quarantined=2, silver_rows=10)  # fmt: skip
    good.check()
    with pytest.raises(RowAccountingError, match="rows read 10 != valid 8 \\+ quarantined 1"):
        RowAccounting(**{**good.__dict__, "rows_quarantined": 1}).check()
    with pytest.raises(RowAccountingError, match="silver 11 != kept 5 \\+ valid 8 - duplicates 1 - conflicts 2"):
        RowAccounting(**{**good.__dict__, "silver_rows": 11}).check()
