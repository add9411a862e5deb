"""deduplicate_interactions: one row per event, deterministic survivor."""
from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality

from recspark import schemas
from recspark.config import SourceConfig
from recspark.ingest.dedupe import deduplicate_interactions
from recspark.ingest.read import read_source
from recspark.ingest.validate import to_quarantine_rows, to_silver_rows, validate_interactions

TS = dt.datetime(2024, 1, 1, 12, 0)
DAY1 = dt.date(2024, 1, 1)
DAY2 = dt.date(2024, 1, 2)


def row(user, item, rating, ingest_date=DAY1, event_type="rating", ts=TS, run_id="r1"):
    return (user, item, event_type, rating, 1.0, ts, "ratings", "f1", ingest_date, run_id)


def test_exact_duplicates_collapse_to_one_row(spark):
    interactions = spark.createDataFrame([row("u", "i", 4.0)] * 3, schemas.INTERACTIONS)

    actual = deduplicate_interactions(interactions)

    assert_df_equality(actual, spark.createDataFrame([row("u", "i", 4.0)], schemas.INTERACTIONS))


def test_survivor_is_earliest_ingest_then_lowest_rating_with_ratings_first(spark):
    rows = [
        # Same event ingested on two days: the first ingest wins even with a higher rating.
        row("u1", "i", 5.0, ingest_date=DAY1),
        row("u1", "i", 1.0, ingest_date=DAY2),
        # Same event, same ingest, ratings differ: a rated row before an unrated one, lower first.
        row("u2", "i", None),
        row("u2", "i", 4.5),
        row("u2", "i", 2.0),
        # Same ingest date, different runs: the smaller run_id wins.
        row("u3", "i", 3.0, run_id="r2"),
        row("u3", "i", 4.0, run_id="r1"),
    ]
    expected = [row("u1", "i", 5.0), row("u2", "i", 2.0), row("u3", "i", 4.0, run_id="r1")]

    forward = deduplicate_interactions(spark.createDataFrame(rows, schemas.INTERACTIONS))
    backward = deduplicate_interactions(spark.createDataFrame(rows[::-1], schemas.INTERACTIONS).repartition(3))

    expected_df = spark.createDataFrame(expected, schemas.INTERACTIONS)
    assert_df_equality(forward, expected_df, ignore_row_order=True)
    assert_df_equality(backward, expected_df, ignore_row_order=True)


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


def test_duplicate_lines_in_a_file_are_counted_not_lost(spark, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n"
        "1,10,4.0,964982703\n"
        "1,10,4.0,964982703\n"  # exact duplicate
        "1,10,2.5,964982703\n"  # same event, different rating
        "2,10,3.0,964982703\n"
    )
    source = SourceConfig(
        name="ratings",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "userId", "item_id": "movieId", "rating": "rating", "event_ts": "timestamp"},
        event_type="rating",
    )
    bronze = read_source(spark, source)
    validated = validate_interactions(bronze, source, dt.datetime(2030, 1, 1))
    valid = to_silver_rows(validated, DAY1, "r1")
    silver = deduplicate_interactions(valid)

    read_count, valid_count = bronze.count(), valid.count()
    quarantined = to_quarantine_rows(validated, DAY1, "r1").count()
    silver_rows = silver.collect()
    assert (read_count, valid_count, quarantined) == (4, 4, 0)
    assert (len(silver_rows), valid_count - len(silver_rows)) == (2, 2)  # silver rows added, duplicates removed
    assert sorted((r.user_id, r.rating) for r in silver_rows) == [("1", 2.5), ("2", 3.0)]
