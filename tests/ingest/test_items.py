"""build_items and unknown_item_tags_quarantine."""
from __future__ import annotations

import pytest

import datetime as dt

from chispa import assert_df_equality

from recspark import schemas
from recspark.ingest import reasons
from recspark.ingest.items import build_items, unknown_item_tags_quarantine

INGEST_DATE = dt.date(2024, 1, 1)
ITEMS_VALID = (
    "source string, source_file string, raw_record string, item_id string, title string, "
    "genres array<string>, text string"
)

pytestmark = pytest.mark.unit
TAGS_VALID = "source string, source_file string, raw_record string, item_id string, tag string"


def test_build_items_joins_tags_and_writes_readable_text(spark):
    items_valid = spark.createDataFrame(
        [
            ("movies", "m.csv", "r1", "1", "Toy Story (1995)", ["Adventure", "Animation"], None),
            ("movies", "m.csv", "r2", "2", "Heat (1995)", [], "A heist goes wrong."),
            ("movies", "m.csv", "r3", "3", None, [], None),
        ],
        ITEMS_VALID,
    )
    tags_valid = spark.createDataFrame(
        [
            ("tags", "t.csv", "t1", "1", "pixar"),
            ("tags", "t.csv", "t2", "1", "fun"),
            ("tags", "t.csv", "t3", "1", "pixar"),
            ("tags", "t.csv", "t4", "99", "orphan"),
        ],
        TAGS_VALID,
    )

    actual = build_items(items_valid, tags_valid, INGEST_DATE)

    expected = spark.createDataFrame(
        [
            (
                "1",
                "Toy Story (1995)",
                ["Adventure", "Animation"],
                ["fun", "pixar"],
                "Toy Story (1995). Genres: Adventure, Animation. Tags: fun, pixar",
                "m.csv",
                INGEST_DATE,
            ),
            ("2", "Heat (1995)", [], [], "Heat (1995). A heist goes wrong.", "m.csv", INGEST_DATE),
            ("3", None, [], [], "", "m.csv", INGEST_DATE),
        ],
        schemas.ITEMS,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    assert [(f.name, f.dataType) for f in actual.schema.fields] == [(f.name, f.dataType) for f in schemas.ITEMS.fields]


def test_duplicate_item_rows_keep_the_first_by_source_file_and_raw_record(spark):
    items_valid = spark.createDataFrame(
        [
            ("movies", "b.csv", "1,Heat", "1", "Heat", [], None),
            ("movies", "a.csv", "1,Heat (1995)", "1", "Heat (1995)", [], None),
            ("movies", "a.csv", "1,Heat (1995) ", "1", "Heat (1995) v2", [], None),
        ],
        ITEMS_VALID,
    )
    no_tags = spark.createDataFrame([], TAGS_VALID)

    rows = build_items(items_valid, no_tags, INGEST_DATE).select("item_id", "title", "source_file").collect()

    assert [tuple(r) for r in rows] == [("1", "Heat (1995)", "a.csv")]


def test_tags_of_unknown_items_are_quarantined(spark):
    items = spark.createDataFrame([("1",)], "item_id string")
    tags_valid = spark.createDataFrame(
        [("tags", "t.csv", "2,1,funny,1", "1", "funny"), ("tags", "t.csv", "2,99,orphan,1", "99", "orphan")],
        TAGS_VALID,
    )

    actual = unknown_item_tags_quarantine(tags_valid, items, INGEST_DATE, "run-1")

    expected = spark.createDataFrame(
        [
            (
                "tags",
                "t.csv",
                "2,99,orphan,1",
                reasons.UNKNOWN_ITEM,
                "item_id",
                "item_id '99' of tag 'orphan' is not in any items source",
                INGEST_DATE,
                "run-1",
            )
        ],
        schemas.QUARANTINE,
    )
    assert_df_equality(actual, expected, ignore_nullable=True)
