"""validate_*: typing, reason codes (first failing check wins), row conservation, output schemas."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from chispa import assert_df_equality
from pyspark.sql import Row
from pyspark.sql import types as T

from recspark import schemas
from recspark.ingest import reasons
from recspark.ingest.read import bronze_schema, read_source
from recspark.ingest.settings import SourceSettings
from recspark.ingest.validate import (
    to_quarantine_rows,
    to_silver_rows,
    valid_rows,
    validate_interactions,
    validate_item_tags,
    validate_items,
)

pytestmark = pytest.mark.unit

MAX_EVENT_TS = dt.datetime(2024, 1, 2, 0, 0, 0)
INGEST_DATE = dt.date(2024, 1, 1)
RUN_ID = "run-1"
HEADER = "userId,movieId,rating,timestamp\n"
GOOD_LINE = "1,1,4.0,964982703\n"


def ratings_source(path, **options) -> SourceSettings:
    return SourceSettings(
        name="ratings",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "userId", "item_id": "movieId", "rating": "rating", "event_ts": "timestamp"},
        event_type="rating",
        **{"rating_min": 0.5, "rating_max": 5.0, "rating_required": True, **options},
    )


def bronze_frame(spark, rows: list[tuple], kind: str = "interactions"):
    """Bronze rows given without read_order (numbered in list order)."""
    return spark.createDataFrame([(*row, i) for i, row in enumerate(rows)], bronze_schema(kind))


def names_and_types(schema: T.StructType) -> list[tuple[str, T.DataType]]:
    return [(f.name, f.dataType) for f in schema.fields]


@dataclass(frozen=True)
class IngestResult:
    read_count: int
    validated_count: int
    silver: list[Row]
    quarantine: list[Row]

    def assert_conserved(self) -> None:
        """Validation drops nothing and rows read = valid rows + quarantined rows."""
        assert self.validated_count == self.read_count
        assert len(self.silver) + len(self.quarantine) == self.read_count

    def rejected(self, raw_record: str) -> list[tuple]:
        return [(r.reason, r.column, r.detail) for r in self.quarantine if r.raw_record == raw_record]


def ingest(spark, path, text: str, source: SourceSettings, encoding: str = "utf-8") -> IngestResult:
    """Write ``text`` to ``path``, then read, validate and split it like the ingest stage does."""
    path.write_bytes(text.encode(encoding))
    bronze = read_source(spark, source)
    validated = validate_interactions(bronze, source, MAX_EVENT_TS)
    return IngestResult(
        read_count=bronze.count(),
        validated_count=validated.count(),
        silver=to_silver_rows(validated, INGEST_DATE, RUN_ID).collect(),
        quarantine=to_quarantine_rows(validated, INGEST_DATE, RUN_ID).collect(),
    )


# One bad row per case (raw line, expected reason, column, part of the detail). The last two show
# that the first failing check wins.
BAD_RATING_ROWS = [
    ("2,20,4.5", reasons.MALFORMED_ROW, None, "2,20,4.5"),
    ("2,20,4.5,964982703,9", reasons.MALFORMED_ROW, None, "2,20,4.5,964982703,9"),
    (",20,4.5,964982703", reasons.MISSING_USER_ID, "user_id", "user_id is empty"),
    ("2,  ,4.5,964982703", reasons.MISSING_ITEM_ID, "item_id", "item_id is empty"),
    ("2,21,4.5,", reasons.MISSING_TIMESTAMP, "event_ts", "event_ts is empty"),
    ("2,22,4.5,yesterday", reasons.TIMESTAMP_INVALID, "event_ts", "'yesterday' is not an epoch time in seconds"),
    ("2,23,4.5,1e30", reasons.TIMESTAMP_INVALID, "event_ts", "'1e30'"),
    ("2,24,4.5,1704153601", reasons.TIMESTAMP_IN_FUTURE, "event_ts", "'1704153601' (2024-01-02 00:00:01 UTC)"),
    ("2,25,abc,964982703", reasons.RATING_NOT_NUMERIC, "rating", "rating 'abc'"),
    ("2,26,NaN,964982703", reasons.RATING_NOT_NUMERIC, "rating", "rating 'NaN'"),
    ("2,27,,964982703", reasons.MISSING_RATING, "rating", "rating is empty"),
    ("2,28,6.0,964982703", reasons.RATING_OUT_OF_RANGE, "rating", "'6.0' is outside the allowed range [0.5, 5.0]"),
    ("2,29,0,964982703", reasons.RATING_OUT_OF_RANGE, "rating", "rating '0'"),
    (",30,abc,later", reasons.MISSING_USER_ID, "user_id", "user_id is empty"),
    ("2,31,abc,later", reasons.TIMESTAMP_INVALID, "event_ts", "'later'"),
]


@pytest.fixture(scope="module")
def bad_ratings(spark, tmp_path_factory) -> IngestResult:
    """One ratings file holding one good row (plus a boundary row) and every bad row above."""
    path = tmp_path_factory.mktemp("bad_ratings") / "ratings.csv"
    lines = [GOOD_LINE.strip(), "3,3,0.5,1704153600"] + [line for line, *_ in BAD_RATING_ROWS]
    return ingest(spark, path, HEADER + "\n".join(lines) + "\n", ratings_source(path))


def test_good_and_boundary_rows_pass_and_bad_rows_are_conserved(bad_ratings):
    bad_ratings.assert_conserved()
    assert bad_ratings.read_count == 2 + len(BAD_RATING_ROWS)
    assert sorted((r.user_id, r.item_id, r.rating) for r in bad_ratings.silver) == [("1", "1", 4.0), ("3", "3", 0.5)]


@pytest.mark.parametrize(("bad_line", "reason", "column", "detail_part"), BAD_RATING_ROWS)
def test_bad_interaction_row_gets_its_reason_and_column(bad_ratings, bad_line, reason, column, detail_part):
    bad_ratings.assert_conserved()
    [(actual_reason, actual_column, detail)] = bad_ratings.rejected(bad_line)
    assert (actual_reason, actual_column) == (reason, column)
    assert detail_part in detail


def test_invalid_weights_are_quarantined(spark, tmp_path):
    path = tmp_path / "plays.csv"
    source = SourceSettings(
        name="plays",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "userId", "item_id": "movieId", "weight": "plays", "event_ts": "timestamp"},
        event_type="play",
    )
    text = "userId,movieId,plays,timestamp\n1,1,3,964982703\n2,2,,964982703\n3,3,-1,1\n4,4,0,1\n5,5,lots,1\n"

    result = ingest(spark, path, text, source)

    result.assert_conserved()
    silver = sorted((r.user_id, r.event_type, r.weight) for r in result.silver)
    assert silver == [("1", "play", 3.0), ("2", "play", 1.0)]
    for raw_record, value in [("3,3,-1,1", "-1"), ("4,4,0,1", "0"), ("5,5,lots,1", "lots")]:
        assert result.rejected(raw_record) == [
            (reasons.WEIGHT_INVALID, "weight", f"weight '{value}' is not a finite number > 0")
        ]


def test_latin1_bytes_declared_utf8_are_quarantined_as_invalid_encoding(spark, tmp_path):
    path = tmp_path / "ratings.csv"
    text = HEADER + GOOD_LINE + "2,Amélie,4.0,964982703\n"

    result = ingest(spark, path, text, ratings_source(path), encoding="latin-1")

    result.assert_conserved()
    assert len(result.silver) == 1
    [(reason, column, detail)] = result.rejected("2,Am\ufffdlie,4.0,964982703")
    assert (reason, column) == (reasons.INVALID_ENCODING, "item_id")
    assert "'Am\ufffdlie'" in detail
    assert "set `encoding`" in detail


def test_latin1_file_declared_latin1_is_valid(spark, tmp_path):
    path = tmp_path / "ratings.csv"
    text = HEADER + "2,Amélie,4.0,964982703\n"

    result = ingest(spark, path, text, ratings_source(path, encoding="latin-1"), encoding="latin-1")

    assert [(r.item_id, r.reason) for r in result.quarantine] == []
    assert [r.item_id for r in result.silver] == ["Amélie"]


def test_valid_rows_are_typed_trimmed_and_lower_cased(spark):
    source = SourceSettings(
        name="events",
        kind="interactions",
        paths=["unused"],
        columns={"user_id": "u", "item_id": "i", "event_type": "e", "rating": "r", "weight": "w", "event_ts": "t"},
        timestamp_unit="ms",
    )
    bronze = bronze_frame(
        spark,
        [
            ("events", "f", "raw1", False, " u1 ", "i1\t", " Play ", "", "2.5", "964982703123"),
            ("events", "f", "raw2", False, "u2", "i2", "RATING", "4.5", None, "964982703000.9"),
        ],
    )

    actual = to_silver_rows(validate_interactions(bronze, source, MAX_EVENT_TS), INGEST_DATE, RUN_ID)

    expected = spark.createDataFrame(
        [
            ("u1", "i1", "play", None, 2.5, dt.datetime(2000, 7, 30, 18, 45, 3, 123000))
            + ("events", "f", INGEST_DATE, RUN_ID),
            ("u2", "i2", "rating", 4.5, 1.0, dt.datetime(2000, 7, 30, 18, 45, 3, 900))
            + ("events", "f", INGEST_DATE, RUN_ID),
        ],
        schemas.INTERACTIONS,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize(
    ("unit", "timestamp_format", "raw", "expected"),
    [
        ("s", None, "1700000000.5", dt.datetime(2023, 11, 14, 22, 13, 20, 500000)),
        ("us", None, "1700000000000001", dt.datetime(2023, 11, 14, 22, 13, 20, 1)),
        ("iso", None, "2023-11-14T23:13:20+01:00", dt.datetime(2023, 11, 14, 22, 13, 20)),
        ("format", "dd/MM/yyyy HH:mm", "14/11/2023 22:13", dt.datetime(2023, 11, 14, 22, 13)),
    ],
)
def test_timestamp_units(spark, unit, timestamp_format, raw, expected):
    source = SourceSettings(
        name="e",
        kind="interactions",
        paths=["unused"],
        columns={"user_id": "u", "item_id": "i", "event_ts": "t"},
        timestamp_unit=unit,
        timestamp_format=timestamp_format,
    )
    bronze = bronze_frame(spark, [("e", "f", "raw", False, "u", "i", None, None, None, raw)])

    row = validate_interactions(bronze, source, dt.datetime(2030, 1, 1)).first()

    assert (row.event_ts, row.reason, row.event_type, row.weight) == (expected, None, "interaction", 1.0)


def test_silver_and_quarantine_rows_have_the_canonical_columns(spark):
    source = SourceSettings(
        name="e", kind="interactions", paths=["unused"], columns={"user_id": "u", "item_id": "i", "event_ts": "t"}
    )
    bronze = bronze_frame(spark, [("e", "f", "raw", False, "u", "i", None, None, None, "1")])
    validated = validate_interactions(bronze, source, MAX_EVENT_TS)

    silver = to_silver_rows(validated, INGEST_DATE, RUN_ID)
    quarantine = to_quarantine_rows(validated, INGEST_DATE, RUN_ID)

    assert names_and_types(silver.schema) == names_and_types(schemas.INTERACTIONS)
    assert names_and_types(quarantine.schema) == names_and_types(schemas.QUARANTINE)


def test_items_are_typed_and_missing_ids_quarantined(spark):
    source = SourceSettings(
        name="movies",
        kind="items",
        paths=["unused"],
        columns={"item_id": "movieId", "title": "title", "genres": "genres", "text": "plot"},
    )
    bronze = bronze_frame(
        spark,
        [
            ("movies", "f", "r1", False, "1", " Heat (1995) ", "Action| Crime |Action", " A heist. "),
            ("movies", "f", "r2", False, "2", "", "(no genres listed)", None),
            ("movies", "f", "r3", False, " ", "Orphan", "Drama", None),
            ("movies", "f", "r4", True, "4", None, None, None),
        ],
        "items",
    )

    validated = validate_items(bronze, source)

    expected_valid = spark.createDataFrame(
        [
            ("movies", "f", "r1", "1", "Heat (1995)", ["Action", "Crime"], "A heist."),
            ("movies", "f", "r2", "2", None, [], None),
        ],
        "source string, source_file string, raw_record string, item_id string, title string, "
        "genres array<string>, text string",
    )
    assert_df_equality(valid_rows(validated), expected_valid, ignore_row_order=True, ignore_nullable=True)
    quarantine = to_quarantine_rows(validated, INGEST_DATE, RUN_ID).collect()
    assert sorted((r.raw_record, r.reason, r.column) for r in quarantine) == [
        ("r3", reasons.MISSING_ITEM_ID, "item_id"),
        ("r4", reasons.MALFORMED_ROW, None),
    ]
    assert validated.count() == bronze.count()


def test_item_tags_are_trimmed_lower_cased_and_blank_tags_quarantined(spark):
    source = SourceSettings(name="tags", kind="item_tags", paths=["unused"], columns={"item_id": "movieId", "tag": "tag"})
    bronze = bronze_frame(
        spark,
        [("tags", "f", "r1", False, "1", "  Dark Comedy "), ("tags", "f", "r2", False, "1", "   ")],
        "item_tags",
    )

    validated = validate_item_tags(bronze, source)

    assert [(r.item_id, r.tag) for r in valid_rows(validated).collect()] == [("1", "dark comedy")]
    assert [(r.reason, r.column) for r in to_quarantine_rows(validated, INGEST_DATE, RUN_ID).collect()] == [
        (reasons.MISSING_TAG, "tag")
    ]


def test_every_quarantine_reason_is_a_known_code(bad_ratings):
    assert {r.reason for r in bad_ratings.quarantine} <= reasons.ALL_REASONS


@pytest.mark.parametrize(
    ("unit", "raw", "detail_part"),
    [
        ("s", "1600000000000", "not a plausible time in seconds (before 1980 or after 2200); it looks like milliseconds: set timestamp_unit: ms"),
        ("s", "1600000000000000", "it looks like microseconds: set timestamp_unit: us"),
        ("s", "1600000000000000000", "it looks like nanoseconds: timestamp_unit has no ns"),
        ("ms", "1600000000000000", "it looks like microseconds: set timestamp_unit: us"),
        ("ms", "1600000000", "in milliseconds (before 1980 or after 2200); it looks like seconds: set timestamp_unit: s"),
        ("us", "1600000000000", "it looks like milliseconds: set timestamp_unit: ms"),
        ("us", "1600000000", "it looks like seconds: set timestamp_unit: s"),
    ],
)
def test_timestamp_in_another_unit_is_quarantined_with_the_unit_it_looks_like(spark, unit, raw, detail_part):
    source = SourceSettings(
        name="e", kind="interactions", paths=["unused"], columns={"user_id": "u", "item_id": "i", "event_ts": "t"},
        timestamp_unit=unit,
    )  # fmt: skip
    bronze = bronze_frame(spark, [("e", "f", "raw", False, "u", "i", None, None, None, raw)])

    row = validate_interactions(bronze, source, dt.datetime(2030, 1, 1)).first()

    assert (row.reason, row.column) == (reasons.TIMESTAMP_UNIT_MISMATCH, "event_ts")
    assert detail_part in row.detail and f"'{raw}'" in row.detail and row.detail.endswith("on source e")


@pytest.mark.parametrize(("unit", "raw"), [("s", "1600000000"), ("s", "0"), ("ms", "1600000000000"), ("us", "5")])
def test_plausible_or_unexplained_epoch_values_are_not_unit_mismatches(spark, unit, raw):
    source = SourceSettings(
        name="e", kind="interactions", paths=["unused"], columns={"user_id": "u", "item_id": "i", "event_ts": "t"},
        timestamp_unit=unit,
    )  # fmt: skip
    bronze = bronze_frame(spark, [("e", "f", "raw", False, "u", "i", None, None, None, raw)])

    assert validate_interactions(bronze, source, dt.datetime(2030, 1, 1)).first().reason is None


def test_tab_separated_play_counts_without_time_or_rating_flow_to_silver(spark, tmp_path):
    path = tmp_path / "plays.tsv"
    path.write_text("user\titem\tcount\nu1\tartist a\t12\nu1\tartist b\t3\nu2\tartist a\t0\n")
    source = SourceSettings(
        name="plays",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "user", "item_id": "item", "weight": "count"},
        delimiter="\t",
        event_type="play",
        event_time="run_date",
    )

    bronze = read_source(spark, source, run_date=INGEST_DATE)
    validated = validate_interactions(bronze, source, MAX_EVENT_TS)

    silver = to_silver_rows(validated, INGEST_DATE, RUN_ID).collect()
    assert sorted((r.user_id, r.item_id, r.event_type, r.rating, r.weight, r.event_ts) for r in silver) == [
        ("u1", "artist a", "play", None, 12.0, dt.datetime(2024, 1, 1)),
        ("u1", "artist b", "play", None, 3.0, dt.datetime(2024, 1, 1)),
    ]
    assert [(r.reason, r.column) for r in to_quarantine_rows(validated, INGEST_DATE, RUN_ID).collect()] == [
        (reasons.WEIGHT_INVALID, "weight")
    ]


def test_event_time_constant_fills_every_row(spark, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("u,i\na,x\nb,y\n")
    source = SourceSettings(
        name="export", kind="interactions", paths=[str(path)], columns={"user_id": "u", "item_id": "i"},
        event_time="constant 2023-06-30T12:00:00+02:00",
    )  # fmt: skip

    validated = validate_interactions(read_source(spark, source), source, MAX_EVENT_TS)

    assert {(r.event_ts, r.reason) for r in validated.collect()} == {(dt.datetime(2023, 6, 30, 10, 0), None)}
