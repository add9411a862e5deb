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
The ``stage_runs`` table gets one row per step.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
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
    """Run ``names`` in order with one run date and run id."""
    run_date = config.effective_run_date()
    run_id = new_run_id(run_date)
    for name in names:
        run_stage(name, config, run_date, run_id, spark)


def record_stage_run(spark: SparkSession, delta: DeltaTables, ctx: StageContext, steps: list[StageMeasurement]) -> None:
    """Append one ``stage_runs`` row per step (a blind append: it never conflicts)."""
    finished = dt.datetime.now(dt.timezone.utc)
    rows = [(ctx.run_date, ctx.run_id, ctx.stage, s.name, s.wall_time_s, s.peak_rss_mib, finished) for s in steps]
    delta.write(
        spark.createDataFrame(rows, STAGE_RUNS.schema), STAGE_RUNS.name, mode="append",
        metadata=ctx.commit_metadata(), expected_version=None,
    )
