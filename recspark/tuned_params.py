"""Reading the weekly tune's records: the newest ``tuned_params`` row of an algorithm."""
from __future__ import annotations

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F


def newest_tuned_row(tuned: DataFrame | None, algorithm: str) -> Row | None:
    """The ``tuned_params`` row of ``algorithm`` with the latest (run_date, run_id), or None when
    ``tuned`` is None (no table yet) or holds none."""
    if tuned is None:
        return None
    rows = (tuned.where(F.col("algorithm") == algorithm)
            .orderBy(F.col("run_date").desc(), F.col("run_id").desc()).take(1))
    return rows[0] if rows else None
