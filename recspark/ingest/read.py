"""Read one configured source into the bronze layout: every row as read, every value a string.

Bronze columns: ``source`` (the source's name), ``source_file`` (``input_file_name()``),
``raw_record`` (the row as read), ``is_malformed``, the raw canonical columns of the source's
kind (:data:`RAW_COLUMNS`; canonical columns the source does not map are null) and
``read_order`` (a long that increases with a record's position within its file: the order key
for "the last-written row wins"; not a line number and not contiguous).

Decisions:

* Types are never inferred: CSV and JSON are read with an explicit all-string schema, Parquet
  columns are cast to string (array columns joined with ``genre_separator``).
* CSV uses Spark's reader in PERMISSIVE mode with a corrupt-record column, so a row with too few
  or too many fields is kept, flagged ``is_malformed`` and carries Spark's raw text of the line.
  The delimiter may be multi-character (``::``). Quoting follows RFC 4180 (a quote inside a quoted
  field is doubled); ``quote: ""`` turns quoting off. Files of one source must share one layout.
* With quoting on and ``multiline: true`` (the default) a quoted field may hold line breaks and
  the record stays one row (Spark's multiLine mode; each file is read by one task). An unclosed
  quote therefore runs to the end of the file and the rest of the file becomes one malformed
  row. ``multiline: false`` reads one record per line (large files split across tasks); a quoted
  line break would then split a record into pieces, so use it only for files without one.
* ``raw_record`` of a well-formed CSV row is its fields re-joined with the delimiter (quoted
  again where they hold the delimiter or the quote); of a JSON or Parquet row, a JSON object of
  the mapped fields. JSON numbers, booleans and nested values become their JSON text.
* Parquet partition values held only in directory names (``key=value/``) are not read; map
  columns stored in the files.
* Before Spark reads anything, the paths are listed (globs and directories expanded, files named
  ``_*`` or ``.*`` inside directories skipped) and the first line of each CSV file is checked, so
  a missing path or a header without the mapped columns raises :class:`IngestInputError` naming
  the file, instead of failing later inside a Spark task. Empty files yield zero rows and a
  logged warning; :func:`check_not_empty` turns a source without any row into
  :class:`EmptyInputError`.
* A source without an event time column (``event_time`` set, event_ts unmapped) gets its raw
  ``event_ts`` filled here as an ISO-8601 text: the run date at 00:00 UTC, the file's
  modification time or the configured constant.
* Genre flag columns (``genre_flag_columns``) become the raw ``genres`` value: the names of the
  flags that hold ``1``, joined with ``genre_separator``; any other flag value means "not this
  genre".
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.ingest.settings import (
    EVENT_TIME_CONSTANT,
    EVENT_TIME_FILE_MODIFIED,
    EVENT_TIME_RUN_DATE,
    KIND_COLUMNS,
    SourceSettings,
    SourceConfigError,
    event_time_constant,
    event_time_mode,
    validate_source,
)

log = logging.getLogger(__name__)

RAW_COLUMNS = KIND_COLUMNS
CORRUPT_RECORD = "_corrupt_record"
FILE_MODIFIED = "_file_modified"
ISO_PATTERN = "yyyy-MM-dd HH:mm:ss.SSSSSSXXX"  # Spark pattern of a filled event_ts text


class IngestInputError(ValueError):
    """Input files that cannot be read as configured; the message names the file and the problem."""


class EmptyInputError(IngestInputError):
    """A source yielded no rows (no files, only 0-byte files, or only headers)."""


@dataclass(frozen=True)
class InputFile:
    path: str  # fully qualified, e.g. file:/data/ratings.csv
    size: int  # bytes
    modified_ms: int = 0  # modification time, milliseconds since the epoch (UTC)


def bronze_schema(kind: str) -> T.StructType:
    """The bronze layout of a source kind (all raw canonical columns are strings)."""
    return T.StructType(
        [
            T.StructField("source", T.StringType(), False),
            T.StructField("source_file", T.StringType(), True),
            T.StructField("raw_record", T.StringType(), True),
            T.StructField("is_malformed", T.BooleanType(), False),
            *[T.StructField(name, T.StringType(), True) for name in RAW_COLUMNS[kind]],
            T.StructField("read_order", T.LongType(), True),
        ]
    )


def read_source(
    spark: SparkSession,
    source: SourceSettings,
    files: list[InputFile] | None = None,
    run_date: dt.date | None = None,
) -> DataFrame:
    """Read every file of ``source`` into the bronze layout (one row per input row, nothing dropped).

    ``files``: read only these (e.g. the new files of an incremental night, from
    :func:`list_input_files`); default: every file the source's paths match. ``run_date`` fills
    event_ts for ``event_time: run_date``.
    Raises :class:`~recspark.ingest.settings.SourceConfigError` for an inconsistent source definition and
    :class:`IngestInputError` for a missing path or a CSV header without the mapped columns.
    """
    check_source(source)
    if event_time_mode(source) == EVENT_TIME_RUN_DATE and run_date is None:
        raise ValueError(f"source {source.name!r}: event_time run_date needs the run date (run_date=...)")
    charset = spark_charset(spark, source.encoding)
    files = list_input_files(spark, source.paths) if files is None else files
    if source.format == "csv":
        first_lines = {f.path: first_non_blank_line(spark, f.path, charset) for f in files if f.size}
        non_empty = [f for f in files if first_lines.get(f.path) is not None]
    else:
        first_lines = {}
        non_empty = [f for f in files if f.size]
    for empty in [f for f in files if f not in non_empty]:
        log.warning("source %s: %s is empty; it yields zero rows", source.name, empty.path)
    if not non_empty:
        return spark.createDataFrame([], bronze_schema(source.kind))
    paths = [f.path for f in non_empty]
    if source.format == "csv":
        return _read_csv(spark, source, paths, [first_lines[p] for p in paths], charset, run_date)
    if source.format == "json":
        return _read_json(spark, source, paths, charset, run_date)
    return _read_parquet(spark, source, paths, run_date)


def check_source(source: SourceSettings) -> None:
    """Raise SourceConfigError when ``source`` cannot describe a readable input (checked before
    any I/O; the checks are :func:`~recspark.ingest.settings.validate_source`)."""
    validate_source(source)


def check_not_empty(source: SourceSettings, files: list[InputFile], rows_read: int) -> None:
    """Raise :class:`EmptyInputError` when ``source`` yielded no rows from ``files``.

    The message names the source, its paths and why there is nothing (no files, 0-byte files,
    files without data rows) and how to accept an empty night. Call it with the bronze row count
    of the source, before anything is written.
    """
    if rows_read:
        return
    if not files:
        why = "the paths match no files (empty directory?)"
    elif all(f.size == 0 for f in files):
        why = f"every file is 0 bytes: {[f.path for f in files]}"
    else:
        why = f"the files hold no data rows (header only?): {[f.path for f in files]}"
    raise EmptyInputError(
        f"source {source.name!r} ({', '.join(source.paths)}) yielded no rows: {why}. Nothing was "
        "written. If the night really had no data, rerun with --allow-empty "
        "(ingest.allow_empty: true); stored data is then kept as it is."
    )


def spark_charset(spark: SparkSession, encoding: str) -> str:
    """A charset name the JVM knows for ``encoding`` (Python aliases such as latin-1 are mapped)."""
    java_charset = spark.sparkContext._jvm.java.nio.charset.Charset
    candidates = [encoding]
    try:
        candidates.append(codecs.lookup(encoding).name)
    except LookupError:
        pass
    for name in candidates:
        try:
            if java_charset.isSupported(name):
                return name
        except Py4JJavaError:  # an illegal charset name
            continue
    raise SourceConfigError(f"unknown encoding {encoding!r}")


def list_input_files(spark: SparkSession, paths: list[str]) -> list[InputFile]:
    """Expand globs and directories (recursively) into files, in a stable sorted order.

    Any Hadoop file system URI works (file:, s3a:, abfss:, ...). A path that matches nothing
    raises IngestInputError; an empty directory yields no files.
    """
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    files: dict[str, InputFile] = {}
    for pattern in paths:
        hadoop_path = jvm.org.apache.hadoop.fs.Path(pattern)
        fs = hadoop_path.getFileSystem(hadoop_conf)
        statuses = fs.globStatus(hadoop_path)
        if not statuses:
            raise IngestInputError(f"{pattern}: path does not exist")
        for status in statuses:
            if not status.isDirectory():
                files[status.getPath().toString()] = _input_file(status)
                continue
            listing = fs.listFiles(status.getPath(), True)
            while listing.hasNext():
                entry = listing.next()
                if not entry.getPath().getName().startswith(("_", ".")):
                    files[entry.getPath().toString()] = _input_file(entry)
    return [files[p] for p in sorted(files)]


def _input_file(status) -> InputFile:
    """InputFile of a Hadoop FileStatus."""
    return InputFile(status.getPath().toString(), status.getLen(), status.getModificationTime())


def first_non_blank_line(spark: SparkSession, path: str, charset: str) -> str | None:
    """The first line of ``path`` holding more than whitespace, decoded with ``charset``; None if
    there is none. Compressed files (.gz, .bz2, ...) are decompressed by their Hadoop codec."""
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    stream = hadoop_path.getFileSystem(hadoop_conf).open(hadoop_path)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(hadoop_conf).getCodec(hadoop_path)
    if codec is not None:
        stream = codec.createInputStream(stream)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, charset))
    try:
        line = reader.readLine()
        while line is not None and not line.strip():
            line = reader.readLine()
        return line
    finally:
        reader.close()


def split_fields(line: str, source: SourceSettings) -> list[str]:
    """Split one CSV line into stripped field texts the way the source is configured."""
    if len(source.delimiter) == 1:
        reader = csv.reader(
            [line],
            delimiter=source.delimiter,
            quotechar=source.quote or None,
            quoting=csv.QUOTE_MINIMAL if source.quote else csv.QUOTE_NONE,
        )
        fields = next(reader)
    else:
        fields = line.split(source.delimiter)
    return [field.strip().lstrip("\ufeff") for field in fields]


def _mapped_file_columns(source: SourceSettings) -> list[str]:
    """File columns the source reads, in mapping order, without repeats."""
    return list(dict.fromkeys([*source.columns.values(), *source.genre_flag_columns]))


def _csv_layout(
    source: SourceSettings, paths: list[str], first_lines: list[str]
) -> tuple[list[str], dict[str, int]]:
    """Field names of the files (header names, or _c0.. without a header) and each mapped file
    column's position. Raises IngestInputError naming the file whose first line does not fit."""
    mapped = _mapped_file_columns(source)
    if not source.header:
        width = len(split_fields(first_lines[0], source))
        positions = {}
        for name in mapped:
            index = name[2:]
            if not (name.startswith("_c") and index.isdigit()):
                raise SourceConfigError(
                    f"source {source.name!r}: files without a header are addressed as _c0, _c1, ...; "
                    f"got {name!r}"
                )
            if int(index) >= width:
                raise IngestInputError(
                    f"{paths[0]}: column {name} is mapped but the first line has only {width} fields "
                    f"separated by {source.delimiter!r}"
                )
            positions[name] = int(index)
        return [f"_c{i}" for i in range(width)], positions
    header = split_fields(first_lines[0], source)
    for path, line in zip(paths, first_lines):
        found = split_fields(line, source)
        missing = [name for name in mapped if name not in found]
        if missing:
            hint = ""
            if all(name in line for name in mapped):
                hint = (
                    " (wrong delimiter? the header holds the names but does not split on "
                    f"{source.delimiter!r})"
                )
            raise IngestInputError(
                f"{path}: header does not contain the mapped column(s) {missing}; "
                f"expected {mapped}, found {found}{hint}"
            )
        if found != header:
            raise IngestInputError(
                f"{path}: header {found} differs from {paths[0]}'s header {header}; "
                "all files of a source must share one layout"
            )
    return header, {name: header.index(name) for name in mapped}


def _quoted(name: str) -> Column:
    return F.col("`" + name.replace("`", "``") + "`")


def _render_csv_field(field: Column, source: SourceSettings) -> Column:
    """A field as CSV text: empty for null, quoted (RFC 4180) when it holds the delimiter or quote."""
    text = F.coalesce(field, F.lit(""))
    if not source.quote:
        return text
    needs_quotes = text.contains(source.delimiter) | text.contains(source.quote)
    doubled = F.replace(text, F.lit(source.quote), F.lit(source.quote * 2))
    return F.when(needs_quotes, F.concat(F.lit(source.quote), doubled, F.lit(source.quote))).otherwise(text)


def _bronze(
    df: DataFrame,
    source: SourceSettings,
    raw_record: Column,
    is_malformed: Column,
    field: Callable[[str], Column],
    run_date: dt.date | None,
) -> DataFrame:
    """Select the bronze layout; ``field(file_column)`` gives the string Column of a file column.

    ``df`` is the file scan itself (``read_order`` must be taken before any shuffle) and holds
    the file's modification time in :data:`FILE_MODIFIED`."""
    canonical = {name: field(file_column) for name, file_column in source.columns.items()}
    if source.genre_flag_columns:
        flagged = [
            F.when(F.trim(field(file_column)) == "1", F.lit(genre))
            for file_column, genre in source.genre_flag_columns.items()
        ]
        genres_column = [canonical["genres"]] if "genres" in canonical else []
        canonical["genres"] = F.concat_ws(source.genre_separator, *genres_column, *flagged)
    if event_time_mode(source):
        canonical["event_ts"] = _filled_event_ts(source, run_date)
    return df.select(
        F.lit(source.name).alias("source"),
        F.input_file_name().alias("source_file"),
        raw_record.alias("raw_record"),
        is_malformed.alias("is_malformed"),
        *[canonical.get(name, F.lit(None).cast("string")).alias(name) for name in RAW_COLUMNS[source.kind]],
        F.monotonically_increasing_id().alias("read_order"),
    )


def _filled_event_ts(source: SourceSettings, run_date: dt.date | None) -> Column:
    """ISO-8601 text of the event time of a source without an event_ts column."""
    mode = event_time_mode(source)
    if mode == EVENT_TIME_FILE_MODIFIED:
        return F.date_format(F.col(FILE_MODIFIED), ISO_PATTERN)
    if mode == EVENT_TIME_CONSTANT:
        return F.lit(event_time_constant(source).isoformat())
    midnight = dt.datetime.combine(run_date, dt.time(), tzinfo=dt.timezone.utc)
    return F.lit(midnight.isoformat())


def _with_file_modified(df: DataFrame, source: SourceSettings) -> DataFrame:
    """With ``event_time: file_modified``, add the scanned file's modification time (Spark's
    hidden ``_metadata`` column) as :data:`FILE_MODIFIED`; otherwise ``df`` unchanged."""
    if event_time_mode(source) != EVENT_TIME_FILE_MODIFIED:
        return df
    return df.withColumn(FILE_MODIFIED, F.col("_metadata.file_modification_time"))


def _read_csv(
    spark: SparkSession,
    source: SourceSettings,
    paths: list[str],
    first_lines: list[str],
    charset: str,
    run_date: dt.date | None,
) -> DataFrame:
    names, positions = _csv_layout(source, paths, first_lines)
    positional = [f"_c{i}" for i in range(len(names))]
    # Spark logs a warning per file when schema names differ from the header; duplicate header
    # names cannot be schema names, so those files are read positionally (and Spark warns).
    schema_names = names if len(set(names)) == len(names) else positional
    schema = T.StructType(
        [T.StructField(name, T.StringType(), True) for name in schema_names]
        + [T.StructField(CORRUPT_RECORD, T.StringType(), True)]
    )
    df = (
        spark.read.schema(schema)
        .options(
            sep=source.delimiter,
            header=source.header,
            encoding=charset,
            quote=source.quote,
            escape=source.quote,
            multiLine=source.multiline and bool(source.quote),
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT_RECORD,
        )
        .csv(paths)
    )
    df = _with_file_modified(df, source)
    df = df.toDF(*positional, CORRUPT_RECORD, *df.columns[len(positional) + 1 :])
    rejoined = F.concat_ws(source.delimiter, *[_render_csv_field(F.col(c), source) for c in positional])
    corrupt = F.col(CORRUPT_RECORD)
    return _bronze(
        df,
        source,
        raw_record=F.coalesce(corrupt, rejoined),
        is_malformed=corrupt.isNotNull(),
        field=lambda file_column: F.col(f"_c{positions[file_column]}"),
        run_date=run_date,
    )


def _read_json(
    spark: SparkSession, source: SourceSettings, paths: list[str], charset: str, run_date: dt.date | None
) -> DataFrame:
    mapped = _mapped_file_columns(source)
    schema = T.StructType(
        [T.StructField(name, T.StringType(), True) for name in mapped]
        + [T.StructField(CORRUPT_RECORD, T.StringType(), True)]
    )
    df = (
        spark.read.schema(schema)
        .options(encoding=charset, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT_RECORD)
        .json(paths)
    )
    df = _with_file_modified(df, source)
    corrupt = F.col(CORRUPT_RECORD)
    return _bronze(
        df,
        source,
        raw_record=F.coalesce(corrupt, F.to_json(F.struct(*[_quoted(name) for name in mapped]))),
        is_malformed=corrupt.isNotNull(),
        field=_quoted,
        run_date=run_date,
    )


def _read_parquet(
    spark: SparkSession, source: SourceSettings, paths: list[str], run_date: dt.date | None
) -> DataFrame:
    df = spark.read.parquet(*paths)
    mapped = _mapped_file_columns(source)
    missing = [name for name in mapped if name not in df.columns]
    if missing:
        raise IngestInputError(
            f"{paths[0]}: Parquet schema does not contain the mapped column(s) {missing}; found {df.columns}"
        )
    types = {f.name: f.dataType for f in df.schema.fields}
    df = _with_file_modified(df, source)

    def as_string(name: str) -> Column:
        if isinstance(types[name], T.ArrayType):
            return F.array_join(_quoted(name).cast("array<string>"), source.genre_separator)
        return _quoted(name).cast("string")

    return _bronze(
        df,
        source,
        raw_record=F.to_json(F.struct(*[_quoted(name) for name in mapped])),
        is_malformed=F.lit(False),
        field=as_string,
        run_date=run_date,
    )
