"""Report stage (``recspark report``, not part of the nightly ``run``): the HTML run report of
the run date, from the metrics, stage_runs, recommendations and interactions tables; written to
``report.output_dir`` and logged to MLflow as ``report.html``. See :mod:`recspark.report`."""
from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import functions as F

from recspark.catalog import INTERACTIONS_SPLIT, ITEM_INDEX, METRICS, RECOMMENDATIONS, STAGE_RUNS
from recspark.pipeline.stage import StageContext
from recspark.report import ReportInputs, render_report
from recspark.schemas import METRICS as METRICS_SCHEMA
from recspark.schemas import STAGE_RUNS as STAGE_RUNS_SCHEMA

log = logging.getLogger(__name__)


def collect_report_inputs(ctx: StageContext) -> ReportInputs:
    """The small frames the report plots; tables not written yet give empty inputs."""
    import pandas as pd

    tables = ctx.tables

    def frame(table, schema) -> pd.DataFrame:
        stored = tables.read_if_exists(table)
        return pd.DataFrame(columns=list(dict.fromkeys([*schema.fieldNames(), "run_date"]))) if stored is None else stored.toPandas()

    recommendations = item_popularity = None
    if tables.exists(RECOMMENDATIONS) and tables.exists(INTERACTIONS_SPLIT):
        recommendations = (
            tables.read(RECOMMENDATIONS).where(F.col("run_date") == F.lit(ctx.run_date)).select("item_id", "source").toPandas()
        )
        item_popularity = (
            tables.read(INTERACTIONS_SPLIT).where(F.col("split") != "test")
            .groupBy("item_idx").agg(F.countDistinct("user_idx").alias("n_users"))
            .join(tables.read(ITEM_INDEX), "item_idx", "right")
            .select("item_id", F.coalesce("n_users", F.lit(0)).alias("n_users"))
            .toPandas()
        )
    return ReportInputs(
        metrics=frame(METRICS, METRICS_SCHEMA), stage_runs=frame(STAGE_RUNS, STAGE_RUNS_SCHEMA),
        k=ctx.config.evaluation.k, recommendations=recommendations, item_popularity=item_popularity,
    )


def run_report(ctx: StageContext) -> Path:
    page = render_report(collect_report_inputs(ctx), f"recspark run report, {ctx.run_date.isoformat()}")
    path = Path(ctx.config.report.output_dir) / f"recspark-report-{ctx.run_date.isoformat()}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    ctx.tracker.log_text(page, "report.html")
    log.info("report written to %s (%d KiB)", path, len(page) // 1024)
    print(f"report: {path}")
    return path
