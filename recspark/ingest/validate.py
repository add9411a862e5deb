"""Type and check bronze rows; every row comes out either valid or with exactly one reason.

``validate_*`` keep every input row (rows in = rows out) and add ``reason``, ``column`` (the
canonical column at fault, null when the whole row is at fault) and ``detail`` (human-readable,
names the offending value); all three are null on valid rows. Checks run in a fixed order and the
first failing one wins:

interactions: malformed row, invalid encoding (user_id, item_id, event_type, rating, weight,
event_ts in that order), missing user_id, missing item_id, missing event_type, missing timestamp,
timestamp unit mismatch, timestamp invalid, timestamp in the future, rating not numeric, missing
rating, rating out of range, weight invalid.

Timestamp unit mismatch (epoch units only): a value that lands after 2200 in the configured unit
but between 1980 and 2200 in a finer one (s -> ms, us, ns; ms -> us, ns; us -> ns), or before
1980 in the configured unit but between 1980 and 2200 in a coarser one (ms -> s; us -> ms, s).
The detail names the unit it looks like and the setting to change. A source with ``event_time``
set has its event_ts filled by the reader as ISO-8601 text and parsed as such.

items: malformed row, invalid encoding, missing item_id.
item tags: malformed row, invalid encoding, missing item_id, missing tag.

Values are trimmed of surrounding whitespace first, and a blank value counts as missing. A field
holding U+FFFD (the replacement character) means the file's bytes were not valid in the declared
``encoding``. Casts are ``try_cast`` so ANSI mode does not turn bad values into job failures.
Caveat for ``timestamp_unit: format``: under Spark's default
``spark.sql.legacy.timeParserPolicy=EXCEPTION`` a value that only the pre-3.0 parser accepts
raises SparkUpgradeException; set the policy to CORRECTED to quarantine such values instead.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import schemas
from recspark.ingest import reasons
from recspark.ingest.settings import SourceSettings

NO_GENRES_LISTED = "(no genres listed)"  # MovieLens' marker for an item without genres
FAILURE_COLUMNS = ["reason", "column", "detail"]
LINEAGE_COLUMNS = ["source", "source_file", "raw_record"]
DETAIL_MAX_CHARS = 200  # raw text quoted in a malformed-row detail is cut to this length

MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
# Epoch values outside 0001-01-01 .. 9999-12-31T23:59:59 are invalid timestamps.
MIN_EPOCH_SECONDS = -62_135_596_800
MAX_EPOCH_SECONDS = 253_402_300_799
# Epoch values are plausible event times between these instants (seconds since the epoch).
PLAUSIBLE_FROM_SECONDS = 315_532_800  # 1980-01-01
PLAUSIBLE_UNTIL_SECONDS = 7_258_118_400  # 2200-01-01
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
SECONDS_PER_UNIT = {"s": 1, "ms": 10**-3, "us": 10**-6, "ns": 10**-9}
UNIT_DESCRIPTIONS = {
    "s": "an epoch time in seconds",
    "ms": "an epoch time in milliseconds",
    "us": "an epoch time in microseconds",
    "iso": "an ISO-8601 timestamp",
}


@dataclass(frozen=True)
class Check:
    """One validation rule: rows where ``failed`` is true get ``reason``/``column``/``detail``."""

    reason: str
    column: str | None
    failed: Column
    detail: Column


def validate_interactions(bronze: DataFrame, source: SourceSettings, max_event_ts: dt.datetime) -> DataFrame:
    """Typed interaction rows plus reason/column/detail (see the module docstring for the checks).

    Output columns: source, source_file, raw_record, read_order, user_id, item_id (trimmed strings),
    event_type (lower-cased; the mapped column or the constant ``source.event_type``), rating
    (double, null allowed unless ``rating_required``), weight (double; 1.0 when unmapped or
    blank), event_ts (timestamp parsed per ``timestamp_unit``), reason, column, detail.
    ``max_event_ts`` is the latest accepted event time; a naive datetime is taken as UTC.
    """
    if max_event_ts.tzinfo is None:
        max_event_ts = max_event_ts.replace(tzinfo=dt.timezone.utc)
    text = _trimmed_text(bronze, schemas.INTERACTION_RAW_COLUMNS)
    typed = text.select(
        *LINEAGE_COLUMNS,
        "read_order",
        "is_malformed",
        *[f"{name}_text" for name in schemas.INTERACTION_RAW_COLUMNS],
        F.col("user_id_text").alias("user_id"),
        F.col("item_id_text").alias("item_id"),
        (
            F.lower("event_type_text")
            if "event_type" in source.columns
            else F.lit(source.event_type.strip().lower())
        ).alias("event_type"),
        _try_cast("rating_text", "DOUBLE").alias("rating"),
        (
            F.coalesce(_try_cast("weight_text", "DOUBLE"), F.when(F.col("weight_text").isNull(), F.lit(1.0)))
            if "weight" in source.columns
            else F.lit(1.0)
        ).alias("weight"),
        _parse_event_ts("event_ts_text", source).alias("event_ts"),
    )
    rating, weight, event_ts = F.col("rating"), F.col("weight"), F.col("event_ts")
    rating_text, weight_text, ts_text = F.col("rating_text"), F.col("weight_text"), F.col("event_ts_text")
    limit = max_event_ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    checks = [
        *_row_checks(source, schemas.INTERACTION_RAW_COLUMNS),
        _missing_check(reasons.MISSING_USER_ID, "user_id"),
        _missing_check(reasons.MISSING_ITEM_ID, "item_id"),
    ]
    if "event_type" in source.columns:
        checks.append(_missing_check(reasons.MISSING_EVENT_TYPE, "event_type"))
    checks += [
        _missing_check(reasons.MISSING_TIMESTAMP, "event_ts"),
        *_unit_mismatch_checks(source),
        Check(
            reasons.TIMESTAMP_INVALID,
            "event_ts",
            event_ts.isNull(),
            _format(f"event_ts '%s' is not {_escape(_unit_description(source))}", ts_text),
        ),
        Check(
            reasons.TIMESTAMP_IN_FUTURE,
            "event_ts",
            event_ts > F.lit(max_event_ts),
            _format(
                f"event_ts '%s' (%s UTC) is later than the latest accepted event time {limit} UTC",
                ts_text,
                F.date_format(event_ts, "yyyy-MM-dd HH:mm:ss"),
            ),
        ),
        Check(
            reasons.RATING_NOT_NUMERIC,
            "rating",
            rating_text.isNotNull() & _not_finite(rating),
            _format("rating '%s' is not a finite number", rating_text),
        ),
    ]
    if source.rating_required:
        checks.append(_missing_check(reasons.MISSING_RATING, "rating"))
    if source.rating_min is not None or source.rating_max is not None:
        low = float("-inf") if source.rating_min is None else source.rating_min
        high = float("inf") if source.rating_max is None else source.rating_max
        checks.append(
            Check(
                reasons.RATING_OUT_OF_RANGE,
                "rating",
                (rating < F.lit(low)) | (rating > F.lit(high)),
                _format(f"rating '%s' is outside the allowed range [{low}, {high}]", rating_text),
            )
        )
    if "weight" in source.columns:
        checks.append(
            Check(
                reasons.WEIGHT_INVALID,
                "weight",
                weight_text.isNotNull() & (_not_finite(weight) | (weight <= 0)),
                _format("weight '%s' is not a finite number > 0", weight_text),
            )
        )
    return _with_failure(typed, checks).select(
        *LINEAGE_COLUMNS,
        "read_order",
        "user_id",
        "item_id",
        "event_type",
        "rating",
        "weight",
        "event_ts",
        *FAILURE_COLUMNS,
    )


def validate_items(bronze: DataFrame, source: SourceSettings) -> DataFrame:
    """Typed item rows plus reason/column/detail.

    Output columns: source, source_file, raw_record, item_id (trimmed), title (trimmed, null when
    blank), genres (array<string>: split on ``genre_separator``, trimmed, blanks and
    ``(no genres listed)`` dropped, first occurrence order, no repeats), text (the mapped
    description, trimmed, null when blank), reason, column, detail. Genre flag columns
    (``genre_flag_columns``) arrive here already turned into the raw genres string by
    :func:`~recspark.ingest.read.read_source`.
    """
    text = _trimmed_text(bronze, schemas.ITEM_RAW_COLUMNS)
    typed = text.select(
        *LINEAGE_COLUMNS,
        "is_malformed",
        *[f"{name}_text" for name in schemas.ITEM_RAW_COLUMNS],
        F.col("item_id_text").alias("item_id"),
        F.col("title_text").alias("title"),
        split_genres(F.col("genres_text"), source.genre_separator).alias("genres"),
        F.col("text_text").alias("text"),
    )
    checks = [
        *_row_checks(source, schemas.ITEM_RAW_COLUMNS),
        _missing_check(reasons.MISSING_ITEM_ID, "item_id"),
    ]
    return _with_failure(typed, checks).select(
        *LINEAGE_COLUMNS, "item_id", "title", "genres", "text", *FAILURE_COLUMNS
    )


def validate_item_tags(bronze: DataFrame, source: SourceSettings) -> DataFrame:
    """Typed tag rows plus reason/column/detail.

    Output columns: source, source_file, raw_record, item_id (trimmed), tag (trimmed,
    lower-cased), reason, column, detail.
    """
    text = _trimmed_text(bronze, schemas.ITEM_TAG_RAW_COLUMNS)
    typed = text.select(
        *LINEAGE_COLUMNS,
        "is_malformed",
        *[f"{name}_text" for name in schemas.ITEM_TAG_RAW_COLUMNS],
        F.col("item_id_text").alias("item_id"),
        F.lower("tag_text").alias("tag"),
    )
    checks = [
        *_row_checks(source, schemas.ITEM_TAG_RAW_COLUMNS),
        _missing_check(reasons.MISSING_ITEM_ID, "item_id"),
        _missing_check(reasons.MISSING_TAG, "tag"),
    ]
    return _with_failure(typed, checks).select(*LINEAGE_COLUMNS, "item_id", "tag", *FAILURE_COLUMNS)


def valid_rows(validated: DataFrame) -> DataFrame:
    """Rows without a reason, without the reason/column/detail columns (any ``validate_*`` output)."""
    return validated.filter(F.col("reason").isNull()).drop(*FAILURE_COLUMNS)


def to_silver_rows(validated: DataFrame, ingest_date: dt.date, run_id: str) -> DataFrame:
    """Valid interaction rows with exactly the column names, types and order of
    :data:`recspark.schemas.INTERACTIONS` (Spark's nullability flags are not forced)."""
    return conform(_with_run(valid_rows(validated), ingest_date, run_id), schemas.INTERACTIONS)


def to_silver_candidates(validated: DataFrame, ingest_date: dt.date, run_id: str) -> DataFrame:
    """Valid interaction rows as input of :mod:`recspark.ingest.dedupe`: the silver columns
    (:func:`to_silver_rows`) plus ``read_order`` and ``raw_record``, which decide and explain
    which of several rows of one event is kept."""
    rows = _with_run(valid_rows(validated), ingest_date, run_id)
    silver_columns = [F.col(f.name).cast(f.dataType).alias(f.name) for f in schemas.INTERACTIONS.fields]
    return rows.select(*silver_columns, "read_order", "raw_record")


def to_quarantine_rows(validated: DataFrame, ingest_date: dt.date, run_id: str) -> DataFrame:
    """Rejected rows of any ``validate_*`` output with exactly the columns of
    :data:`recspark.schemas.QUARANTINE`."""
    rejected = validated.filter(F.col("reason").isNotNull())
    return conform(_with_run(rejected, ingest_date, run_id), schemas.QUARANTINE)


def conform(df: DataFrame, schema: T.StructType) -> DataFrame:
    """Select the fields of ``schema`` in order, cast to their types."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def split_genres(genres: Column, separator: str) -> Column:
    """array<string> of the genres in a separator-joined string (empty array for null/blank)."""
    parts = F.split(F.coalesce(genres, F.lit("")), r"\Q" + separator + r"\E")
    kept = F.filter(F.transform(parts, F.trim), lambda g: (g != "") & (g != NO_GENRES_LISTED))
    return F.array_distinct(kept)


def _with_run(df: DataFrame, ingest_date: dt.date, run_id: str) -> DataFrame:
    return df.withColumn("ingest_date", F.lit(ingest_date).cast("date")).withColumn("run_id", F.lit(run_id))


def _trimmed_text(bronze: DataFrame, raw_columns: list[str]) -> DataFrame:
    """Add ``<column>_text``: the raw value without surrounding whitespace, null when blank.

    Bronze rows written before ``read_order`` existed get a null read_order."""
    if "read_order" not in bronze.columns:
        bronze = bronze.withColumn("read_order", F.lit(None).cast("long"))
    return bronze.select(
        *LINEAGE_COLUMNS,
        "read_order",
        "is_malformed",
        *[
            _blank_to_null(F.regexp_replace(name, r"^\s+|\s+$", "")).alias(f"{name}_text")
            for name in raw_columns
        ],
    )


def _blank_to_null(value: Column) -> Column:
    return F.when(value != "", value)


def _row_checks(source: SourceSettings, raw_columns: list[str]) -> list[Check]:
    """Malformed row, then invalid encoding per canonical column (in ``raw_columns`` order)."""
    checks = [
        Check(
            reasons.MALFORMED_ROW,
            None,
            F.col("is_malformed"),
            F.concat(
                F.lit(
                    "row does not split into the source's fields "
                    "(wrong number of fields or broken quoting): "
                ),
                F.substring("raw_record", 1, DETAIL_MAX_CHARS),
            ),
        )
    ]
    for name in raw_columns:
        value = F.col(f"{name}_text")
        checks.append(
            Check(
                reasons.INVALID_ENCODING,
                name,
                value.contains("\ufffd"),
                _format(
                    f"{name} '%s' contains U+FFFD: the file's bytes are not valid "
                    f"{_escape(source.encoding)}; set `encoding` on source {_escape(source.name)} "
                    "(e.g. latin-1)",
                    value,
                ),
            )
        )
    return checks


def _missing_check(reason: str, name: str) -> Check:
    return Check(reason, name, F.col(f"{name}_text").isNull(), F.lit(f"{name} is empty or missing"))


def _with_failure(typed: DataFrame, checks: list[Check]) -> DataFrame:
    """Add reason/column/detail of the first failing check (all null when every check passes)."""
    failure = None
    for check in checks:
        value = F.struct(
            F.lit(check.reason).alias("reason"),
            F.lit(check.column).cast("string").alias("column"),
            check.detail.alias("detail"),
        )
        failure = F.when(check.failed, value) if failure is None else failure.when(check.failed, value)
    with_failure = typed.withColumn("_failure", failure)
    failure_fields = [F.col(f"_failure.{name}").alias(name) for name in FAILURE_COLUMNS]
    return with_failure.select("*", *failure_fields).drop("_failure")


def _try_cast(name: str, sql_type: str) -> Column:
    return F.expr(f"try_cast(`{name}` AS {sql_type})")


def _parse_event_ts(name: str, source: SourceSettings) -> Column:
    """Timestamp of the text column ``name`` per ``source.timestamp_unit`` (null when invalid).

    Epoch units accept decimals (fractions below a microsecond are truncated toward the past).
    A source with ``event_time`` holds the reader's ISO-8601 fill."""
    unit = "iso" if source.event_time else source.timestamp_unit
    if unit == "iso":
        return _try_cast(name, "TIMESTAMP")
    if unit == "format":
        return F.to_timestamp(F.col(name), source.timestamp_format)
    seconds = _try_cast(name, "DECIMAL(38, 9)") / F.lit(1_000_000 // MICROS_PER_UNIT[unit])
    micros = F.floor(seconds * F.lit(1_000_000)).cast("long")
    return F.when(seconds.between(MIN_EPOCH_SECONDS, MAX_EPOCH_SECONDS), F.timestamp_micros(micros))


def _unit_mismatch_checks(source: SourceSettings) -> list[Check]:
    """The timestamp unit mismatch check of an epoch-unit source (none for other sources)."""
    unit = source.timestamp_unit
    if source.event_time or unit not in MICROS_PER_UNIT:
        return []
    seconds = _try_cast("event_ts_text", "DECIMAL(38, 9)") * F.lit(SECONDS_PER_UNIT[unit])

    def plausible_in(other: str) -> Column:
        value = seconds / F.lit(SECONDS_PER_UNIT[unit]) * F.lit(SECONDS_PER_UNIT[other])
        return value.between(PLAUSIBLE_FROM_SECONDS, PLAUSIBLE_UNTIL_SECONDS)

    units = list(UNIT_NAMES)
    finer = units[units.index(unit) + 1 :]
    coarser = units[: units.index(unit)][::-1]
    suggestion = None
    for candidates, out_of_range in ((finer, seconds > PLAUSIBLE_UNTIL_SECONDS), (coarser, seconds < PLAUSIBLE_FROM_SECONDS)):
        for other in candidates:
            condition = out_of_range & plausible_in(other)
            suggestion = (F.when if suggestion is None else suggestion.when)(condition, F.lit(other))
    if suggestion is None:
        return []
    advice = F.when(
        suggestion == "ns",
        F.lit("timestamp_unit has no ns: convert the column to us"),
    ).otherwise(F.concat(F.lit("set timestamp_unit: "), suggestion))
    return [
        Check(
            reasons.TIMESTAMP_UNIT_MISMATCH,
            "event_ts",
            suggestion.isNotNull(),
            _format(
                f"event_ts '%s' is not a plausible time in {UNIT_NAMES[unit]} (before 1980 or after 2200); "
                f"it looks like %s: %s on source {_escape(source.name)}",
                F.col("event_ts_text"),
                F.element_at(F.create_map(*[F.lit(x) for kv in UNIT_NAMES.items() for x in kv]), suggestion),
                advice,
            ),
        )
    ]


def _unit_description(source: SourceSettings) -> str:
    if source.timestamp_unit == "format":
        return f"a timestamp in the format '{source.timestamp_format}'"
    return UNIT_DESCRIPTIONS[source.timestamp_unit]


def _not_finite(value: Column) -> Column:
    """True for null, NaN and +-infinity."""
    return value.isNull() | F.isnan(value) | value.isin(float("inf"), float("-inf"))


def _escape(text: str) -> str:
    """Make ``text`` literal inside a format_string pattern."""
    return text.replace("%", "%%")


def _format(pattern: str, *values: Column) -> Column:
    return F.format_string(pattern, *values)
