"""Real ``recspark ingest`` processes for the fault tests (test_faults.py, test_chaos.py).

Each process runs ``python -m recspark.cli`` in its own session (``start_new_session``), so a
kill can reach every process of the run (driver, JVM, Python workers) by session id, as a
container or Airflow task kill would. Every wait is bounded by :data:`PROCESS_TIMEOUT_S`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.catalog import INTERACTIONS_BRONZE, INTERACTIONS_QUARANTINE, INTERACTIONS_SILVER, STAGE_RUNS
from recspark.io.delta import DeltaTables
from recspark.io.delta.orphans import referenced_files
from tiny_spark import JVM_OPTIONS, TINY_DATA_CONF

REPO = Path(__file__).resolve().parent.parent
PROCESS_TIMEOUT_S = 150
NIGHT_1, NIGHT_2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
# What ingest writes, in its commit order (no item sources, not incremental), then stage_runs.
INGEST_TABLES = (INTERACTIONS_BRONZE.name, INTERACTIONS_QUARANTINE.name, INTERACTIONS_SILVER.name)
ORPHAN_AGE_S = 2 * 3600  # older than the runner's grace period (recspark.pipeline.runner.ORPHAN_GRACE_S)

CONFIG = yaml.safe_dump({
    "spark": {"master": "local[1]", "log_level": "ERROR",
              "conf": {**TINY_DATA_CONF, "spark.driver.memory": "1g", "spark.driver.extraJavaOptions": JVM_OPTIONS}},
    "mlflow": {"enabled": False},
    "ingest": {"preset": None},
})


def source_override(path: Path) -> list[str]:
    """``--set`` pairs making ``path`` (a CSV file or folder: user,item,stars,ts) the only source."""
    source = (
        "{name: events, kind: interactions, paths: [%s], rating_min: 0.5, rating_max: 5.0, "
        "columns: {user_id: user, item_id: item, rating: stars, event_ts: ts}}" % path
    )
    return ["--set", f"ingest.sources=[{source}]"]


def multi_line_user(night: dt.date) -> str:
    """The user id of a night's record whose quoted field holds a comma and a line break."""
    return f"u{night.day}-ml,with\nnewline"


def night_csv(night: dt.date, n_rows: int = 12) -> tuple[str, set[tuple[str, str, dt.datetime]]]:
    """A night's CSV drop and the (user, item, event time) keys silver must hold for it: ``n_rows``
    valid events of that night, one record whose quoted user id spans two lines, one repeated row
    (a duplicate) and one rating out of range: ``n_rows + 3`` records."""
    start = dt.datetime.combine(night, dt.time(1))
    epoch = int(start.replace(tzinfo=dt.timezone.utc).timestamp())
    lines, keys = ["user,item,stars,ts"], {(multi_line_user(night), "i9", start)}
    for i in range(n_rows):
        user, item, ts = f"u{night.day}-{i % 4}", f"i{i % 7}", start + dt.timedelta(minutes=7 * i)
        lines.append(f"{user},{item},{1 + i % 5}.0,{epoch + 420 * i}")
        keys.add((user, item, ts))
    lines.append(f'"{multi_line_user(night)}",i9,3.0,{epoch}')
    lines.append(lines[1])
    lines.append(f"u{night.day}-bad,i1,9.0,{epoch}")
    return "\n".join(lines) + "\n", keys


@dataclass
class IngestRun:
    """One ``recspark ingest`` process; ``lines`` collects its output as it runs."""

    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = PROCESS_TIMEOUT_S) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_session(self.process)
            raise
        self.reader.join(10)
        return code


class Nights:
    """A folder with the config, one CSV drop per night and warehouses."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / "test.yaml"
        self.config.write_text(CONFIG)
        self.expected: dict[dt.date, set] = {}
        for night in (NIGHT_1, NIGHT_2):
            text, keys = night_csv(night)
            self.drop(night).parent.mkdir(parents=True, exist_ok=True)
            self.drop(night).write_text(text)
            self.expected[night] = keys

    def drop(self, night: dt.date) -> Path:
        return self.root / "drops" / f"{night:%Y-%m-%d}" / "events.csv"

    def start(self, warehouse: Path, night: dt.date, source: Path | None = None, *flags: str) -> IngestRun:
        """Start ``recspark ingest`` of ``night`` (source: the night's drop unless given)."""
        command = [
            sys.executable, "-m", "recspark.cli", "--config", str(self.config), "--set", f"warehouse={warehouse}",
            *source_override(source or self.drop(night)), "--run-date", night.isoformat(), *flags, "ingest",
        ]
        process = subprocess.Popen(
            command, cwd=self.root, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        run = IngestRun(process)
        run.reader = threading.Thread(target=lambda: run.lines.extend(iter(process.stdout.readline, "")), daemon=True)
        run.reader.start()
        return run

    def ingest(self, warehouse: Path, night: dt.date, source: Path | None = None, *flags: str) -> tuple[int, str]:
        """Run ``recspark ingest`` of ``night`` to its end: (exit status, output)."""
        run = self.start(warehouse, night, source, *flags)
        return run.wait(), run.output

    def copy(self, warehouse: Path, name: str) -> Path:
        """A copy of ``warehouse`` (file times kept) under ``name``."""
        target = self.root / name
        shutil.copytree(warehouse, target)
        return target


_prepared: dict[Path, tuple[Nights, Path, Path]] = {}


def prepared_nights(tmp_path_factory) -> tuple[Nights, Path, Path]:
    """Once per test session: the drops, a warehouse after night 1 and the reference warehouse
    after nights 1 and 2, ingested without interruption."""
    key = tmp_path_factory.getbasetemp()
    if key not in _prepared:
        nights = Nights(tmp_path_factory.mktemp("nights"))
        after_night_1 = nights.root / "wh-night-1"
        code, output = nights.ingest(after_night_1, NIGHT_1)
        assert code == 0, output[-3000:]
        reference = nights.copy(after_night_1, "wh-reference")
        code, output = nights.ingest(reference, NIGHT_2)
        assert code == 0, output[-3000:]
        _prepared[key] = (nights, after_night_1, reference)
    return _prepared[key]


def session_processes(session_id: int) -> list[int]:
    """Live (not zombie) processes of session ``session_id``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def kill_session(process: subprocess.Popen) -> None:
    """``kill -9`` the driver, then every other process of its session (JVM, Python workers,
    which put themselves in their own process group); return once none is left."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    deadline = time.monotonic() + 30
    while pids := session_processes(process.pid):
        assert time.monotonic() < deadline, f"processes {pids} of the killed run do not end"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def new_part_files(table_dir: Path, before: set[Path]) -> list[Path]:
    """Parquet files under ``table_dir`` that were not in ``before``."""
    return [p for p in table_dir.rglob("*.parquet") if p not in before] if table_dir.exists() else []


def parquet_files(warehouse: Path) -> set[Path]:
    return set(warehouse.rglob("*.parquet"))


def kill_when(run: IngestRun, condition, poll_s: float = 0.002, timeout: float = PROCESS_TIMEOUT_S) -> str:
    """Poll ``condition()`` while ``run`` runs and kill its session the moment it holds.
    Returns "killed", or "finished" when the run ended first."""
    deadline = time.monotonic() + timeout
    while run.process.poll() is None:
        if condition():
            kill_session(run.process)
            run.reader.join(10)
            return "killed"
        assert time.monotonic() < deadline, "the run neither reached the kill point nor ended"
        time.sleep(poll_s)
    run.reader.join(10)
    return "finished"


def orphan_files(warehouse: Path) -> list[Path]:
    """Files in the warehouse's table folders that no retained Delta version refers to."""
    orphans = []
    for table_dir in sorted(p for p in warehouse.iterdir() if (p / "_delta_log").is_dir()):
        referenced = referenced_files(str(table_dir))
        orphans += [p for p in table_dir.rglob("*.parquet") if str(p.relative_to(table_dir)) not in referenced]
    return orphans


def age(paths: list[Path], seconds: float = ORPHAN_AGE_S) -> None:
    """Set the modification time of ``paths`` ``seconds`` into the past (the rerun comes later)."""
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


def delta_tables(spark: SparkSession, warehouse: Path) -> DeltaTables:
    return DeltaTables(spark, lambda name: str(warehouse / name), engine="delta-rs")


def table_names(warehouse: Path) -> list[str]:
    return sorted(p.name for p in warehouse.iterdir() if (p / "_delta_log").is_dir())


def assert_every_table_readable(spark: SparkSession, warehouse: Path) -> None:
    """Every table reads in full through Spark (recspark's reader), and every file of its latest
    version (as delta-rs lists them) exists and reads as Parquet, with as many rows in total."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    tables = delta_tables(spark, warehouse)
    for name in table_names(warehouse):
        uris = DeltaTable(str(warehouse / name)).file_uris()
        rows = sum(pq.read_table(uri.removeprefix("file://")).num_rows for uri in uris)
        assert tables.read(name).count() == rows, name


def partition_bytes(warehouse: Path, table: str, night: dt.date) -> dict[str, str]:
    """sha256 of every active file of partition ``ingest_date=night`` of ``table``."""
    from deltalake import DeltaTable

    uris = DeltaTable(str(warehouse / table)).file_uris(partition_filters=[("ingest_date", "=", night.isoformat())])
    assert uris, f"{table} has no partition {night}"
    return {
        Path(uri.removeprefix("file://")).name: hashlib.sha256(Path(uri.removeprefix("file://")).read_bytes()).hexdigest()
        for uri in uris
    }


def night_fingerprint(spark: SparkSession, warehouse: Path, night: dt.date):
    """What must never change once a night is ingested: the bytes of its bronze and quarantine
    partitions, and its silver rows (run ids included)."""
    silver = delta_tables(spark, warehouse).read(INTERACTIONS_SILVER.name).where(F.col("ingest_date") == F.lit(night))
    return (
        {t: partition_bytes(warehouse, t, night) for t in (INTERACTIONS_BRONZE.name, INTERACTIONS_QUARANTINE.name)},
        silver.localCheckpoint(),
    )


def assert_night_unchanged(spark: SparkSession, warehouse: Path, night: dt.date, fingerprint) -> None:
    files, silver = night_fingerprint(spark, warehouse, night)
    assert files == fingerprint[0]
    assert_df_equality(silver, fingerprint[1], ignore_row_order=True, ignore_nullable=True)


def assert_same_tables(spark: SparkSession, warehouse: Path, reference: Path) -> None:
    """The ingest tables of ``warehouse`` equal the reference's (run ids aside), and stage_runs
    records a finished ingest of each night."""
    tables, expected = delta_tables(spark, warehouse), delta_tables(spark, reference)
    for name in INGEST_TABLES:
        assert_df_equality(
            tables.read(name).drop("run_id"), expected.read(name).drop("run_id"),
            ignore_row_order=True, ignore_nullable=True,
        )
    runs = {(r.run_date, r.stage) for r in tables.read(STAGE_RUNS.name).where(F.col("step") == "ingest").collect()}
    assert runs == {(NIGHT_1, "ingest"), (NIGHT_2, "ingest")}


def silver_keys(spark: SparkSession, warehouse: Path, night: dt.date) -> set:
    silver = delta_tables(spark, warehouse).read(INTERACTIONS_SILVER.name).where(F.col("ingest_date") == F.lit(night))
    return {(r.user_id, r.item_id, r.event_ts) for r in silver.collect()}
