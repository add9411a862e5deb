"""Rating-prediction error metrics (RMSE, MAE), computed in one Spark aggregation."""
from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.evaluation._checks import require_columns


def rating_metrics(
    predictions: DataFrame, label_col: str = "rating", prediction_col: str = "prediction"
) -> dict[str, float]:
    """RMSE and MAE of ``prediction_col`` against ``label_col``, in rating units.

    Rows whose prediction is null or NaN (e.g. ALS with ``coldStartStrategy="nan"`` for users or
    items unseen in training) are excluded from the errors and counted in ``n_missing``; a null
    or NaN label is a data error and raises ValueError.

    Returns:
        ``rmse = sqrt(mean((prediction - label)^2))``, ``mae = mean(|prediction - label|)`` over
        the ``count`` evaluated rows (both NaN when ``count`` is 0), ``count`` and ``n_missing``,
        all as floats. One Spark job, one collected row.
    """
    require_columns(predictions, [label_col, prediction_col], "predictions")
    label = F.col(label_col).cast("double")
    prediction = F.col(prediction_col).cast("double")
    missing = prediction.isNull() | F.isnan(prediction)
    error = F.when(~missing, prediction - label)
    summary = predictions.agg(
        F.count(F.when(label.isNull() | F.isnan(label), True)).alias("n_bad_labels"),
        F.count(F.when(missing, True)).alias("n_missing"),
        F.count(error).alias("count"),
        F.avg(error * error).alias("mse"),
        F.avg(F.abs(error)).alias("mae"),
    ).first()
    if summary["n_bad_labels"]:
        raise ValueError(f"{summary['n_bad_labels']} row(s) have a null or NaN {label_col!r}")
    evaluated = summary["count"]
    return {
        "rmse": math.sqrt(summary["mse"]) if evaluated else math.nan,
        "mae": float(summary["mae"]) if evaluated else math.nan,
        "count": float(evaluated),
        "n_missing": float(summary["n_missing"]),
    }
