"""The one module that reads and writes Delta tables.

:class:`DeltaTables` offers write / read / version / history over logical table names (located
by the config), with two engines behind one interface:

``delta-spark`` (:mod:`recspark.io.delta.spark`)
    Plain ``df.write.format("delta")``. Chosen by ``delta.engine: auto`` when the session has the
    Delta SQL extension configured (clusters, Databricks, ``--packages io.delta:delta-spark_2.12``).

``delta-rs`` (:mod:`recspark.io.delta.rs`, the embedded default)
    Spark writes Parquet part files, the driver commits them as ONE Delta transaction with the
    ``deltalake`` package. Because that transaction API does not check schemas, this module does:
    an append or partition overwrite whose schema differs from the table's raises
    :class:`SchemaMismatchError`, as does a full overwrite with a new schema unless
    ``overwrite_schema=True``.

Concurrency: every latest-version :meth:`DeltaTables.read` records the version it read
(:meth:`DeltaTables.read_version`). A write to a table this object read is based on that version
by default: if another writer committed since, it raises :class:`ConcurrentWriteError` instead of
overwriting (lost update). Blind writes (tables not read) are retried on a lost commit race where
that is safe: appends, and partition replaces of partitions the other commit did not touch.

Atomicity: files become visible only through the commit; a failed write leaves the previous
version what readers see. Nullability is not part of the contract: every column is stored as
nullable, as Spark does when it reads Parquet.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.io.delta.common import (
    Commit,
    ConcurrentWriteError,
    DeltaTableError,
    SchemaMismatchError,
    schema_diff,
)
from recspark.io.delta.orphans import remove_orphan_files
from recspark.io.delta.rs import ActiveFiles, DeltaRsEngine, active_files
from recspark.io.delta.spark import DeltaSparkEngine

__all__ = [
    "READ_VERSION", "ActiveFiles", "Commit", "ConcurrentWriteError", "DeltaSettings", "DeltaTableError", "DeltaTables", "SchemaMismatchError", "active_files", "choose_engine",
]

log = logging.getLogger(__name__)

ENGINES = ("auto", "delta-rs", "delta-spark")


@dataclass
class DeltaSettings:
    """Which Delta engine writes and reads tables (the ``delta`` config section)."""

    engine: str = "auto"  # auto (delta-spark when its SQL extension is configured) | delta-rs | delta-spark

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine: must be one of {list(ENGINES)}, got {self.engine!r}")


# ``write(expected_version=READ_VERSION)``: base the commit on the version this object last read.
READ_VERSION = "read-version"


def choose_engine(spark: SparkSession, engine: str) -> str:
    """Resolve ``auto`` to ``delta-spark`` when the Delta SQL extension is configured, else ``delta-rs``."""
    if engine not in ENGINES:
        raise ValueError(f"delta.engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    return "delta-spark" if "DeltaSparkSessionExtension" in extensions else "delta-rs"


class DeltaTables:
    """Read and write the warehouse's Delta tables by logical name.

    ``locate`` maps a logical table name to its URI (normally ``Config.table_location``).
    """

    def __init__(self, spark: SparkSession, locate, engine: str = "auto"):
        self.spark = spark
        self.locate = locate
        self.engine = choose_engine(spark, engine)
        self._engine = DeltaSparkEngine(spark) if self.engine == "delta-spark" else DeltaRsEngine(spark)
        self._read_versions: dict[str, int] = {}

    @classmethod
    def from_config(cls, spark: SparkSession, config) -> "DeltaTables":
        return cls(spark, config.table_location, config.delta.engine)

    def location(self, name: str) -> str:
        return self.locate(name)

    def exists(self, name: str) -> bool:
        return self._engine.exists(self.location(name))

    def version(self, name: str) -> int | None:
        """Latest version of the table, or None if it does not exist."""
        return self._engine.version(self.location(name)) if self.exists(name) else None

    def history(self, name: str, limit: int | None = None) -> list[Commit]:
        """Commits, newest first, with the recspark.* metadata each was written with."""
        return self._engine.history(self.location(name), limit)

    def schema(self, name: str) -> T.StructType:
        return self._engine.schema(self.location(name))

    def partition_columns(self, name: str) -> list[str]:
        return self._engine.partition_columns(self.location(name))

    def read(self, name: str, version: int | None = None) -> DataFrame:
        """The table as a DataFrame, at ``version`` (time travel) or the latest version."""
        if not self.exists(name):
            raise DeltaTableError(f"table {name!r} does not exist at {self.location(name)}")
        frame, read = self._engine.read(self.location(name), version)
        if version is None:
            self._read_versions[name] = min(read, self._read_versions.get(name, read))
        return frame

    def read_version(self, name: str) -> int | None:
        """The oldest latest-version read of ``name`` by this object (its writes to ``name`` move
        it to the version they committed), or None when it never read the table."""
        return self._read_versions.get(name)

    def write(
        self,
        df: DataFrame,
        name: str,
        mode: str = "overwrite",
        partition_by: list[str] | None = None,
        replace_partition: dict[str, Any] | None = None,
        overwrite_schema: bool = False,
        metadata: dict[str, Any] | None = None,
        expected_version: int | None | str = READ_VERSION,
    ) -> int:
        """Write ``df`` as one commit and return the new table version.

        mode: ``overwrite`` (replace the whole table, or only the partition given by
        ``replace_partition`` such as ``{"run_date": date(2024, 1, 1)}``) or ``append``.
        metadata: stored with the commit under ``recspark.<key>`` (e.g. run_id, stage).
        expected_version: the table version ``df`` was derived from; by default the version this
        object read (:meth:`read_version`), None for a blind write. The commit raises
        :class:`ConcurrentWriteError` when the table moved past it.
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
        missing = [c for c in partition_by if c not in df.columns]
        if missing:
            raise SchemaMismatchError(f"partition columns {missing} are not in the data for table {name!r}")
        if self.exists(name):
            df = self._check_schema(name, df, mode, partition_by, replace_partition, overwrite_schema)
        if replace_partition:
            df = self._require_inside_partition(df, name, replace_partition)
        commit_metadata = {f"recspark.{k}": str(v) for k, v in (metadata or {}).items()}
        base = self.read_version(name) if expected_version == READ_VERSION else expected_version
        started = time.perf_counter()
        try:
            version = self._engine.write(
                df, self.location(name), mode, partition_by, replace_partition, commit_metadata, overwrite_schema,
                expected_version=base,
            )
        except ConcurrentWriteError as exc:
            raise ConcurrentWriteError(name, exc.read_version, exc.current_version, exc.winners) from None
        if name in self._read_versions:
            self._read_versions[name] = version
        log.info("wrote %s version %d (%s) in %.1fs", name, version, mode, time.perf_counter() - started)
        return version

    def _check_schema(self, name: str, df: DataFrame, mode: str, partition_by, replace_partition, overwrite_schema) -> DataFrame:
        """Validate ``df`` against the existing table and return it with the table's column order."""
        table_schema = self.schema(name)
        table_partitions = self.partition_columns(name)
        full_overwrite = mode == "overwrite" and not replace_partition
        diff = schema_diff(table_schema, df.schema)
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

    @staticmethod
    def _require_inside_partition(df: DataFrame, name: str, replace_partition: dict[str, Any]) -> DataFrame:
        condition = F.lit(True)
        for column, value in replace_partition.items():
            condition = condition & (F.col(column) == F.lit(value))
        outside = df.filter(~F.coalesce(condition, F.lit(False))).limit(1).count()
        if outside:
            raise DeltaTableError(
                f"cannot replace partition {replace_partition} of {name!r}: the data has rows of other partitions"
            )
        return df

    def vacuum(self, name: str, retention_hours: int = 168) -> list[str]:
        """Delete files no longer referenced by versions younger than ``retention_hours``."""
        return self._engine.vacuum(self.location(name), retention_hours)

    def remove_orphan_files(self, name: str, grace_period_s: float = 3600.0) -> list[str]:
        """Delete files of ``name`` that no version retained in its log refers to (part files of
        killed writes) and older than ``grace_period_s``; the table-relative paths removed."""
        return remove_orphan_files(self.location(name), grace_period_s)
