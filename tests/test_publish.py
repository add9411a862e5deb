"""Nightly lists: source priority and fill-up, explanations, and the quality gate rules."""
from __future__ import annotations

import numpy as np
import pytest

import datetime as dt

from recspark import publish as publish_module
from recspark.io.delta import Commit
from recspark.publish import (
    GateSettings,
    LatestSource,
    MismatchedFactorsError,
    PublishStats,
    attach_because_items,
    evaluate_gate,
    final_recommendations,
    gate_baseline,
    gate_breaches,
    latest_in_step,
    latest_source,
    require_same_fit,
    with_explanations,
)

pytestmark = pytest.mark.unit

CANDIDATES = "user_idx int, item_idx int, source string, score double, rank int, because_item_idx int"


def test_first_source_leads_and_later_sources_fill_up_without_duplicates(spark):
    rows = [
        (0, 10, "als", 0.9, 1, None), (0, 11, "als", 0.8, 2, None),  # user 0: 2 ALS items
        (0, 11, "popularity", 50.0, 1, None), (0, 12, "popularity", 40.0, 2, None),
        (0, 13, "popularity", 30.0, 3, None),
        (1, 12, "popularity", 40.0, 1, None), (1, 13, "popularity", 30.0, 2, None),  # user 1: no ALS
        (1, 14, "item_item", 2.0, 1, 7),
    ]
    candidates = spark.createDataFrame(rows, CANDIDATES)
    lists = final_recommendations(candidates, ["als", "item_item", "popularity"], k=3).collect()
    got = sorted((r.user_idx, r.rank, r.item_idx, r.source, r.because_item_idx) for r in lists)
    assert got == [
        (0, 1, 10, "als", None), (0, 2, 11, "als", None), (0, 3, 12, "popularity", None),
        (1, 1, 14, "item_item", 7), (1, 2, 12, "popularity", None), (1, 3, 13, "popularity", None),
    ]


def test_an_empty_source_list_is_rejected(spark):
    with pytest.raises(ValueError, match="at least one"):
        final_recommendations(spark.createDataFrame([], CANDIDATES), [], k=3)


def test_because_item_is_the_most_similar_history_item(spark):
    recs = spark.createDataFrame(
        [(0, 1, 20, 0.5, "als", None), (0, 2, 21, 0.4, "als", None), (0, 3, 22, 0.3, "item_item", 5)],
        "user_idx int, rank int, item_idx int, score double, source string, because_item_idx int",
    )
    history = spark.createDataFrame([(0, 5), (0, 6), (1, 7)], "user_idx int, item_idx int")
    similarities = spark.createDataFrame(
        [(5, 20, 0.2), (6, 20, 0.7), (7, 21, 0.9), (6, 22, 0.99)],  # item 21 only near user 1's item
        "item_idx int, neighbor_idx int, score double",
    )
    got = {r.item_idx: r.because_item_idx for r in attach_because_items(recs, history, similarities).collect()}
    assert got == {20: 6, 21: None, 22: 5}  # an existing because item is kept


def test_because_item_ties_go_to_the_smaller_id_and_rows_are_not_multiplied(spark, monkeypatch):
    monkeypatch.setattr(publish_module, "BECAUSE_USERS_PER_CHUNK", 1)  # every user its own numpy step
    recs = spark.createDataFrame(
        [(0, 1, 20, 0.5, "als", None), (0, 1, 20, 0.5, "hybrid", None), (1, 1, 20, 0.4, "als", None),
         (2, 1, 20, 0.3, "als", None), (0, 2, 23, 0.2, "als", None)],
        "user_idx int, rank int, item_idx int, score double, source string, because_item_idx int",
    )
    history = spark.createDataFrame([(0, 9), (0, 8), (0, 8), (1, 9), (1, 30)], "user_idx int, item_idx int")
    similarities = spark.createDataFrame(
        [(9, 20, 0.5), (8, 20, 0.5), (30, 20, 0.1), (8, 23, 0.2)], "item_idx int, neighbor_idx int, score double")
    got = sorted((r.user_idx, r.item_idx, r.source, r.because_item_idx)
                 for r in attach_because_items(recs, history, similarities).collect())
    # user 0: a tie at 0.5 goes to item 8; user 1 has only 9 (0.5) and 30 (0.1); user 2 has no history
    assert got == [(0, 20, "als", 8), (0, 20, "hybrid", 8), (0, 23, "als", 8), (1, 20, "als", 9),
                   (2, 20, "als", None)]


def test_because_items_match_a_brute_force_search(spark):
    rng = np.random.default_rng(3)
    recs = [(u, r, int(i), 1.0, "als", None) for u in range(30)
            for r, i in enumerate(rng.choice(40, size=5, replace=False), start=1)]
    history = [(u, int(i)) for u in range(30) for i in rng.choice(40, size=int(rng.integers(0, 8)), replace=False)]
    links = [(int(h), int(j), float(rng.integers(1, 4)) / 4) for h in range(40)
             for j in rng.choice(40, size=6, replace=False) if h != j]
    got = {(r.user_idx, r.item_idx): r.because_item_idx for r in attach_because_items(
        spark.createDataFrame(recs, "user_idx int, rank int, item_idx int, score double, source string, "
                                    "because_item_idx int"),
        spark.createDataFrame(history, "user_idx int, item_idx int"),
        spark.createDataFrame(links, "item_idx int, neighbor_idx int, score double")).collect()}
    owned = {(u, i) for u, i in history}
    expected = {}
    for u, _, j, _, _, _ in recs:
        options = [(-s, h) for h, jj, s in links if jj == j and (u, h) in owned]
        expected[(u, j)] = min(options)[1] if options else None
    assert got == expected
    assert sum(v is not None for v in got.values()) > 20  # the draw links a good share


def test_explanations_name_the_because_title(spark):
    recs = spark.createDataFrame(
        [(0, 1, 20, 0.5, "als", 5), (0, 2, 21, 0.4, "als", None)],
        "user_idx int, rank int, item_idx int, score double, source string, because_item_idx int",
    )
    users = spark.createDataFrame([("u0", 0)], "user_id string, user_idx int")
    items = spark.createDataFrame(
        [("m5", 5, "Heat (1995)"), ("m20", 20, "Ronin (1998)"), ("m21", 21, None)], "item_id string, item_idx int, title string"
    )
    got = sorted(tuple(r) for r in with_explanations(recs, users, items).collect())
    assert got == [
        ("u0", 1, "m20", "Ronin (1998)", 0.5, "als", "because you liked Heat (1995)"),
        ("u0", 2, "m21", None, 0.4, "als", None),
    ]


def stats(users=100, rows=1000, coverage=0.1, metric=0.3, known=100, blends=""):
    return PublishStats(users=users, known_users=known, rows=rows, catalog_coverage=coverage, metric=metric,
                        blends=blends)


def test_gate_passes_a_comparable_run_and_the_first_run():
    assert gate_breaches(stats(), stats(metric=0.32), 0.99, 0.2) == []
    assert gate_breaches(stats(), None, 0.99, 0.2) == []


def test_gate_names_every_breach():
    breaches = gate_breaches(stats(users=90, rows=500, coverage=0.05, metric=0.1), stats(), 0.99, 0.2)
    assert len(breaches) == 4  # users fell 10%, within the allowed 20%; coverage rule still applies
    assert breaches[0].startswith("user coverage 0.9000 (90 of 100 known users)")
    assert any("rows fell from 1000 to 500" in b for b in breaches)
    assert any("evaluation metric fell from 0.3 to 0.1" in b for b in breaches)


def test_gate_skips_a_metric_that_one_run_lacks():
    assert gate_breaches(stats(metric=None), stats(metric=0.3), 0.99, 0.2) == []


def test_stats_round_trip_through_commit_metadata():
    original = stats(metric=None, blends="tuned_params 2024-03-01 r1")
    metadata = {f"recspark.{k}": v for k, v in original.as_metadata().items()}
    assert PublishStats.from_metadata(metadata) == original
    assert PublishStats.from_metadata({"recspark.stage": "publish"}) is None


def publish_commit(version, run_date, forced, stats_):
    metadata = {f"recspark.{k}": v for k, v in stats_.as_metadata().items()}
    metadata |= {"recspark.run_date": run_date, "recspark.forced": str(forced), "recspark.stage": "publish"}
    return Commit(version, dt.datetime(2024, 1, 1), "WRITE", metadata)


def test_a_forced_publish_is_never_the_baseline():
    healthy, bad = stats(rows=1000), stats(rows=100, metric=0.05)
    history = [publish_commit(1, "2024-03-02", True, bad), publish_commit(0, "2024-03-01", False, healthy)]
    assert gate_baseline(history, "2024-03-03") == healthy
    verdict = evaluate_gate(stats(rows=100, metric=0.05), gate_baseline(history, "2024-03-03"), GateSettings())
    assert any("rows fell from 1000 to 100" in b for b in verdict.breaches)
    assert gate_baseline(history[:1], "2024-03-03") is None
    assert gate_baseline(history, "2024-03-01") is None  # a re-run never compares with its own date


def test_an_unevaluated_night_keeps_the_metric_baseline():
    history = [publish_commit(1, "2024-03-02", False, stats(rows=900, metric=None)),
               publish_commit(0, "2024-03-01", False, stats(metric=0.3))]
    assert gate_baseline(history, "2024-03-03") == stats(rows=900, metric=0.3)


def test_a_missing_metric_is_a_breach_or_a_warning_by_setting():
    tonight, baseline = stats(metric=None), stats(metric=0.3)
    refused = evaluate_gate(tonight, baseline, GateSettings(on_missing_metric="breach"))
    assert [b for b in refused.breaches if "has no evaluation" in b] and not refused.warnings
    warned = evaluate_gate(tonight, baseline, GateSettings(on_missing_metric="warn"))
    assert warned.breaches == [] and "has no evaluation" in warned.warnings[0]
    assert refused.skipped == warned.skipped and len(warned.skipped) == 1
    assert evaluate_gate(stats(), baseline, GateSettings()).skipped == []


def test_a_coverage_drop_after_a_retune_warns_and_every_other_drop_still_refuses():
    before = stats(coverage=0.10, blends="in-stage fit")
    retuned = stats(coverage=0.07, blends="tuned_params 2024-03-01 r1")
    verdict = evaluate_gate(retuned, before, GateSettings())
    assert verdict.breaches == []
    assert verdict.warnings == ["catalog coverage fell from 0.1 to 0.07 (more than 20% below the last published run); "
                                "allowed on the first night after a retune (blends 'in-stage fit' -> "
                                "'tuned_params 2024-03-01 r1')"]
    strict = evaluate_gate(retuned, before, GateSettings(on_retuned_coverage_drop="breach"))
    assert [b for b in strict.breaches if b.startswith("catalog coverage fell")] and strict.warnings == []
    same_blends = evaluate_gate(stats(coverage=0.07, blends="in-stage fit"), before, GateSettings())
    assert [b for b in same_blends.breaches if b.startswith("catalog coverage fell")]
    unrecorded = evaluate_gate(stats(coverage=0.07, blends="tuned_params 2024-03-01 r1"), stats(), GateSettings())
    assert [b for b in unrecorded.breaches if b.startswith("catalog coverage fell")]  # baseline older than the key
    worse = evaluate_gate(stats(coverage=0.07, metric=0.2, rows=700, blends="tuned_params 2024-03-01 r1"), before,
                          GateSettings())
    assert sorted(b.split(" fell")[0] for b in worse.breaches) == ["evaluation metric", "rows"]
    with pytest.raises(ValueError, match="on_retuned_coverage_drop"):
        GateSettings(on_retuned_coverage_drop="ignore")


def test_the_first_publish_reports_its_skipped_comparisons_as_warnings():
    verdict = evaluate_gate(stats(), None, GateSettings())
    assert verdict.breaches == [] and "no earlier unforced publish" in verdict.warnings[0]
    with pytest.raises(ValueError, match="on_missing_metric"):
        GateSettings(on_missing_metric="ignore")


def test_latest_is_in_step_only_with_the_newest_dated_commit():
    history = [
        Commit(3, dt.datetime(2024, 1, 1), "WRITE", {"recspark.run_date": "2024-03-01"}),  # backfill
        Commit(2, dt.datetime(2024, 1, 1), "WRITE", {"recspark.run_date": "2024-03-02"}),
        Commit(1, dt.datetime(2024, 1, 1), "WRITE", {"recspark.run_date": "2024-03-02"}),
    ]
    source = latest_source(history)
    assert source == LatestSource(2, "2024-03-02")
    paired = {f"recspark.{k}": v for k, v in source.as_metadata().items()}
    assert latest_in_step(paired, source)
    assert not latest_in_step({"recspark.latest.source_version": "1", "recspark.latest.source_run_date": "2024-03-02"}, source)
    assert not latest_in_step(None, source)
    assert latest_source([]) is None and latest_in_step(None, None)


def test_factors_of_different_fits_are_refused():
    fit = {"recspark.run_id": "r1", "recspark.mlflow_run_id": "m1"}
    require_same_fit(fit, dict(fit))
    with pytest.raises(MismatchedFactorsError, match="different fits.*mlflow_run_id 'm1' vs 'm2'"):
        require_same_fit(fit, {"recspark.run_id": "r1", "recspark.mlflow_run_id": "m2"})
    with pytest.raises(MismatchedFactorsError):
        require_same_fit(fit, {})
