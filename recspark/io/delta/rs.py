"""The embedded Delta engine: delta-rs (the ``deltalake`` package) commits, Spark writes the files.

Spark tasks write Parquet part files straight into the table folder (``mapInArrow``) and return
their path, size and column statistics; the driver commits them as ONE Delta transaction with
``deltalake``. Reads list the active files of a (time-travel) version and read them with Spark.
A write that fails before committing deletes the part files it wrote (they carry the write's id
in their names), so the previous version stays what readers see.

Partition values are stored in the Delta log; files of partitions whose values are plain
(letters, digits, ``_.-``) go into Hive-style ``col=value`` folders for readability.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.io.delta.common import (
    Commit,
    ConcurrentWriteError,
    DeltaTableError,
    as_nullable,
    partition_value_to_string,
)

log = logging.getLogger(__name__)

_PLAIN_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_STRING_STATS_MAX_CHARS = 32
_WRITTEN_FILES_SCHEMA = "path string, size long, partition_values string, stats string"


def _stats_value(value: Any, round_up: bool) -> Any:
    """A column statistic as Delta's JSON stats expect it (timestamps in UTC, millisecond precision)."""
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.timezone.utc) if value.tzinfo else value
        millis = value.replace(microsecond=(value.microsecond // 1000) * 1000)
        if round_up and millis != value:
            millis += dt.timedelta(milliseconds=1)
        return millis.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class _FileStats:
    """Running numRecords / nullCount / min / max of one Parquet part file."""

    def __init__(self, schema: pa.Schema):
        self.num_records = 0
        self.null_count: dict[str, int] = {}
        self.min: dict[str, Any] = {}
        self.max: dict[str, Any] = {}
        self.skip_min_max: set[str] = set()
        self.schema = schema

    def update(self, table: pa.Table) -> None:
        self.num_records += table.num_rows
        for field in self.schema:
            if pa.types.is_nested(field.type):
                continue
            column = table.column(field.name)
            self.null_count[field.name] = self.null_count.get(field.name, 0) + column.null_count
            if field.name in self.skip_min_max or not (
                pa.types.is_integer(field.type)
                or pa.types.is_floating(field.type)
                or pa.types.is_string(field.type)
                or pa.types.is_date(field.type)
                or pa.types.is_timestamp(field.type)
            ):
                continue
            if pa.types.is_floating(field.type) and pc.any(pc.is_nan(column)).as_py():
                self.skip_min_max.add(field.name)
                continue
            bounds = pc.min_max(column).as_py()
            low, high = bounds["min"], bounds["max"]
            if low is None:
                continue
            if pa.types.is_string(field.type) and max(len(low), len(high)) > _STRING_STATS_MAX_CHARS:
                self.skip_min_max.add(field.name)
                continue
            self.min[field.name] = low if field.name not in self.min else min(self.min[field.name], low)
            self.max[field.name] = high if field.name not in self.max else max(self.max[field.name], high)

    def to_json(self) -> str:
        keep = [name for name in self.min if name not in self.skip_min_max]
        return json.dumps(
            {
                "numRecords": self.num_records,
                "nullCount": self.null_count,
                "minValues": {n: _stats_value(self.min[n], round_up=False) for n in keep},
                "maxValues": {n: _stats_value(self.max[n], round_up=True) for n in keep},
            }
        )


def _make_part_file_writer(table_uri: str, arrow_schema: pa.Schema, partition_by: list[str], write_id: str):
    """Build the mapInArrow function that writes a task's rows into Parquet part files.

    Yields one row per file: its table-relative path, size in bytes, partition values (JSON) and
    Delta column statistics (JSON).
    """
    data_schema = pa.schema([f for f in arrow_schema if f.name not in partition_by])

    def write_part_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        filesystem, root = pafs.FileSystem.from_uri(table_uri)
        task_id = uuid.uuid4().hex[:12]
        open_files: dict[tuple, tuple[pq.ParquetWriter, str, _FileStats]] = {}

        def file_for(key: tuple) -> tuple[pq.ParquetWriter, str, _FileStats]:
            if key not in open_files:
                values = [partition_value_to_string(v) for v in key]
                plain = all(v is not None and _PLAIN_PARTITION_VALUE.match(v) for v in values)
                folder = "/".join(f"{c}={v}" for c, v in zip(partition_by, values)) if plain else ""
                name = f"part-{len(open_files):05d}-{write_id}-{task_id}.snappy.parquet"
                relative = f"{folder}/{name}" if folder else name
                if folder:
                    filesystem.create_dir(f"{root}/{folder}", recursive=True)
                sink = filesystem.open_output_stream(f"{root}/{relative}")
                writer = pq.ParquetWriter(sink, data_schema, compression="snappy")
                open_files[key] = (writer, relative, _FileStats(data_schema))
            return open_files[key]

        for batch in batches:
            if batch.num_rows == 0:
                continue
            table = pa.Table.from_batches([batch]).cast(arrow_schema)
            if partition_by:
                keys = table.select(partition_by).group_by(partition_by).aggregate([]).to_pylist()
                groups = []
                for key in keys:
                    mask = None
                    for column in partition_by:
                        value = key[column]
                        cond = pc.is_null(table[column]) if value is None else pc.equal(table[column], value)
                        mask = cond if mask is None else pc.and_(mask, cond)
                    groups.append((tuple(key[c] for c in partition_by), table.filter(mask)))
            else:
                groups = [((), table)]
            for key, rows in groups:
                writer, _, stats = file_for(key)
                data = rows.select(data_schema.names)
                writer.write_table(data)
                stats.update(data)

        paths, sizes, partitions, stats_json = [], [], [], []
        for key, (writer, relative, stats) in open_files.items():
            writer.close()
            paths.append(relative)
            sizes.append(filesystem.get_file_info(f"{root}/{relative}").size)
            partitions.append(
                json.dumps({c: partition_value_to_string(v) for c, v in zip(partition_by, key)})
            )
            stats_json.append(stats.to_json())
        if paths:
            yield pa.RecordBatch.from_arrays(
                [pa.array(paths), pa.array(sizes, pa.int64()), pa.array(partitions), pa.array(stats_json)],
                names=["path", "size", "partition_values", "stats"],
            )

    return write_part_files


@dataclass(frozen=True)
class ActiveFiles:
    """The Parquet files that make up one version of a Delta table, for readers without Delta
    support (DuckDB, plain Arrow): ``columns`` are (name, Delta type name) in table order;
    partition columns are not stored in the files, so each file comes with its partition values
    (as strings, None for null)."""

    version: int
    columns: list[tuple[str, str]]
    partition_columns: list[str]
    files: list[tuple[str, dict[str, str | None]]]


def active_files(location: str, version: int | None = None) -> ActiveFiles:
    """The active files of the table at ``location`` (latest ``version`` by default), read from
    the Delta log with ``deltalake`` alone: no Spark session needed."""
    from deltalake import DeltaTable

    try:
        table = DeltaTable(location, version=version)
    except Exception as exc:  # deltalake raises several error types for a missing table/version
        raise DeltaTableError(f"cannot open Delta table at {location} (version {version}): {exc}") from exc
    return _active_files_of(table, location)


def _active_files_of(table, location: str) -> ActiveFiles:
    """:class:`ActiveFiles` of an opened deltalake ``DeltaTable`` stored at ``location``."""
    fields = json.loads(table.schema().to_json())["fields"]
    columns = [(f["name"], f["type"] if isinstance(f["type"], str) else f["type"]["type"]) for f in fields]
    partition_columns = list(table.metadata().partition_columns)
    root = location.rstrip("/")
    if "://" not in root:
        root = os.path.abspath(root)
    files = [
        (
            f"{root}/{a['path']}",
            {c: partition_value_to_string(a[f"partition.{c}"]) for c in partition_columns},
        )
        for a in pa.table(table.get_add_actions(flatten=True)).to_pylist()
    ]
    return ActiveFiles(table.version(), columns, partition_columns, files)


class DeltaRsEngine:
    """Delta tables through delta-rs; every method takes the table's location (URI or path)."""

    name = "delta-rs"

    def __init__(self, spark: SparkSession):
        self.spark = spark

    def exists(self, location: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(location)

    def open(self, location: str, version: int | None = None):
        """The deltalake ``DeltaTable`` at ``location`` (``version``: time travel)."""
        from deltalake import DeltaTable

        try:
            return DeltaTable(location, version=version)
        except Exception as exc:  # deltalake raises several error types for a missing table/version
            raise DeltaTableError(f"cannot open Delta table at {location} (version {version}): {exc}") from exc

    def version(self, location: str) -> int:
        return self.open(location).version()

    def history(self, location: str, limit: int | None) -> list[Commit]:
        commits = []
        for entry in self.open(location).history(limit):
            metadata = {k: v for k, v in entry.items() if k.startswith("recspark.")}
            commits.append(
                Commit(
                    version=int(entry["version"]),
                    timestamp=dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.timezone.utc),
                    operation=str(entry.get("operation", "")),
                    metadata=metadata,
                )
            )
        return commits

    def schema(self, location: str) -> T.StructType:
        return T.StructType.fromJson(json.loads(self.open(location).schema().to_json()))

    def partition_columns(self, location: str) -> list[str]:
        return list(self.open(location).metadata().partition_columns)

    def read(self, location: str, version: int | None) -> tuple[DataFrame, int]:
        """The table at ``version`` (latest when None) and the version actually read."""
        table = self.open(location, version)
        return self._read_table(table, location), table.version()

    def _read_table(self, table, location: str) -> DataFrame:
        schema = as_nullable(T.StructType.fromJson(json.loads(table.schema().to_json())))
        snapshot = _active_files_of(table, location)
        partition_columns = snapshot.partition_columns
        data_schema = T.StructType([f for f in schema.fields if f.name not in partition_columns])
        if not snapshot.files:
            return self.spark.createDataFrame([], schema)
        uris = [uri if "://" in uri else "file://" + uri for uri, _ in snapshot.files]
        frame = self.spark.read.schema(data_schema).parquet(*uris)
        if partition_columns:
            partition_rows = [
                (os.path.basename(uri), *[values[c] for c in partition_columns]) for uri, values in snapshot.files
            ]
            partitions = self.spark.createDataFrame(
                partition_rows,
                T.StructType(
                    [T.StructField("_file_name", T.StringType())]
                    + [T.StructField(c, T.StringType()) for c in partition_columns]
                ),
            )
            frame = frame.withColumn("_file_name", F.col("_metadata.file_name")).join(
                F.broadcast(partitions), "_file_name"
            )
        return frame.select(
            *[F.col(f.name).cast(f.dataType) if f.name in partition_columns else F.col(f.name) for f in schema.fields]
        )

    def write(self, df: DataFrame, location: str, mode: str, partition_by: list[str],
              replace_partition: dict[str, Any] | None, commit_metadata: dict[str, str],
              overwrite_schema: bool = False, expected_version: int | None = None) -> int:
        """Write the part files of ``df`` and commit them as one transaction; the new version.

        ``expected_version``: the version the data was derived from; the commit lands exactly on
        the next version or raises :class:`ConcurrentWriteError`. Without it (a blind write) a
        commit that loses the race is retried on the new version when that is safe: appends, and
        partition replaces whose partition the other commits did not touch.
        """
        from deltalake import Schema
        from deltalake.transaction import AddAction, CommitProperties

        spark_schema = as_nullable(df.schema)
        arrow_schema = to_arrow_schema(spark_schema)
        delta_schema = Schema.from_json(spark_schema.json())
        write_id = uuid.uuid4().hex[:12]
        if "://" not in location:
            os.makedirs(location, exist_ok=True)
        try:
            written = df.mapInArrow(
                _make_part_file_writer(location, arrow_schema, partition_by, write_id), _WRITTEN_FILES_SCHEMA
            ).collect()
            now_ms = int(time.time() * 1000)
            actions = [
                AddAction(row.path, row.size, json.loads(row.partition_values), now_ms, True, row.stats)
                for row in written
            ]
            n_rows = sum(json.loads(row.stats)["numRecords"] for row in written)
            # No retries inside delta-rs: its conflict checker rebases overwrites onto commits the
            # data never saw; this module decides what may be retried.
            properties = CommitProperties(
                custom_metadata={**commit_metadata, "recspark.rows": str(n_rows)}, max_commit_retries=0
            )
            return self._commit(location, actions, mode, delta_schema, partition_by, replace_partition,
                                properties, expected_version)
        except BaseException:
            _delete_files_of_write(location, write_id)
            raise

    def _commit(self, location, actions, mode, delta_schema, partition_by, replace_partition, properties,
                expected_version: int | None, max_attempts: int = 10) -> int:
        """Commit ``actions`` on ``expected_version`` (or, blind, on the latest version); the new version."""
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import create_table_with_add_actions

        filters = (
            [(c, "=", partition_value_to_string(v)) for c, v in replace_partition.items()] if replace_partition else None
        )
        for _ in range(max_attempts):
            if not self.exists(location):
                if expected_version is not None:
                    raise ConcurrentWriteError(location, expected_version, None, [])
                try:
                    create_table_with_add_actions(
                        location, delta_schema, actions, mode="error", partition_by=partition_by or None,
                        commit_properties=properties,
                    )
                    return 0
                except Exception:
                    if not self.exists(location):
                        raise
                    if mode != "append":
                        raise ConcurrentWriteError(location, None, self.version(location), self._winners(location, -1))
                    continue  # another writer created the table first: append to it
            current = self.version(location)
            base = current if expected_version is None else expected_version
            if current != base:
                raise ConcurrentWriteError(location, base, current, self._winners(location, base))
            try:
                self.open(location, base).create_write_transaction(
                    actions, mode=mode, schema=delta_schema, partition_by=partition_by or None,
                    partition_filters=filters, commit_properties=properties,
                )
                return base + 1
            except CommitFailedError:
                current = self.version(location)
                if current == base:
                    raise  # not a lost race
                winners = self.commits(location, base)
                if expected_version is not None or _conflicts(mode, replace_partition, winners):
                    raise ConcurrentWriteError(location, base, current, [w.commit for w in winners]) from None
                log.info("commit to %s lost the race to version %d; retrying on it", location, current)
        raise ConcurrentWriteError(location, None, self.version(location), [])

    def _winners(self, location: str, after: int) -> list[Commit]:
        return [c.commit for c in self.commits(location, after)]

    def commits(self, location: str, after: int) -> list["LoggedCommit"]:
        """The commits after version ``after`` as read from the log (newest last)."""
        filesystem, root = pafs.FileSystem.from_uri(location if "://" in location else os.path.abspath(location))
        commits = []
        version = after + 1
        while True:
            try:
                with filesystem.open_input_stream(f"{root}/_delta_log/{version:020d}.json") as stream:
                    lines = stream.read().decode().splitlines()
            except (FileNotFoundError, OSError):
                return commits
            commits.append(LoggedCommit.parse(version, lines))
            version += 1

    def vacuum(self, location: str, retention_hours: int) -> list[str]:
        return self.open(location).vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
        )


def _delete_files_of_write(location: str, write_id: str) -> None:
    """Remove the part files of a write that did not commit (never referenced by the log)."""
    filesystem, root = pafs.FileSystem.from_uri(location if "://" in location else os.path.abspath(location))
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except OSError:
        return
    for info in infos:
        if info.type == pafs.FileType.File and write_id in info.base_name and "_delta_log" not in info.path:
            filesystem.delete_file(info.path)
    log.warning("write %s to %s failed; removed its uncommitted part files", write_id, location)


@dataclass(frozen=True)
class LoggedCommit:
    """One commit file of the log: its recspark metadata (as :class:`Commit`), the partition values
    of the files it added or removed, and whether it changed the table's metadata or protocol."""

    commit: Commit
    touched_partitions: list[dict[str, str | None]]
    changes_metadata: bool

    @classmethod
    def parse(cls, version: int, lines: list[str]) -> "LoggedCommit":
        info, partitions, changes_metadata = {}, [], False
        for line in lines:
            if not line.strip():
                continue
            action = json.loads(line)
            if "commitInfo" in action:
                info = action["commitInfo"]
            for kind in ("add", "remove"):
                if kind in action:
                    partitions.append(action[kind].get("partitionValues") or {})
            changes_metadata = changes_metadata or "metaData" in action or "protocol" in action
        commit = Commit(
            version=version,
            timestamp=dt.datetime.fromtimestamp(info.get("timestamp", 0) / 1000, dt.timezone.utc),
            operation=str(info.get("operation", "")),
            metadata={k: v for k, v in info.items() if k.startswith("recspark.")},
        )
        return cls(commit, partitions, changes_metadata)


def _conflicts(mode: str, replace_partition: dict[str, Any] | None, winners: list[LoggedCommit]) -> bool:
    """Whether a blind write must not be retried on top of ``winners``: any metadata change; for a
    full overwrite any data change; for a partition replace a change in that partition."""
    if any(w.changes_metadata for w in winners):
        return True
    if mode == "append" and not replace_partition:
        return False
    if not replace_partition:
        return any(w.touched_partitions for w in winners)
    ours = {c: partition_value_to_string(v) for c, v in replace_partition.items()}
    return any(all(p.get(c) == v for c, v in ours.items()) for w in winners for p in w.touched_partitions)
