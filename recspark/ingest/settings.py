"""Ingest settings: :class:`SourceSettings` (one input file set) and :class:`IngestSettings`.

Both validate themselves on construction (``__post_init__``) with plain Python, so a config
error is reported before any SparkSession exists. :func:`validate_source` runs the same source
checks on demand (e.g. after a field was changed). Errors are :class:`SourceConfigError`, a
ValueError whose message starts with ``source '<name>':`` and names the field at fault.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from recspark import schemas

KIND_COLUMNS = {
    "interactions": schemas.INTERACTION_RAW_COLUMNS,
    "items": schemas.ITEM_RAW_COLUMNS,
    "item_tags": schemas.ITEM_TAG_RAW_COLUMNS,
}
REQUIRED_COLUMNS = {
    "interactions": ["user_id", "item_id", "event_ts"],
    "items": ["item_id"],
    "item_tags": ["item_id", "tag"],
}
FORMATS = ("csv", "json", "parquet")
TIMESTAMP_UNITS = ("s", "ms", "us", "format", "iso")
EVENT_TIME_RUN_DATE = "run_date"
EVENT_TIME_FILE_MODIFIED = "file_modified"
EVENT_TIME_CONSTANT = "constant"
EVENT_TIME_HELP = "run_date | file_modified | constant <ISO timestamp>"
PRESETS = ("ml-latest-small", "ml-latest", "ml-100k", "ml-1m", "synthetic")


class SourceConfigError(ValueError):
    """A source or ingest setting that cannot work; the message names the source and field."""


@dataclass
class SourceSettings:
    """One input file set and how to map it onto the canonical schema.

    ``columns`` maps canonical names (user_id, item_id, rating, event_ts, event_type, weight for
    interactions; item_id, title, genres, text for items; item_id, tag for item_tags) to the column
    names in the file. Files without a header use Spark's positional names ``_c0``, ``_c1``, ...
    """

    name: str
    kind: str  # interactions | items | item_tags
    paths: list[str]
    columns: dict[str, str]
    format: str = "csv"  # csv (any delimiter, also multi-character) | json (lines) | parquet
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"
    quote: str = '"'
    # CSV with quoting on: a quoted field may hold line breaks (Spark multiLine; each file is then
    # read by one task). false: one record per line, files split across tasks; only for files
    # known to hold no quoted line break (such a record would be split into pieces).
    multiline: bool = True
    event_type: str = "interaction"  # used when no event_type column is mapped
    timestamp_unit: str = "s"  # s | ms | us (epoch numbers) | format (see timestamp_format) | iso
    timestamp_format: str | None = None  # Spark datetime pattern when timestamp_unit == format
    # Interactions without an event time column (event_ts unmapped): how to fill event_ts.
    # run_date (00:00 UTC of the run date) | file_modified (the file's modification time) |
    # constant <ISO timestamp> (e.g. "constant 2024-01-01T00:00:00Z"; no offset means UTC).
    event_time: str | None = None
    rating_min: float | None = None
    rating_max: float | None = None
    rating_required: bool = False  # a missing rating is a quarantine reason
    genre_separator: str = "|"
    # Items whose genres are one-hot flag columns (MovieLens 100k): file column -> genre name; a
    # row has the genre when that column holds 1. Combined with a mapped ``genres`` column if any.
    genre_flag_columns: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_source(self)


@dataclass
class IngestSettings:
    preset: str | None = "ml-latest-small"  # ml-latest-small | ml-latest | ml-100k | ml-1m | synthetic
    data_dir: str = "data/ml-latest-small"
    sources: list[SourceSettings] = field(default_factory=list)  # used with or instead of a preset
    future_tolerance_hours: float = 24.0  # events later than run date + this are quarantined
    # A source that yields no rows (empty directory, 0-byte or header-only files) fails the run
    # unless this says the night really had no data; then nothing already stored is replaced.
    allow_empty: bool = False
    # Read only files not yet in the ingest manifest (new or changed since ingested) and merge
    # their rows into silver; false re-reads every file of every source each run.
    incremental: bool = False

    @property
    def dataset_name(self) -> str:
        """What the interactions are called in metrics and reports: the preset, else the
        interactions sources' names joined by "+"."""
        if self.preset is not None:
            return self.preset
        return "+".join(s.name for s in self.sources if s.kind == "interactions")

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise SourceConfigError(f"ingest.preset must be one of {list(PRESETS)} or null, got {self.preset!r}")
        if self.future_tolerance_hours < 0:
            raise SourceConfigError(
                f"ingest.future_tolerance_hours must be >= 0, got {self.future_tolerance_hours!r}"
            )
        if self.preset is None and not any(s.kind == "interactions" for s in self.sources):
            raise SourceConfigError(
                "ingest: no interactions source configured: ingest.preset is null and ingest.sources has no "
                "source of kind interactions"
            )
        names = [s.name for s in self.sources]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise SourceConfigError(f"ingest.sources: source names must be unique, repeated: {repeated}")


def validate_source(source: SourceSettings) -> None:
    """Raise SourceConfigError when ``source`` cannot describe a readable input.

    Pure Python (no Spark, no file access): kind, format, paths, column mapping, event time,
    timestamp unit, delimiter, quote and rating range. The encoding is checked by the reader,
    which asks the JVM.
    """
    where = f"source {source.name!r}"
    if not str(source.name).strip():
        raise SourceConfigError("source name is empty")
    if source.kind not in KIND_COLUMNS:
        raise SourceConfigError(f"{where}: kind must be one of {sorted(KIND_COLUMNS)}, got {source.kind!r}")
    if source.format not in FORMATS:
        raise SourceConfigError(f"{where}: format must be one of {list(FORMATS)}, got {source.format!r}")
    if not source.paths:
        raise SourceConfigError(f"{where}: paths is empty")
    unknown = sorted(set(source.columns) - set(KIND_COLUMNS[source.kind]))
    if unknown:
        raise SourceConfigError(
            f"{where}: unknown canonical column(s) {unknown} for kind {source.kind}; "
            f"known: {KIND_COLUMNS[source.kind]}"
        )
    _validate_event_time(source, where)
    missing = [
        c
        for c in REQUIRED_COLUMNS[source.kind]
        if c not in source.columns and not (c == "event_ts" and source.event_time)
    ]
    if missing:
        hint = f" (or set event_time: {EVENT_TIME_HELP})" if "event_ts" in missing else ""
        raise SourceConfigError(f"{where}: columns must map {missing}{hint}")
    if source.kind == "interactions" and "event_type" not in source.columns and not source.event_type.strip():
        raise SourceConfigError(f"{where}: event_type is blank and no event_type column is mapped")
    if source.genre_flag_columns and source.kind != "items":
        raise SourceConfigError(f"{where}: genre_flag_columns only applies to kind items")
    if source.timestamp_unit not in TIMESTAMP_UNITS:
        raise SourceConfigError(
            f"{where}: timestamp_unit must be one of {list(TIMESTAMP_UNITS)}, got {source.timestamp_unit!r}"
        )
    if source.timestamp_unit == "format" and not source.timestamp_format:
        raise SourceConfigError(f"{where}: timestamp_unit format needs timestamp_format")
    if not source.delimiter:
        raise SourceConfigError(f"{where}: delimiter is empty")
    if len(source.quote) > 1:
        raise SourceConfigError(f"{where}: quote must be one character or empty, got {source.quote!r}")
    if not str(source.encoding).strip():
        raise SourceConfigError(f"{where}: encoding is empty")
    if source.rating_min is not None and source.rating_max is not None and source.rating_min > source.rating_max:
        raise SourceConfigError(
            f"{where}: rating_min {source.rating_min} is greater than rating_max {source.rating_max}"
        )


def event_time_constant(source: SourceSettings) -> dt.datetime:
    """The UTC instant of ``event_time: constant <ISO timestamp>`` (naive values are UTC)."""
    _, _, text = source.event_time.strip().partition(" ")
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise SourceConfigError(
            f"source {source.name!r}: event_time constant needs an ISO timestamp such as "
            f"2024-01-01T00:00:00Z, got {text.strip()!r}"
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def event_time_mode(source: SourceSettings) -> str | None:
    """run_date, file_modified, constant or None (event_ts is read from the file)."""
    if not source.event_time:
        return None
    return source.event_time.strip().split(" ", 1)[0]


def _validate_event_time(source: SourceSettings, where: str) -> None:
    if source.event_time is None:
        return
    if source.kind != "interactions":
        raise SourceConfigError(f"{where}: event_time only applies to kind interactions")
    if "event_ts" in source.columns:
        raise SourceConfigError(
            f"{where}: event_time is set but event_ts is mapped too; map event_ts or set event_time, not both"
        )
    mode = event_time_mode(source)
    if mode == EVENT_TIME_CONSTANT:
        event_time_constant(source)
    elif mode not in (EVENT_TIME_RUN_DATE, EVENT_TIME_FILE_MODIFIED) or source.event_time.strip() != mode:
        raise SourceConfigError(f"{where}: event_time must be {EVENT_TIME_HELP}, got {source.event_time!r}")
