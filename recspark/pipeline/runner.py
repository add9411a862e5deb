"""Run declared stages: Spark session, the stage's table view, its MLflow run and its timings.

Stages of one warehouse never overlap: each holds the warehouse lock
(:func:`recspark.io.locks.warehouse_lock`) while it runs, and a second run fails at once with
:class:`~recspark.io.locks.WarehouseLockedError` naming the holder (a holder that died, ``kill -9``,
is detected and its lock taken over). Before a stage writes, part files that a killed earlier
attempt left in its output tables (referenced by no Delta version, older than
:data:`ORPHAN_GRACE_S`) are removed.

Per stage, MLflow gets the stage's settings sections (params ``<section>.<field>``), the Delta
version of every table it read (``read.<table>``, the version each read actually saw) and wrote
(``wrote.<table>``), the numbers of its result and the wall time / peak RSS of every measured step.
The ``stage_runs`` table gets one row per step. A run of several stages logs its progress after
each stage, with an ETA from the stages' median wall times of past nights (``stage_runs``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import statistics
import uuid
from collections.abc import Iterable
from typing import Any

from pyspark.sql import SparkSession

from recspark.catalog import STAGE_RUNS
from recspark.evaluation import StageMeasurement, measure_stage
from recspark.io.delta import DeltaTables
from recspark.io.locks import warehouse_lock
from recspark.io.session import build_spark_session
from recspark.io.tracking import stage_run
from recspark.pipeline.registry import stage as declared_stage
from recspark.pipeline.stage import StageContext, StageTables
from recspark.progress import Progress

log = logging.getLogger(__name__)

# Files younger than this may belong to a commit in flight elsewhere; older unreferenced ones are
# leftovers of a killed write.
ORPHAN_GRACE_S = 3600.0


def new_run_id(run_date: dt.date) -> str:
    """One id per CLI/job invocation, shared by the stages of one ``recspark run``."""
    return f"{run_date:%Y%m%d}-{uuid.uuid4().hex[:8]}"


def settings_params(config: Any, sections: tuple[str, ...]) -> dict[str, Any]:
    """``{"<section>.<field>": value}`` of the config ``sections`` (nested dataclasses flattened)."""
    params: dict[str, Any] = {}

    def flatten(prefix: str, value: Any) -> None:
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if isinstance(value, dict) and value:
            for key, item in value.items():
                flatten(f"{prefix}.{key}", item)
        else:
            params[prefix] = value

    for section in sections:
        flatten(section, getattr(config, section))
    return params


def run_stage(name: str, config: Any, run_date: dt.date, run_id: str, spark: SparkSession | None = None) -> Any:
    """Run the declared stage ``name`` and return its result."""
    declared = declared_stage(name)
    function = declared.function()
    spark = spark or build_spark_session(config.spark)
    delta = DeltaTables.from_config(spark, config)
    tables = StageTables(delta, name, declared.reads, declared.writes)
    log.info("stage %s started (run date %s, run id %s, delta engine %s)", name, run_date, run_id, delta.engine)
    with warehouse_lock(config.warehouse, run_id, name), stage_run(config.mlflow, name, run_date.isoformat(), run_id) as tracker:
        for written in (*declared.writes, STAGE_RUNS):  # every stage also appends to stage_runs
            if delta.exists(written.name):
                removed = delta.remove_orphan_files(written.name, ORPHAN_GRACE_S)
                if removed:
                    log.warning("removed %d orphan file(s) of %s left by a killed write", len(removed), written.name)
        ctx = StageContext(spark, config, tables, tracker, name, run_date, run_id)
        tracker.log_params(settings_params(config, declared.settings))
        with measure_stage(name) as whole:
            result = function(ctx)
        values = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else {}
        tracker.log_metrics({k: v for k, v in values.items() if isinstance(v, (int, float))})
        steps = [*ctx.steps, whole]
        for step in steps:
            tracker.log_metrics({f"{step.name}.wall_time_s": step.wall_time_s, f"{step.name}.peak_rss_mib": step.peak_rss_mib})
        tracker.log_table_versions("read", tables.read_versions)
        tracker.log_table_versions("wrote", tables.written_versions)
        record_stage_run(spark, delta, ctx, steps)
    log.info("stage %s finished in %.1fs", name, whole.wall_time_s)
    return result


def run_stages(names: list[str], config: Any, spark: SparkSession | None = None) -> None:
    """Run ``names`` in order with one run date and run id; more than one stage logs progress."""
    run_date = config.effective_run_date()
    run_id = new_run_id(run_date)
    if len(names) == 1:
        run_stage(names[0], config, run_date, run_id, spark)
        return
    spark = spark or build_spark_session(config.spark)
    costs = expected_stage_seconds(names, past_stage_times(DeltaTables.from_config(spark, config)))
    progress = Progress(f"recspark {run_date}", sum(costs.values()), unit="stages", steps=len(names),
                        interval_s=0.0, terminal=False)
    for name in names:
        run_stage(name, config, run_date, run_id, spark)
        progress.advance(costs[name], note=f"{name} done")


def past_stage_times(delta: DeltaTables, runs: int = 5) -> list[tuple[str, float]]:
    """(stage, wall seconds) of the whole-stage rows of the last ``runs`` run ids in
    ``stage_runs`` (empty for a new warehouse)."""
    if not delta.exists(STAGE_RUNS.name):
        return []
    rows = delta.read(STAGE_RUNS.name).where("step = stage").select(
        "run_id", "stage", "wall_time_s", "finished_at").collect()
    finished: dict[str, Any] = {}
    for r in rows:
        finished[r.run_id] = max(finished.get(r.run_id, r.finished_at), r.finished_at)
    recent = set(sorted(finished, key=finished.__getitem__)[-runs:])
    return [(r.stage, r.wall_time_s) for r in rows if r.run_id in recent]


def expected_stage_seconds(names: Iterable[str], past: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Each stage's expected cost: its median past wall time; stages never run before get the
    mean of the others' (1.0 each when none has run, so progress counts stages)."""
    times: dict[str, list[float]] = {}
    for stage, seconds in past:
        times.setdefault(stage, []).append(seconds)
    medians = {name: statistics.median(times[name]) for name in names if times.get(name)}
    default = statistics.mean(medians.values()) if medians else 1.0
    return {name: max(medians.get(name, default), 1e-3) for name in names}


def record_stage_run(spark: SparkSession, delta: DeltaTables, ctx: StageContext, steps: list[StageMeasurement]) -> None:
    """Append one ``stage_runs`` row per step (a blind append: it never conflicts)."""
    finished = dt.datetime.now(dt.timezone.utc)
    rows = [(ctx.run_date, ctx.run_id, ctx.stage, s.name, s.wall_time_s, s.peak_rss_mib, finished) for s in steps]
    delta.write(
        spark.createDataFrame(rows, STAGE_RUNS.schema), STAGE_RUNS.name, mode="append",
        metadata=ctx.commit_metadata(), expected_version=None,
    )
