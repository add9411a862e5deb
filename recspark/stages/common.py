"""What every stage shares: the run context and the wrapper that times, tracks and logs it."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from recspark.config import Config
from recspark.delta import DeltaTables
from recspark.session import build_spark_session
from recspark.tracking import stage_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageContext:
    run_date: dt.date
    run_id: str  # one id per CLI/job invocation, shared by the stages of a `recspark run`

    def commit_metadata(self, stage: str) -> dict[str, str]:
        return {"run_id": self.run_id, "stage": stage, "run_date": self.run_date.isoformat()}


def new_context(config: Config) -> StageContext:
    run_date = config.effective_run_date()
    return StageContext(run_date=run_date, run_id=f"{run_date:%Y%m%d}-{uuid.uuid4().hex[:8]}")


def run_stage(name: str, stage_fn, config: Config, ctx: StageContext, reads=(), writes=(), spark=None):
    """Run one stage: Spark session, Delta tables, MLflow run (with the Delta versions it read
    and wrote), wall time and result logging."""
    spark = spark or build_spark_session(config.spark)
    tables = DeltaTables.from_config(spark, config)
    started = time.perf_counter()
    log.info("stage %s started (run date %s, run id %s, delta engine %s)", name, ctx.run_date, ctx.run_id, tables.engine)
    with stage_run(config.mlflow, name, ctx.run_date.isoformat(), ctx.run_id) as tracker:
        tracker.log_table_versions("read", {t: tables.version(t) for t in reads})
        result = stage_fn(spark, config, tables, ctx)
        metrics = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else {}
        tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        tracker.log_table_versions("wrote", {t: tables.version(t) for t in writes})
    log.info("stage %s finished in %.1fs", name, time.perf_counter() - started)
    return result
