"""Rating metrics against numpy on the same values, missing predictions and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from recspark.evaluation import rating_metrics

pytestmark = pytest.mark.unit

LABELS = [4.0, 3.5, 5.0, 1.0, 2.0, 4.5, 3.0]
PREDICTIONS = [3.8, 4.1, None, float("nan"), 2.5, 4.5, 1.2]  # one null and one NaN: 2 missing


def test_rating_metrics_match_numpy(spark):
    predictions = spark.createDataFrame(
        list(zip(LABELS, PREDICTIONS)), "rating double, prediction double"
    )
    result = rating_metrics(predictions)

    evaluated = [(y, p) for y, p in zip(LABELS, PREDICTIONS) if p is not None and not math.isnan(p)]
    errors = np.array([p - y for y, p in evaluated])
    assert result["count"] == 5.0
    assert result["n_missing"] == 2.0
    assert result["rmse"] == pytest.approx(float(np.sqrt(np.mean(errors**2))), rel=1e-12)
    assert result["mae"] == pytest.approx(float(np.mean(np.abs(errors))), rel=1e-12)


def test_rating_metrics_hand_computed_with_custom_columns(spark):
    # errors 1, -1, 2 -> rmse = sqrt((1 + 1 + 4) / 3) = sqrt(2), mae = 4 / 3
    predictions = spark.createDataFrame(
        [(3, 4.0), (3, 2.0), (1, 3.0)], "stars int, predicted double"
    )
    result = rating_metrics(predictions, label_col="stars", prediction_col="predicted")
    assert result == pytest.approx({"rmse": math.sqrt(2), "mae": 4 / 3, "count": 3.0, "n_missing": 0.0})


def test_all_predictions_missing_gives_nan(spark):
    predictions = spark.createDataFrame(
        [(4.0, None), (3.0, float("nan"))], "rating double, prediction double"
    )
    result = rating_metrics(predictions)
    assert math.isnan(result["rmse"]) and math.isnan(result["mae"])
    assert result["count"] == 0.0
    assert result["n_missing"] == 2.0


def test_bad_input(spark):
    null_label = spark.createDataFrame([(None, 3.0), (4.0, 4.0)], "rating double, prediction double")
    with pytest.raises(ValueError, match="1 row\\(s\\) have a null or NaN 'rating'"):
        rating_metrics(null_label)
    with pytest.raises(ValueError, match="lacks column"):
        rating_metrics(null_label, prediction_col="score")
