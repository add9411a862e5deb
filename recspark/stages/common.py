"""What every stage shares: the run context and the wrapper that times, tracks and logs it."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from recspark.config import Config
from recspark.io.delta import DeltaTables
from recspark.evaluation import StageMeasurement, measure_stage
from recspark.io.session import build_spark_session
from recspark.io.tracking import stage_run

log = logging.getLogger(__name__)

# The ``stage_runs`` table: one row per finished stage and per measured step inside it.
STAGE_RUNS = T.StructType(
    [
        T.StructField("run_date", T.DateType()),
        T.StructField("run_id", T.StringType()),
        T.StructField("stage", T.StringType()),
        T.StructField("step", T.StringType()),  # the stage name itself for the whole stage
        T.StructField("wall_time_s", T.DoubleType()),
        T.StructField("peak_rss_mib", T.DoubleType()),  # driver process high-water mark
        T.StructField("finished_at", T.TimestampType()),
    ]
)


def require_known_names(names: list[str], known: tuple[str, ...], setting: str) -> None:
    """ValueError naming the config ``setting`` when ``names`` has entries outside ``known``."""
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"{setting}: unknown name(s) {unknown}; known: {list(known)}")


@dataclass
class StageContext:
    run_date: dt.date
    run_id: str  # one id per CLI/job invocation, shared by the stages of a `recspark run`
    steps: list[StageMeasurement] = field(default_factory=list)  # timed steps of the current stage

    def commit_metadata(self, stage: str) -> dict[str, str]:
        return {"run_id": self.run_id, "stage": stage, "run_date": self.run_date.isoformat()}

    @contextlib.contextmanager
    def measure(self, step: str) -> Iterator[StageMeasurement]:
        """Time a step of the running stage (wall time, driver peak RSS); recorded in
        ``stage_runs`` and MLflow when the stage finishes."""
        with measure_stage(step) as measurement:
            yield measurement
        self.steps.append(measurement)


def new_context(config: Config) -> StageContext:
    run_date = config.effective_run_date()
    return StageContext(run_date=run_date, run_id=f"{run_date:%Y%m%d}-{uuid.uuid4().hex[:8]}")


def run_stage(name: str, stage_fn, config: Config, ctx: StageContext, reads=(), writes=(), spark=None):
    """Run one stage: Spark session, Delta tables, MLflow run (with the Delta versions it read
    and wrote), wall time and peak memory (MLflow metrics and the ``stage_runs`` table).

    ``stage_fn(spark, config, tables, ctx, tracker)`` returns a dataclass whose numeric fields
    are logged as MLflow metrics.
    """
    spark = spark or build_spark_session(config.spark)
    tables = DeltaTables.from_config(spark, config)
    ctx.steps.clear()
    log.info("stage %s started (run date %s, run id %s, delta engine %s)", name, ctx.run_date, ctx.run_id, tables.engine)
    with stage_run(config.mlflow, name, ctx.run_date.isoformat(), ctx.run_id) as tracker:
        tracker.log_table_versions("read", {t: tables.version(t) for t in reads})
        with measure_stage(name) as whole:
            result = stage_fn(spark, config, tables, ctx, tracker)
        metrics = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else {}
        tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        steps = [*ctx.steps, whole]
        for step in steps:
            tracker.log_metrics({f"{step.name}.wall_time_s": step.wall_time_s, f"{step.name}.peak_rss_mib": step.peak_rss_mib})
        tracker.log_table_versions("wrote", {t: tables.version(t) for t in writes})
        _record_stage_run(spark, tables, ctx, name, steps)
    log.info("stage %s finished in %.1fs", name, whole.wall_time_s)
    return result


def _record_stage_run(
    spark: SparkSession, tables: DeltaTables, ctx: StageContext, stage: str, steps: list[StageMeasurement]
) -> None:
    finished = dt.datetime.now(dt.timezone.utc)
    rows = [(ctx.run_date, ctx.run_id, stage, s.name, s.wall_time_s, s.peak_rss_mib, finished) for s in steps]
    tables.write(
        spark.createDataFrame(rows, STAGE_RUNS), "stage_runs", mode="append",
        metadata=ctx.commit_metadata(stage),
    )
