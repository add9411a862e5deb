"""Orphan part files of killed writes are removed after a grace period; committed files stay."""
from __future__ import annotations

import os
import time

import pytest

from recspark.io.delta import DeltaTables

pytestmark = pytest.mark.unit


def age(path, seconds):
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_only_unreferenced_files_older_than_the_grace_period_are_removed(spark, tmp_path):
    tables = DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")
    schema = "who string, day string"
    tables.write(spark.createDataFrame([("a", "d1")], schema), "t", partition_by=["day"])
    tables.write(spark.createDataFrame([("b", "d1")], schema), "t", partition_by=["day"])  # v0's file now removed
    committed = sorted(str(p.relative_to(tmp_path / "t")) for p in (tmp_path / "t").rglob("*.parquet"))
    assert len(committed) == 2
    # A write killed before its commit: part files, no log entry.
    orphan = tmp_path / "t" / "day=d1" / "part-00000-killedwrite-task.snappy.parquet"
    orphan.write_bytes(b"PAR1 partial")
    for path in (tmp_path / "t").rglob("*.parquet"):
        age(path, 7200)
    fresh = tmp_path / "t" / "part-00000-inflight-task.snappy.parquet"
    fresh.write_bytes(b"PAR1 in flight")

    assert tables.remove_orphan_files("t", grace_period_s=3 * 3600) == []  # all younger than 3 h
    assert tables.remove_orphan_files("t", grace_period_s=3600) == ["day=d1/part-00000-killedwrite-task.snappy.parquet"]
    assert fresh.exists() and not orphan.exists()
    remaining = sorted(str(p.relative_to(tmp_path / "t")) for p in (tmp_path / "t").rglob("*.parquet"))
    assert remaining == sorted(committed + [fresh.name])
    assert [r.who for r in tables.read("t", version=0).collect()] == ["a"]  # time travel still works
