"""Concurrent writers and the warehouse lock, with real processes (bounded in time)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from recspark.io.delta import ConcurrentWriteError, DeltaTables
from recspark.io.delta.rs import LoggedCommit, _conflicts
from recspark.io.locks import WarehouseLockedError, warehouse_lock

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


def run_python(code: str, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


OTHER_WRITER = """
    import sys
    from pyspark.sql import SparkSession
    from recspark.io.delta import DeltaTables
    spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "1").getOrCreate())
    tables = DeltaTables(spark, lambda name: f"{sys.argv[1]}/{name}", engine="delta-rs")
    before = tables.read("t").count()
    tables.write(spark.createDataFrame([("other", 2)], "who string, n int"), "t",
                 metadata={"run_id": "run-other", "stage": "ingest"})
    print("committed", before)
"""


def test_a_write_based_on_a_stale_read_fails_instead_of_overwriting(spark, tmp_path):
    tables = DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")
    tables.write(spark.createDataFrame([("first", 1)], "who string, n int"), "t")
    mine = tables.read("t").unionByName(spark.createDataFrame([("mine", 3)], "who string, n int")).localCheckpoint()
    assert tables.read_version("t") == 0

    other = run_python(OTHER_WRITER, str(tmp_path))  # reads v0, commits v1 while this writer holds v0
    assert other.returncode == 0, other.stderr[-2000:]

    with pytest.raises(ConcurrentWriteError) as failure:
        tables.write(mine, "t")
    message = str(failure.value)
    assert "'t'" in message and "based on version 0" in message and "now at version 1" in message
    assert "run run-other, stage ingest" in message
    assert sorted(r.who for r in tables.read("t", version=1).collect()) == ["other"]
    assert tables.version("t") == 1
    assert not [p for p in (tmp_path / "t").glob("*.parquet") if p.stat().st_size and "mine" in p.name]


def test_after_its_own_write_a_writer_is_based_on_its_commit(spark, tmp_path):
    tables = DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")
    tables.write(spark.createDataFrame([("a", 1)], "who string, n int"), "t")
    tables.read("t")
    assert tables.write(spark.createDataFrame([("b", 2)], "who string, n int"), "t") == 1
    assert tables.write(spark.createDataFrame([("c", 3)], "who string, n int"), "t") == 2
    assert tables.read_version("t") == 2


def commit(version, partitions, metadata_change=False):
    lines = [json.dumps({"commitInfo": {"timestamp": 0, "recspark.run_id": "r"}})]
    lines += [json.dumps({"add": {"path": "x", "partitionValues": p}}) for p in partitions]
    if metadata_change:
        lines.append(json.dumps({"metaData": {}}))
    return LoggedCommit.parse(version, lines)


def test_blind_writes_retry_only_where_safe():
    other_day = [commit(1, [{"run_date": "2024-03-02"}])]
    same_day = [commit(1, [{"run_date": "2024-03-01"}])]
    import datetime as dt

    day = {"run_date": dt.date(2024, 3, 1)}
    assert not _conflicts("append", None, other_day + same_day)
    assert not _conflicts("overwrite", day, other_day)
    assert _conflicts("overwrite", day, same_day)
    assert _conflicts("overwrite", None, other_day)
    assert _conflicts("append", None, [commit(1, [], metadata_change=True)])
    assert other_day[0].commit.metadata == {"recspark.run_id": "r"}


HOLD_LOCK = """
    import sys, time
    from recspark.io.locks import warehouse_lock
    with warehouse_lock(sys.argv[1], run_id="run-holder", stage="train-als"):
        print("locked", flush=True)
        time.sleep(120)
"""


def start_holder(warehouse: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD_LOCK), str(warehouse)], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_gets_a_clear_lock_error_and_a_killed_holder_is_stale(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(WarehouseLockedError) as failure:
            with warehouse_lock(str(tmp_path), run_id="run-2", stage="ingest"):
                pass
        message = str(failure.value)
        assert f"pid {holder.pid}" in message and "stage train-als" in message
        assert f"remove {tmp_path / '_locks' / 'warehouse.lock'}" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    lock_file = tmp_path / "_locks" / "warehouse.lock"
    assert json.loads(lock_file.read_text())["pid"] == holder.pid  # left behind by kill -9
    with warehouse_lock(str(tmp_path), run_id="run-3", stage="ingest") as path:
        assert json.loads(path.read_text())["run_id"] == "run-3"
        with warehouse_lock(str(tmp_path), run_id="run-3", stage="publish"):  # re-entrant
            pass
        assert path.exists()
    assert not lock_file.exists()


def test_waiting_for_the_lock_succeeds_once_the_holder_ends(tmp_path):
    holder = start_holder(tmp_path)
    started = time.monotonic()
    try:
        os.kill(holder.pid, signal.SIGTERM)
        with warehouse_lock(str(tmp_path), run_id="run-2", stage="ingest", wait_s=30, poll_s=0.2) as path:
            assert json.loads(path.read_text())["run_id"] == "run-2"
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert time.monotonic() - started < 30


def race_once(monkeypatch, competing_commit):
    """Make the next commit lose the race: right before it, ``competing_commit(location)`` lands."""
    from recspark.io.delta import rs

    original = rs.DeltaRsEngine.open
    state = {"raced": False}

    def open_after_a_competing_commit(self, location, version=None):
        if version is not None and not state["raced"]:
            state["raced"] = True
            competing_commit(location)
        return original(self, location, version)

    monkeypatch.setattr(rs.DeltaRsEngine, "open", open_after_a_competing_commit)


def test_a_blind_partition_replace_is_retried_after_a_disjoint_commit_only(spark, tmp_path, monkeypatch):
    from deltalake import DeltaTable
    from deltalake.transaction import CommitProperties

    def empty_append(location):
        table = DeltaTable(location)
        table.create_write_transaction([], mode="append", schema=table.schema(), partition_by=["day"],
                                       commit_properties=CommitProperties(custom_metadata={"recspark.run_id": "rival"}))

    def overwrite_everything(location):
        table = DeltaTable(location)
        table.create_write_transaction([], mode="overwrite", schema=table.schema(), partition_by=["day"],
                                       commit_properties=CommitProperties(custom_metadata={"recspark.run_id": "rival"}))

    tables = DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")
    schema = "who string, day string"
    tables.write(spark.createDataFrame([("a", "d1"), ("b", "d2")], schema), "p", partition_by=["day"])

    race_once(monkeypatch, empty_append)
    version = tables.write(spark.createDataFrame([("c", "d1")], schema), "p", partition_by=["day"],
                           replace_partition={"day": "d1"})
    assert version == 2  # retried on top of the rival's version 1
    assert sorted((r.day, r.who) for r in tables.read("p").collect()) == [("d1", "c"), ("d2", "b")]

    race_once(monkeypatch, overwrite_everything)
    with pytest.raises(ConcurrentWriteError, match="run rival"):
        tables.write(spark.createDataFrame([("d", "d1")], schema), "p", partition_by=["day"],
                     replace_partition={"day": "d1"}, expected_version=None)
    assert tables.version("p") == 3 and tables.read("p").count() == 0
