"""Report stage (``recspark report``, not part of the nightly ``run``): the HTML run report of
the run date, from the metrics, stage_runs, recommendations and interactions tables; written to
``report.output_dir`` and logged to MLflow as ``report.html``. See :mod:`recspark.report`."""
from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.io.delta import DeltaTables
from recspark.report import ReportInputs, render_report
from recspark.stages.common import StageContext
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)


def collect_report_inputs(tables: DeltaTables, config: Config, run_date) -> ReportInputs:
    """The small frames the report plots; tables not written yet give empty inputs."""
    import pandas as pd

    def frame(name: str) -> pd.DataFrame:
        return tables.read(name).toPandas() if tables.exists(name) else pd.DataFrame(columns=EMPTY_COLUMNS[name])

    recommendations = item_popularity = None
    if tables.exists("recommendations") and tables.exists("interactions_split"):
        recommendations = (
            tables.read("recommendations").where(F.col("run_date") == F.lit(run_date))
            .select("item_id", "source").toPandas()
        )
        item_popularity = (
            tables.read("interactions_split").where(F.col("split") != "test")
            .groupBy("item_idx").agg(F.countDistinct("user_idx").alias("n_users"))
            .join(tables.read("item_index"), "item_idx", "right")
            .select("item_id", F.coalesce("n_users", F.lit(0)).alias("n_users"))
            .toPandas()
        )
    return ReportInputs(
        metrics=frame("metrics"),
        stage_runs=frame("stage_runs"),
        k=config.evaluation.k,
        recommendations=recommendations,
        item_popularity=item_popularity,
    )


EMPTY_COLUMNS = {
    "metrics": ["run_date", "model", "metric", "k", "value", "protocol", "dataset"],
    "stage_runs": ["run_date", "stage", "step", "wall_time_s", "peak_rss_mib", "finished_at"],
}


def run_report(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> Path:
    inputs = collect_report_inputs(tables, config, ctx.run_date)
    page = render_report(inputs, f"recspark run report, {ctx.run_date.isoformat()}")
    path = Path(config.report.output_dir) / f"recspark-report-{ctx.run_date.isoformat()}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    tracker.log_text(page, "report.html")
    log.info("report written to %s (%d KiB)", path, len(page) // 1024)
    print(f"report: {path}")
    return path
