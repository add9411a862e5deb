"""What both Delta engines share: errors, the commit record, schema comparison and partition
values as strings."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pyspark.sql import types as T


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


def schema_diff(expected: T.StructType, actual: T.StructType) -> str:
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


def as_nullable(schema: T.StructType) -> T.StructType:
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])


def partition_value_to_string(value: Any) -> str | None:
    """A partition value as the Delta log stores it (dates ISO, timestamps with microseconds)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


class ConcurrentWriteError(DeltaTableError):
    """Another writer committed to the table after the version this write was based on; nothing
    of this write was committed. Re-run the stage so it recomputes on the new version."""

    def __init__(self, table: str, read_version: int | None, current_version: int | None, winners: list[Commit]):
        self.table = table
        self.read_version = read_version
        self.current_version = current_version
        self.winners = winners
        others = "; ".join(
            f"version {c.version} by run {c.metadata.get('recspark.run_id', '?')}, "
            f"stage {c.metadata.get('recspark.stage', '?')}, run date {c.metadata.get('recspark.run_date', '?')}"
            for c in winners
        ) or "unknown writer"
        super().__init__(
            f"concurrent write to table {table!r}: this write was based on version {read_version}, the table is now "
            f"at version {current_version} ({others}); nothing was committed, re-run the stage"
        )
