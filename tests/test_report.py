"""The HTML run report on tiny hand-made frames (no Spark)."""
from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from recspark.report import ReportInputs, model_comparison, popularity_bias, render_report, stage_timings

pytestmark = pytest.mark.unit

D1, D2 = dt.date(2024, 6, 1), dt.date(2024, 6, 2)


def metrics_rows():
    rows = []
    for run_date, als_ndcg in ((D1, 0.30), (D2, 0.33)):
        for model, ndcg, precision in (("als", als_ndcg, 0.3), ("popularity", 0.2, 0.19)):
            rows += [(run_date, model, "ndcg", 10, ndcg), (run_date, model, "precision", 10, precision),
                     (run_date, model, "map", None, ndcg / 2)]
        rows.append((run_date, "stage:train-als", "wall_time_s", None, 42.0))
    frame = pd.DataFrame(rows, columns=["run_date", "model", "metric", "k", "value"])
    frame["protocol"], frame["dataset"] = "random_stratified", "tiny"
    return frame


def stage_runs_rows():
    finished = pd.Timestamp("2024-06-02 03:00")
    return pd.DataFrame(
        [
            (D2, "ingest", "ingest", 10.0, 500.0, finished),
            (D2, "ingest", "ingest.read", 4.0, 400.0, finished),
            (D2, "train-als", "train-als", 60.0, 900.0, finished + pd.Timedelta(minutes=1)),
            (D2, "train-als", "train-als", 50.0, 800.0, finished + pd.Timedelta(minutes=5)),
            (D1, "ingest", "ingest", 99.0, 1.0, finished - pd.Timedelta(days=1)),
        ],
        columns=["run_date", "stage", "step", "wall_time_s", "peak_rss_mib", "finished_at"],
    )


def test_model_comparison_uses_the_newest_date_and_leaves_out_efficiency_rows():
    _, wide = model_comparison(metrics_rows(), k=10)
    assert list(wide["model"]) == ["als", "popularity"]
    assert wide.set_index("model").loc["als", "ndcg@10"] == pytest.approx(0.33)
    assert wide.set_index("model").loc["als", "map"] == pytest.approx(0.165)


def test_stage_timings_take_whole_stages_of_the_newest_date_last_run_wins():
    _, stages = stage_timings(stage_runs_rows())
    assert stages.to_dict("list") == {
        "stage": ["ingest", "train-als"], "wall_time_s": [10.0, 50.0], "peak_rss_mib": [500.0, 800.0]
    }


def test_popularity_bias_shares_by_decile():
    popularity = pd.DataFrame({"item_id": [f"i{n:02d}" for n in range(20)], "n_users": list(range(20, 0, -1))})
    # i00, i01 are the most popular decile; i19 the least; "new" is unknown to training
    recommendations = pd.DataFrame({"item_id": ["i00", "i01", "i00", "i19", "new"], "source": "als"})
    _, shares = popularity_bias(recommendations, popularity)
    by_decile = dict(zip(shares["popularity_decile"], shares["share"]))
    assert by_decile[1] == pytest.approx(0.6)
    assert by_decile[10] == pytest.approx(0.4)
    assert sum(by_decile.values()) == pytest.approx(1.0)


def test_page_is_self_contained_with_every_section():
    compression = pd.DataFrame(
        {"variant": ["fp32", "int8"], "size_mib": [4.0, 1.1], "samples_per_s": [1e5, 1.2e5], "relative_ndcg": [1.0, 0.99]}
    )
    page = render_report(
        ReportInputs(
            metrics=metrics_rows(),
            stage_runs=stage_runs_rows(),
            k=10,
            recommendations=pd.DataFrame({"item_id": ["a", "b"], "source": ["als", "popularity"]}),
            item_popularity=pd.DataFrame({"item_id": ["a", "b", "c", "d"], "n_users": [4, 3, 2, 1]}),
            compression=compression,
        ),
        "test report",
    )
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == [
        "Models on 2024-06-02", "NDCG@10 across runs", "Stage timings", "Published recommendations",
        "Compression trade-off",
    ]
    assert page.count("data:image/png;base64,") == 5
    assert "catalog coverage 50.0% of 4 items" in page
    assert not re.search(r"(src|href)=['\"]https?:", page)


def test_empty_warehouse_still_renders_with_a_note():
    page = render_report(
        ReportInputs(
            metrics=pd.DataFrame(columns=["run_date", "model", "metric", "k", "value", "protocol", "dataset"]),
            stage_runs=pd.DataFrame(columns=["run_date", "stage", "step", "wall_time_s", "peak_rss_mib", "finished_at"]),
            k=10,
        ),
        "empty",
    )
    assert "No evaluation has run yet" in page and "<img" not in page
