"""Chaos: ``kill -9`` of ``recspark ingest`` at seeded random points of its Delta commits (issue 14).

A kill point is an event of the run seen in the warehouse (the part files of a table appear, or
its next commit lands) plus a random delay. The kills are chained on one warehouse: each killed
run is the rerun of the previous kill, and a last uninterrupted run must converge to the
reference warehouse (nights 1 and 2 ingested without interruption, shared with test_faults.py).
After every kill: every table readable, night 1's partitions byte-identical, night 2's silver
rows all there or none (one commit). ``RECSPARK_CHAOS_SEED`` replays another schedule.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from fault_processes import (
    INGEST_TABLES,
    NIGHT_1,
    NIGHT_2,
    age,
    assert_every_table_readable,
    assert_night_unchanged,
    assert_same_tables,
    kill_when,
    night_fingerprint,
    orphan_files,
    prepared_nights,
    silver_keys,
)
from recspark.catalog import STAGE_RUNS

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("RECSPARK_CHAOS_SEED", "14"))
KILLS = 2
MAX_DELAY_S = 0.5
# Ingest's writes in commit order, then the runner's stage_runs append.
COMMITTED_TABLES = (*INGEST_TABLES, STAGE_RUNS.name)


def warehouse_state(warehouse: Path) -> dict[str, tuple[frozenset, int]]:
    """Per table: its part files and its number of commits."""
    state = {}
    for table in COMMITTED_TABLES:
        folder = warehouse / table
        log_dir = folder / "_delta_log"
        commits = sum(1 for p in log_dir.glob("*.json") if p.stem.isdigit()) if log_dir.is_dir() else 0
        state[table] = (frozenset(folder.rglob("*.parquet")) if folder.is_dir() else frozenset(), commits)
    return state


def kill_point(rng: random.Random) -> tuple[str, str, float]:
    """(table, "files" or "commit", delay in seconds after that event)."""
    return rng.choice(COMMITTED_TABLES), rng.choice(("files", "commit")), round(rng.uniform(0, MAX_DELAY_S), 3)


def reached(warehouse: Path, before: dict, table: str, event: str, delay_s: float):
    """A condition for :func:`kill_when`: true ``delay_s`` after the run's first ``event`` on ``table``."""
    seen_at: list[float] = []

    def condition() -> bool:
        if not seen_at:
            files, commits = warehouse_state(warehouse)[table]
            if (files - before[table][0]) if event == "files" else commits > before[table][1]:
                seen_at.append(time.monotonic())
        return bool(seen_at) and time.monotonic() >= seen_at[0] + delay_s

    return condition


def test_seeded_kills_inside_the_commits_keep_history_and_a_rerun_converges(spark, tmp_path_factory):
    nights, after_night_1, reference = prepared_nights(tmp_path_factory)
    warehouse = nights.copy(after_night_1, "wh-chaos")
    night_1 = night_fingerprint(spark, warehouse, NIGHT_1)
    rng = random.Random(SEED)
    outcomes = []

    for _ in range(KILLS):
        point = kill_point(rng)
        before = warehouse_state(warehouse)
        run = nights.start(warehouse, NIGHT_2)
        outcomes.append((*point, kill_when(run, reached(warehouse, before, *point))))
        context = f"seed {SEED}, kills so far {outcomes}"

        assert_every_table_readable(spark, warehouse)
        assert_night_unchanged(spark, warehouse, NIGHT_1, night_1)
        assert silver_keys(spark, warehouse, NIGHT_2) in (set(), nights.expected[NIGHT_2]), context

    assert "killed" in [outcome[-1] for outcome in outcomes], f"seed {SEED}: no run was killed {outcomes}"
    age(orphan_files(warehouse))  # the last rerun comes after the runner's grace period
    code, output = nights.ingest(warehouse, NIGHT_2)
    assert code == 0, f"seed {SEED}, kills {outcomes}\n{output[-3000:]}"
    assert not orphan_files(warehouse), outcomes
    assert_every_table_readable(spark, warehouse)
    assert_night_unchanged(spark, warehouse, NIGHT_1, night_1)
    assert_same_tables(spark, warehouse, reference)
