"""Metrics-table rows, the comparison table, and stage measurements."""
from __future__ import annotations

import pytest
from chispa import assert_df_equality

from recspark.evaluation import (
    METRICS,
    StageMeasurement,
    comparison_table,
    measure_stage,
    metrics_frame,
    metrics_rows,
)
from recspark.evaluation.report import metric_bar_chart

pytestmark = pytest.mark.unit


def test_metrics_rows_split_cutoff_from_name():
    rows = metrics_rows(
        {"ndcg@k": 0.25, "map": 0.125, "n_users": 3.0},
        model="als", k=10, protocol="random_stratified", dataset="ml-latest-small", run_id="r1",
    )
    assert rows == [
        ("r1", "als", "map", None, 0.125, "random_stratified", "ml-latest-small"),
        ("r1", "als", "n_users", None, 3.0, "random_stratified", "ml-latest-small"),
        ("r1", "als", "ndcg", 10, 0.25, "random_stratified", "ml-latest-small"),
    ]


def test_metrics_frame_has_metrics_schema(spark):
    rows = metrics_rows({"precision@k": 0.5, "rmse": 0.9}, "pop", 5, "time", "ml", "r2")
    expected = spark.createDataFrame(
        [
            ("r2", "pop", "precision", 5, 0.5, "time", "ml"),
            ("r2", "pop", "rmse", None, 0.9, "time", "ml"),
        ],
        "run_id string, model string, metric string, k int, value double, protocol string, "
        "dataset string",
    )
    frame = metrics_frame(spark, rows)
    assert frame.schema == METRICS
    assert_df_equality(frame, expected, ignore_nullable=True)


def test_comparison_table():
    rows = metrics_rows({"ndcg@k": 0.31234, "map": 0.2, "n_users": 610.0}, "als", 10, "p", "d", "r")
    rows += metrics_rows({"ndcg@k": 0.1, "rmse": 0.87654}, "popularity", 10, "p", "d", "r")
    assert comparison_table(rows) == (
        "model      |    map | n_users | ndcg@10 |   rmse\n"
        "-----------+--------+---------+---------+-------\n"
        "als        | 0.2000 |     610 |  0.3123 |      -\n"
        "popularity |      - |       - |  0.1000 | 0.8765"
    )


def test_comparison_table_rejects_duplicate_cells():
    rows = metrics_rows({"map": 0.2}, "als", 10, "p", "d", "r1")
    rows += metrics_rows({"map": 0.3}, "als", 10, "p", "d", "r2")
    with pytest.raises(ValueError, match="model 'als' has more than one value for 'map'"):
        comparison_table(rows)


def test_measure_stage_records_time_and_memory():
    with measure_stage("train") as measurement:
        buffer = bytearray(8 * 2**20)
    assert len(buffer) == 8 * 2**20
    assert measurement.name == "train"
    assert measurement.wall_time_s > 0
    assert measurement.peak_rss_mib > 8  # at least the buffer is resident
    assert measurement.peak_rss_growth_mib >= 0
    assert measurement.as_metrics() == {
        "train.wall_time_s": measurement.wall_time_s,
        "train.peak_rss_mib": measurement.peak_rss_mib,
    }


def test_measure_stage_fills_in_on_error():
    with pytest.raises(RuntimeError):
        with measure_stage("fails") as measurement:
            raise RuntimeError("stage failed")
    assert measurement.wall_time_s > 0
    assert measurement.peak_rss_mib > 0
    assert StageMeasurement("empty").wall_time_s == 0.0


def test_bar_chart_draws_one_bar_per_model_and_metric_at_k():
    rows = [
        ("r", "als", "ndcg", 10, 0.3, "p", "d"),
        ("r", "als", "precision", 10, 0.25, "p", "d"),
        ("r", "als", "ndcg", 5, 0.9, "p", "d"),  # other k: not drawn
        ("r", "popularity", "ndcg", 10, 0.2, "p", "d"),
    ]
    figure = metric_bar_chart(rows, ["ndcg", "precision"], k=10)
    bars = figure.axes[0].patches
    assert [round(bar.get_height(), 4) for bar in bars] == [0.3, 0.2, 0.25, 0.0]
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()] == ["als", "popularity"]
