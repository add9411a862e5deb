"""The one module that reads and writes Delta tables.

:class:`DeltaTables` offers write / read / version / history over logical table names from the
config, with two engines:

``delta-spark``
    Plain ``df.write.format("delta")``. Chosen by ``delta.engine: auto`` when the session has the
    Delta SQL extension configured (clusters, Databricks, ``--packages io.delta:delta-spark_2.12``).

``delta-rs`` (the embedded default)
    Spark tasks write Parquet part files straight into the table folder (``mapInArrow``) and return
    their path, size and column statistics; the driver commits them as ONE Delta transaction with
    the ``deltalake`` package. Reads list the active files of a (time-travel) version and read them
    with Spark. Because that transaction API does not check schemas, this module does: an append or
    partition overwrite whose schema differs from the table's raises :class:`SchemaMismatchError`,
    as does a full overwrite with a new schema unless ``overwrite_schema=True``.

Atomicity: files become visible only through the commit. A write that fails before committing
deletes the part files it wrote (they carry the write's id in their names) and the previous
version stays what readers see. Nullability is not part of the contract: every column is stored
as nullable, as Spark does when it reads Parquet.

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

log = logging.getLogger(__name__)

ENGINES = ("auto", "delta-rs", "delta-spark")
_PLAIN_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_STRING_STATS_MAX_CHARS = 32
_WRITTEN_FILES_SCHEMA = "path string, size long, partition_values string, stats string"


class DeltaTableError(RuntimeError):
    """A Delta table cannot be read or written as asked."""


class SchemaMismatchError(DeltaTableError):
    """The DataFrame's schema differs from the table's."""


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history."""

    version: int
    timestamp: dt.datetime
    operation: str
    metadata: dict[str, Any]  # recspark.* commit metadata (run id, stage, rows, ...)


def choose_engine(spark: SparkSession, engine: str) -> str:
    """Resolve ``auto`` to ``delta-spark`` when the Delta SQL extension is configured, else ``delta-rs``."""
    if engine not in ENGINES:
        raise ValueError(f"delta.engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    return "delta-spark" if "DeltaSparkSessionExtension" in extensions else "delta-rs"


def _schema_diff(expected: T.StructType, actual: T.StructType) -> str:
    """Human-readable differences between two schemas (names and types; nullability ignored)."""
    exp = {f.name: f.dataType.simpleString() for f in expected.fields}
    act = {f.name: f.dataType.simpleString() for f in actual.fields}
    parts = []
    missing = [n for n in exp if n not in act]
    extra = [n for n in act if n not in exp]
    changed = [f"{n}: table {exp[n]} vs data {act[n]}" for n in exp if n in act and exp[n] != act[n]]
    if missing:
        parts.append(f"missing columns {missing}")
    if extra:
        parts.append(f"unexpected columns {extra}")
    if changed:
        parts.append("type changes " + "; ".join(changed))
    return ", ".join(parts)


def _as_nullable(schema: T.StructType) -> T.StructType:
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])


def _partition_value_to_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


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
                values = [_partition_value_to_string(v) for v in key]
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
                json.dumps({c: _partition_value_to_string(v) for c, v in zip(partition_by, key)})
            )
            stats_json.append(stats.to_json())
        if paths:
            yield pa.RecordBatch.from_arrays(
                [pa.array(paths), pa.array(sizes, pa.int64()), pa.array(partitions), pa.array(stats_json)],
                names=["path", "size", "partition_values", "stats"],
            )

    return write_part_files


class DeltaTables:
    """Read and write the warehouse's Delta tables by logical name.

    ``locate`` maps a logical table name to its URI (normally ``Config.table_location``).
    """

    def __init__(self, spark: SparkSession, locate, engine: str = "auto"):
        self.spark = spark
        self.locate = locate
        self.engine = choose_engine(spark, engine)

    @classmethod
    def from_config(cls, spark: SparkSession, config) -> "DeltaTables":
        return cls(spark, config.table_location, config.delta.engine)

    # ----------------------------------------------------------------- queries
    def location(self, name: str) -> str:
        return self.locate(name)

    def exists(self, name: str) -> bool:
        if self.engine == "delta-spark":
            return self._spark_table_exists(self.location(name))
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.location(name))

    def version(self, name: str) -> int | None:
        """Latest version of the table, or None if it does not exist."""
        if not self.exists(name):
            return None
        if self.engine == "delta-spark":
            return self.history(name)[0].version
        return self._rs_table(name).version()

    def history(self, name: str, limit: int | None = None) -> list[Commit]:
        """Commits, newest first, with the recspark.* metadata each was written with."""
        if self.engine == "delta-spark":
            return self._spark_history(name, limit)
        commits = []
        for entry in self._rs_table(name).history(limit):
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

    def schema(self, name: str) -> T.StructType:
        if self.engine == "delta-spark":
            return self.read(name).schema
        return T.StructType.fromJson(json.loads(self._rs_table(name).schema().to_json()))

    def partition_columns(self, name: str) -> list[str]:
        if self.engine == "delta-spark":
            detail = self.spark.sql(f"DESCRIBE DETAIL delta.`{self.location(name)}`").first()
            return list(detail["partitionColumns"])
        return list(self._rs_table(name).metadata().partition_columns)

    # -------------------------------------------------------------------- read
    def read(self, name: str, version: int | None = None) -> DataFrame:
        """The table as a DataFrame, at ``version`` (time travel) or the latest version."""
        if not self.exists(name):
            raise DeltaTableError(f"table {name!r} does not exist at {self.location(name)}")
        if self.engine == "delta-spark":
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            return reader.load(self.location(name))
        return self._rs_read(name, version)

    def _rs_table(self, name: str, version: int | None = None):
        from deltalake import DeltaTable

        location = self.location(name)
        try:
            return DeltaTable(location, version=version)
        except Exception as exc:  # deltalake raises several error types for a missing table/version
            raise DeltaTableError(f"cannot open table {name!r} at {location} (version {version}): {exc}") from exc

    def _rs_read(self, name: str, version: int | None) -> DataFrame:
        table = self._rs_table(name, version)
        schema = _as_nullable(T.StructType.fromJson(json.loads(table.schema().to_json())))
        snapshot = _active_files_of(table, self.location(name))
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

    # ------------------------------------------------------------------- write
    def write(
        self,
        df: DataFrame,
        name: str,
        mode: str = "overwrite",
        partition_by: list[str] | None = None,
        replace_partition: dict[str, Any] | None = None,
        overwrite_schema: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Write ``df`` as one commit and return the new table version.

        mode: ``overwrite`` (replace the whole table, or only the partition given by
        ``replace_partition`` such as ``{"run_date": date(2024, 1, 1)}``) or ``append``.
        metadata: stored with the commit under ``recspark.<key>`` (e.g. run_id, stage).
        Rows of ``df`` outside ``replace_partition`` are an error, so a partition overwrite can
        never touch another partition.
        """
        if mode not in ("overwrite", "append"):
            raise ValueError(f"mode must be 'overwrite' or 'append', got {mode!r}")
        partition_by = list(partition_by or [])
        if replace_partition:
            if mode != "overwrite":
                raise ValueError("replace_partition needs mode='overwrite'")
            if sorted(replace_partition) != sorted(partition_by):
                raise ValueError(f"replace_partition keys {sorted(replace_partition)} must be the partition columns {partition_by}")
        commit_metadata = {f"recspark.{k}": str(v) for k, v in (metadata or {}).items()}
        started = time.perf_counter()
        if self.engine == "delta-spark":
            version = self._spark_write(df, name, mode, partition_by, replace_partition, overwrite_schema, commit_metadata)
        else:
            version = self._rs_write(df, name, mode, partition_by, replace_partition, overwrite_schema, commit_metadata)
        log.info("wrote %s version %d (%s) in %.1fs", name, version, mode, time.perf_counter() - started)
        return version

    def _check_schema(self, name: str, df: DataFrame, mode: str, partition_by, replace_partition, overwrite_schema) -> DataFrame:
        """Validate ``df`` against the existing table and return it with the table's column order."""
        table_schema = self.schema(name)
        table_partitions = self.partition_columns(name)
        full_overwrite = mode == "overwrite" and not replace_partition
        diff = _schema_diff(table_schema, df.schema)
        if full_overwrite and overwrite_schema:
            return df
        if diff:
            hint = " (pass overwrite_schema=True to replace the table's schema)" if full_overwrite else ""
            raise SchemaMismatchError(f"cannot write to table {name!r} at {self.location(name)}: {diff}{hint}")
        if partition_by != table_partitions:
            raise SchemaMismatchError(
                f"cannot write to table {name!r}: partitioned by {table_partitions}, write asked for {partition_by}"
            )
        return df.select(*table_schema.names)

    def _rs_write(self, df, name, mode, partition_by, replace_partition, overwrite_schema, commit_metadata) -> int:
        from deltalake import DeltaTable, Schema
        from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions

        location = self.location(name)
        missing = [c for c in partition_by if c not in df.columns]
        if missing:
            raise SchemaMismatchError(f"partition columns {missing} are not in the data for table {name!r}")
        exists = self.exists(name)
        if exists:
            df = self._check_schema(name, df, mode, partition_by, replace_partition, overwrite_schema)
        if replace_partition:
            condition = F.lit(True)
            for column, value in replace_partition.items():
                condition = condition & (F.col(column) == F.lit(value))
            df = df.withColumn("_recspark_in_partition", condition)
            outside = df.filter(~F.coalesce(F.col("_recspark_in_partition"), F.lit(False))).limit(1).count()
            if outside:
                raise DeltaTableError(
                    f"cannot replace partition {replace_partition} of {name!r}: the data has rows of other partitions"
                )
            df = df.drop("_recspark_in_partition")

        spark_schema = _as_nullable(df.schema)
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
            properties = CommitProperties(custom_metadata={**commit_metadata, "recspark.rows": str(n_rows)})
            if not exists:
                create_table_with_add_actions(
                    location, delta_schema, actions, mode="error", partition_by=partition_by or None,
                    commit_properties=properties,
                )
            else:
                filters = (
                    [(c, "=", _partition_value_to_string(v)) for c, v in replace_partition.items()]
                    if replace_partition
                    else None
                )
                DeltaTable(location).create_write_transaction(
                    actions, mode=mode, schema=delta_schema, partition_by=partition_by or None,
                    partition_filters=filters, commit_properties=properties,
                )
        except BaseException:
            self._delete_files_of_write(location, write_id)
            raise
        return DeltaTable(location).version()

    @staticmethod
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

    def vacuum(self, name: str, retention_hours: int = 168) -> list[str]:
        """Delete files no longer referenced by versions younger than ``retention_hours``."""
        if self.engine == "delta-spark":
            self.spark.sql(f"VACUUM delta.`{self.location(name)}` RETAIN {retention_hours} HOURS")
            return []
        return self._rs_table(name).vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
        )

    # ------------------------------------------------------- delta-spark engine
    def _spark_table_exists(self, location: str) -> bool:
        jvm = self.spark.sparkContext._jvm
        return bool(jvm.io.delta.tables.DeltaTable.isDeltaTable(self.spark._jsparkSession, location))

    def _spark_history(self, name: str, limit: int | None) -> list[Commit]:
        query = f"DESCRIBE HISTORY delta.`{self.location(name)}`" + (f" LIMIT {int(limit)}" if limit else "")
        commits = []
        for row in self.spark.sql(query).collect():
            user_metadata = json.loads(row["userMetadata"]) if row["userMetadata"] else {}
            commits.append(Commit(int(row["version"]), row["timestamp"], row["operation"], user_metadata))
        return commits

    def _spark_write(self, df, name, mode, partition_by, replace_partition, overwrite_schema, commit_metadata) -> int:
        writer = df.write.format("delta").mode(mode)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if replace_partition:
            condition = " AND ".join(
                f"{c} = '{_partition_value_to_string(v)}'" for c, v in replace_partition.items()
            )
            writer = writer.option("replaceWhere", condition)
        if overwrite_schema:
            writer = writer.option("overwriteSchema", "true")
        if commit_metadata:
            writer = writer.option("userMetadata", json.dumps(commit_metadata))
        writer.save(self.location(name))
        return self.history(name, limit=1)[0].version


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
            {c: _partition_value_to_string(a[f"partition.{c}"]) for c in partition_columns},
        )
        for a in pa.table(table.get_add_actions(flatten=True)).to_pylist()
    ]
    return ActiveFiles(table.version(), columns, partition_columns, files)


def delta_versions(tables: DeltaTables, names: list[str]) -> dict[str, int | None]:
    """Current version of each named table (for lineage: what a run read)."""
    return {name: tables.version(name) for name in names}
