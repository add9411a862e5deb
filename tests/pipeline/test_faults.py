"""Faults through real ``recspark ingest`` processes: concurrent runs, ``kill -9`` inside the
Delta commits, empty nights and multi-line CSV records (issue 14). Every process is bounded in
time (tests/fault_processes.py)."""
from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from fault_processes import (
    INGEST_TABLES,
    NIGHT_1,
    NIGHT_2,
    age,
    assert_every_table_readable,
    assert_night_unchanged,
    assert_same_tables,
    delta_tables,
    kill_when,
    multi_line_user,
    new_part_files,
    night_fingerprint,
    orphan_files,
    parquet_files,
    prepared_nights,
    silver_keys,
)
from recspark.catalog import INTERACTIONS_BRONZE, INTERACTIONS_QUARANTINE, INTERACTIONS_SILVER

pytestmark = pytest.mark.integration


def test_two_concurrent_ingests_never_lose_a_night_silently(spark, tmp_path_factory):
    nights, _, _ = prepared_nights(tmp_path_factory)
    warehouse = nights.root / "wh-concurrent"
    runs = {night: nights.start(warehouse, night) for night in (NIGHT_1, NIGHT_2)}
    codes = {night: run.wait() for night, run in runs.items()}

    assert sorted(codes.values()) in ([0, 0], [0, 2]), {n: r.output[-3000:] for n, r in runs.items()}
    for night, code in codes.items():
        if code == 2:
            (other,) = [r for n, r in runs.items() if n != night]
            assert "holds the warehouse lock" in runs[night].output
            assert f"pid {other.process.pid} " in runs[night].output  # names the holder
    succeeded = [night for night, code in codes.items() if code == 0]
    bronze = delta_tables(spark, warehouse).read(INTERACTIONS_BRONZE.name)
    assert {r.ingest_date for r in bronze.select("ingest_date").distinct().collect()} == set(succeeded)
    for night in succeeded:
        assert silver_keys(spark, warehouse, night) == nights.expected[night]


def test_kill_9_inside_the_commits_keeps_history_and_a_rerun_converges(spark, tmp_path_factory):
    nights, after_night_1, reference = prepared_nights(tmp_path_factory)
    warehouse = nights.copy(after_night_1, "wh-killed")
    night_1 = night_fingerprint(spark, warehouse, NIGHT_1)
    silver_version = delta_tables(spark, warehouse).version(INTERACTIONS_SILVER.name)
    before = parquet_files(warehouse)

    run = nights.start(warehouse, NIGHT_2)
    # the moment night 2's silver part files appear: bronze and quarantine are committed, silver is not
    assert kill_when(run, lambda: new_part_files(warehouse / INTERACTIONS_SILVER.name, before)) == "killed"
    assert f"wrote {INTERACTIONS_QUARANTINE.name} version" in run.output, run.output[-3000:]

    assert_every_table_readable(spark, warehouse)
    assert_night_unchanged(spark, warehouse, NIGHT_1, night_1)
    assert delta_tables(spark, warehouse).version(INTERACTIONS_SILVER.name) == silver_version
    assert silver_keys(spark, warehouse, NIGHT_2) == set()
    lock = warehouse / "_locks" / "warehouse.lock"
    assert json.loads(lock.read_text())["pid"] == run.process.pid
    orphans = orphan_files(warehouse)
    assert orphans and all(INTERACTIONS_SILVER.name in str(p) for p in orphans)
    age(orphans)  # the rerun comes after the runner's grace period for files of writes in flight

    code, output = nights.ingest(warehouse, NIGHT_2)
    assert code == 0, output[-3000:]
    assert "removing stale warehouse lock" in output and not lock.exists()
    assert "orphan file(s)" in output and not [p for p in orphans if p.exists()]
    assert_every_table_readable(spark, warehouse)
    assert_night_unchanged(spark, warehouse, NIGHT_1, night_1)
    assert_same_tables(spark, warehouse, reference)
    assert silver_keys(spark, warehouse, NIGHT_2) == nights.expected[NIGHT_2]


def test_an_empty_night_is_refused_and_with_allow_empty_keeps_silver(spark, tmp_path_factory):
    nights, after_night_1, _ = prepared_nights(tmp_path_factory)
    warehouse = nights.copy(after_night_1, "wh-empty")
    night_1 = night_fingerprint(spark, warehouse, NIGHT_1)
    versions = {t: delta_tables(spark, warehouse).version(t) for t in INGEST_TABLES}
    header_only = nights.root / "drops" / "header-only.csv"
    header_only.write_text("user,item,stars,ts\n")
    empty_dir = nights.root / "drops" / "empty"
    empty_dir.mkdir()

    code, output = nights.ingest(warehouse, NIGHT_1, header_only)  # a re-run of night 1 without data
    assert code == 2, output[-3000:]
    assert f"source 'events' ({header_only})" in output and "no data rows" in output and "--allow-empty" in output
    code, output = nights.ingest(warehouse, NIGHT_1, empty_dir, "--allow-empty")
    assert code == 0, output[-3000:]
    assert "no interaction rows and ingest.allow_empty is set" in output

    assert {t: delta_tables(spark, warehouse).version(t) for t in INGEST_TABLES} == versions
    assert_night_unchanged(spark, warehouse, NIGHT_1, night_1)
    assert silver_keys(spark, warehouse, NIGHT_1) == nights.expected[NIGHT_1]


def test_a_quoted_field_with_a_line_break_is_one_record_never_a_fake_row(spark, tmp_path_factory):
    nights, _, reference = prepared_nights(tmp_path_factory)  # every night's drop holds such a record
    tables = delta_tables(spark, reference)
    for night in (NIGHT_1, NIGHT_2):
        records = nights.drop(night).read_text().count("\n") - 2  # less the header, one record spans 2 lines
        bronze = tables.read(INTERACTIONS_BRONZE.name).where(F.col("ingest_date") == F.lit(night))
        assert bronze.count() == records
        silver = tables.read(INTERACTIONS_SILVER.name).where(F.col("ingest_date") == F.lit(night))
        assert silver.where(F.col("user_id") == multi_line_user(night)).select("item_id").collect() == [("i9",)]
        assert not silver.where(F.col("user_id").contains("newline") & (F.col("user_id") != multi_line_user(night))).count()
    quarantined = tables.read(INTERACTIONS_QUARANTINE.name)
    assert sorted(r.reason for r in quarantined.collect()) == ["rating_out_of_range", "rating_out_of_range"]
