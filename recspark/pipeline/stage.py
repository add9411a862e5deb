"""What a stage is: its declaration (:class:`Stage`), the context it runs with
(:class:`StageContext`) and the table view that holds it to its declaration (:class:`StageTables`)."""
from __future__ import annotations

import contextlib
import datetime as dt
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from recspark.catalog import Table, table
from recspark.evaluation import StageMeasurement, measure_stage
from recspark.io.delta import Commit, DeltaTables
from recspark.io.tracking import StageRun


class UndeclaredTableError(RuntimeError):
    """A stage read or wrote a table its declaration does not list."""


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, declared once in :mod:`recspark.pipeline.registry`.

    name: the stage's one name (CLI sub-command, Airflow task id, MLflow run name, ``stage_runs``).
    run: ``"module:function"``, imported only when the stage runs (a spark-submit of one stage
        loads neither torch nor the embedding model unless that stage needs them); the function
        takes a :class:`StageContext` and returns a dataclass whose numbers go to MLflow.
    reads / writes: catalogue tables; the runner refuses any other access.
    after: stages that must finish first for a reason other than a table (files such as the
        deep checkpoints).
    settings: the config sections the stage uses (logged as MLflow params).
    time_limit: the scheduler's limit for one run of the stage.
    nightly: part of ``recspark run`` and the Airflow DAG.
    """

    name: str
    run: str
    description: str
    reads: tuple[Table, ...] = ()
    writes: tuple[Table, ...] = ()
    after: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    time_limit: dt.timedelta = dt.timedelta(hours=1)
    nightly: bool = True

    def function(self) -> Callable[[StageContext], Any]:
        module, name = self.run.split(":")
        return getattr(importlib.import_module(module), name)


class StageTables:
    """The Delta tables as one stage may use them: reads and writes of undeclared tables raise
    :class:`UndeclaredTableError`; every read records the version read (MLflow lineage) and every
    write the version committed. Partitioning defaults to the catalogue's."""

    def __init__(self, tables: DeltaTables, stage: str, reads: tuple[Table, ...], writes: tuple[Table, ...]):
        self.delta = tables
        self.stage = stage
        self._readable = {t.name for t in (*reads, *writes)}
        self._writable = {t.name for t in writes}
        self.read_versions: dict[str, int] = {}
        self.written_versions: dict[str, int] = {}

    def _check(self, name: str | Table, allowed: set[str], access: str) -> str:
        declared = table(name).name
        if declared not in allowed:
            raise UndeclaredTableError(
                f"stage {self.stage} {access} table {declared!r}, which its declaration does not list "
                f"(declared: {sorted(allowed)}); add it to the stage's {access}s in recspark/pipeline/registry.py"
            )
        return declared

    def exists(self, name: str | Table) -> bool:
        return self.delta.exists(self._check(name, self._readable, "read"))

    def read(self, name: str | Table, version: int | None = None) -> DataFrame:
        declared = self._check(name, self._readable, "read")
        frame = self.delta.read(declared, version)
        read = version if version is not None else self.delta.read_version(declared)
        if read is not None:
            self.read_versions.setdefault(declared, read)
        return frame

    def read_if_exists(self, name: str | Table) -> DataFrame | None:
        return self.read(name) if self.exists(name) else None

    def read_or_empty(self, name: str | Table) -> DataFrame:
        """The table, or an empty frame with its catalogue schema when it was never written (e.g.
        ``items`` for a source without an item file)."""
        existing = self.read_if_exists(name)
        if existing is not None:
            return existing
        schema = table(name).schema
        if schema is None:
            raise ValueError(f"table {table(name).name!r} has no catalogue schema to build an empty frame from")
        return self.delta.spark.createDataFrame([], schema)

    def history(self, name: str | Table, limit: int | None = None) -> list[Commit]:
        declared = self._check(name, self._readable, "read")
        commits = self.delta.history(declared, limit)
        if commits:
            self.read_versions.setdefault(declared, commits[0].version)
        return commits

    def latest_metadata(self, name: str | Table) -> dict[str, str]:
        """The ``recspark.*`` metadata of the table's latest commit ({} when it does not exist)."""
        if not self.exists(name):
            return {}
        return self.history(name, limit=1)[0].metadata

    def write(self, df: DataFrame, name: str | Table, **options: Any) -> int:
        """:meth:`DeltaTables.write` of a declared output; ``partition_by`` defaults to the catalogue's."""
        declared = self._check(name, self._writable, "write")
        options.setdefault("partition_by", list(table(declared).partition_by))
        version = self.delta.write(df, declared, **options)
        self.written_versions[declared] = version
        return version


@dataclass
class StageContext:
    """Everything a stage function gets: the session, config, its :class:`StageTables`, the
    MLflow run, the run date and id shared by the stages of one ``recspark run``, and timed steps."""

    spark: SparkSession
    config: Any
    tables: StageTables
    tracker: StageRun
    stage: str
    run_date: dt.date
    run_id: str
    steps: list[StageMeasurement] = field(default_factory=list)

    def commit_metadata(self, extra: dict[str, Any] | None = None) -> dict[str, str]:
        """The metadata every commit of this stage carries (run_id, stage, run_date) plus ``extra``;
        stored as ``recspark.<key>``."""
        return {"run_id": self.run_id, "stage": self.stage, "run_date": self.run_date.isoformat()} | {
            key: str(value) for key, value in (extra or {}).items()
        }

    @contextlib.contextmanager
    def measure(self, step: str) -> Iterator[StageMeasurement]:
        """Time a step of the stage (wall time, driver peak RSS); recorded in ``stage_runs`` and
        MLflow when the stage finishes."""
        with measure_stage(step) as measurement:
            yield measurement
        self.steps.append(measurement)
