"""Wall time and peak memory of a pipeline stage, measured in the driver process (no Spark)."""
from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def peak_rss_mib() -> float:
    """Peak resident set size of this process since it started, in MiB.

    ``ru_maxrss`` is in KiB on Linux and in bytes on macOS.
    """
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bytes_per_unit = 1 if sys.platform == "darwin" else 1024
    return max_rss * bytes_per_unit / 2**20


@dataclass
class StageMeasurement:
    """What :func:`measure_stage` recorded for one stage.

    ``peak_rss_mib`` is the process's high-water mark when the stage ended (the kernel cannot
    reset it per stage); ``peak_rss_growth_mib`` is how much the stage raised it (0 when the
    stage stayed below an earlier peak). Only the Python driver is measured: Spark's JVM and
    executors are other processes.
    """

    name: str
    wall_time_s: float = 0.0
    peak_rss_mib: float = 0.0
    peak_rss_growth_mib: float = 0.0

    def as_metrics(self) -> dict[str, float]:
        """``{"<name>.wall_time_s": ..., "<name>.peak_rss_mib": ...}`` for the metrics table."""
        return {
            f"{self.name}.wall_time_s": self.wall_time_s,
            f"{self.name}.peak_rss_mib": self.peak_rss_mib,
        }


@contextmanager
def measure_stage(name: str) -> Iterator[StageMeasurement]:
    """Time the ``with`` block (monotonic clock, seconds) and record the driver's peak RSS.

    The yielded :class:`StageMeasurement` is filled in when the block exits, also when it raises.
    """
    measurement = StageMeasurement(name)
    peak_before = peak_rss_mib()
    start = time.perf_counter()
    try:
        yield measurement
    finally:
        measurement.wall_time_s = time.perf_counter() - start
        measurement.peak_rss_mib = peak_rss_mib()
        measurement.peak_rss_growth_mib = measurement.peak_rss_mib - peak_before


def stage_efficiency(stage_runs: DataFrame, run_date) -> dict[str, dict[str, float]]:
    """``{step: {"wall_time_s": ..., "peak_rss_mib": ...}}`` from the latest row of each step of
    ``run_date`` in a ``stage_runs`` frame."""
    latest = Window.partitionBy("step").orderBy(F.col("finished_at").desc())
    rows = (
        stage_runs.where(F.col("run_date") == F.lit(run_date))
        .withColumn("_n", F.row_number().over(latest))
        .where(F.col("_n") == 1)
        .collect()
    )
    return {r["step"]: {"wall_time_s": r["wall_time_s"], "peak_rss_mib": r["peak_rss_mib"]} for r in rows}
