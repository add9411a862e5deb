"""The delta-spark engine: plain ``format("delta")`` reads and writes, for sessions with the Delta
SQL extension (clusters, Databricks, ``--packages io.delta:delta-spark_2.12:3.3.x``)."""
from __future__ import annotations

import json
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from recspark.io.delta.common import Commit, ConcurrentWriteError, partition_value_to_string


class DeltaSparkEngine:
    """Delta tables through delta-spark; every method takes the table's location (URI or path)."""

    name = "delta-spark"

    def __init__(self, spark: SparkSession):
        self.spark = spark

    def exists(self, location: str) -> bool:
        jvm = self.spark.sparkContext._jvm
        return bool(jvm.io.delta.tables.DeltaTable.isDeltaTable(self.spark._jsparkSession, location))

    def version(self, location: str) -> int:
        return self.history(location, limit=1)[0].version

    def history(self, location: str, limit: int | None) -> list[Commit]:
        query = f"DESCRIBE HISTORY delta.`{location}`" + (f" LIMIT {int(limit)}" if limit else "")
        commits = []
        for row in self.spark.sql(query).collect():
            user_metadata = json.loads(row["userMetadata"]) if row["userMetadata"] else {}
            commits.append(Commit(int(row["version"]), row["timestamp"], row["operation"], user_metadata))
        return commits

    def schema(self, location: str) -> T.StructType:
        return self.read(location, None)[0].schema

    def partition_columns(self, location: str) -> list[str]:
        return list(self.spark.sql(f"DESCRIBE DETAIL delta.`{location}`").first()["partitionColumns"])

    def read(self, location: str, version: int | None) -> tuple[DataFrame, int]:
        """The table at ``version`` (latest when None, pinned) and the version read."""
        version = self.version(location) if version is None else version
        return self.spark.read.format("delta").option("versionAsOf", version).load(location), version

    def write(self, df: DataFrame, location: str, mode: str, partition_by: list[str],
              replace_partition: dict[str, Any] | None, commit_metadata: dict[str, str],
              overwrite_schema: bool = False, expected_version: int | None = None) -> int:
        """Write with delta-spark; ``expected_version`` is checked before writing (delta-spark's own
        conflict detection covers the commit itself, based on the version it reads at write time)."""
        if expected_version is not None:
            current = self.version(location)
            if current != expected_version:
                newer = [c for c in self.history(location, None) if c.version > expected_version]
                raise ConcurrentWriteError(location, expected_version, current, newer[::-1])
        writer = df.write.format("delta").mode(mode)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if replace_partition:
            condition = " AND ".join(
                f"{c} = '{partition_value_to_string(v)}'" for c, v in replace_partition.items()
            )
            writer = writer.option("replaceWhere", condition)
        if overwrite_schema:
            writer = writer.option("overwriteSchema", "true")
        if commit_metadata:
            writer = writer.option("userMetadata", json.dumps(commit_metadata))
        writer.save(location)
        return self.version(location)

    def vacuum(self, location: str, retention_hours: int) -> list[str]:
        self.spark.sql(f"VACUUM delta.`{location}` RETAIN {retention_hours} HOURS")
        return []
