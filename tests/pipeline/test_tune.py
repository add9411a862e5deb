"""The tune -> nightly handoff on a tiny warehouse: without tuned params train-als searches
itself; tune records the chosen params in tuned_params; train-als then refits with them and runs
no grid trial. The blends' handoff (tune -> rerank) needs candidates: tests/pipeline/test_nightly.py."""
from __future__ import annotations

import datetime as dt
import json

import pytest

import recspark.pipeline.train_als as train_als
from recspark.io.delta import DeltaTables
from recspark.pipeline.runner import run_stage
from tiny_warehouse import planted_split, tiny_config, write_split

pytestmark = pytest.mark.integration  # whole stages through the runner

NIGHT = dt.date(2026, 3, 1)


def test_tune_writes_params_and_the_nightly_refits_with_them_without_a_grid(spark, tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "wh")
    write_split(spark, config, planted_split(60), NIGHT)
    delta = DeltaTables.from_config(spark, config)

    fresh = run_stage("train-als", config, NIGHT, "night-1", spark)
    assert fresh.trials == 2 and fresh.tuned_params_used == 0  # a fresh warehouse searches in the stage
    assert fresh.implicit_engine == 1  # auto: a few hundred pairs fit the default memory budget

    tuned = run_stage("tune", config, NIGHT, "tune-1", spark)
    assert tuned.als_trials == 2
    assert tuned.blends_tuned == 0  # no candidates yet: rerank fits the blends until the next tune
    assert tuned.ease_trials == 12 and tuned.ease_validation_ndcg > 0  # ease.grid: 4 lambdas x 3 exponents
    recorded = {r["algorithm"]: r for r in delta.read("tuned_params").collect()}
    assert set(recorded) == {"als", "ease"}
    assert json.loads(recorded["ease"]["params"]).keys() == {"reg_lambda", "popularity_exponent"}
    assert recorded["ease"]["validation_metric"] == pytest.approx(tuned.ease_validation_ndcg)
    rows = [recorded["als"]]
    assert rows[0]["run_id"] == "tune-1"
    params = json.loads(rows[0]["params"])
    assert params == {"alpha": 5.0, "implicit_prefs": True, "rank": 4, "reg_param": tuned.als_best_reg_param}
    assert rows[0]["selection_metric"] == "ndcg_at_10" and rows[0]["trials"] == 2
    assert rows[0]["validation_metric"] == pytest.approx(tuned.als_validation_metric)

    def no_grid(*args, **kwargs):
        raise AssertionError("train-als ran the grid although tuned params exist")

    monkeypatch.setattr(train_als, "search_on_split", no_grid)
    nightly = run_stage("train-als", config, NIGHT + dt.timedelta(days=1), "night-2", spark)
    assert nightly.trials == 0 and nightly.tuned_params_used == 1
    assert nightly.validation_metric == pytest.approx(tuned.als_validation_metric)
    metadata = delta.history("user_factors", limit=1)[0].metadata
    assert metadata["recspark.run_id"] == "night-2"
    assert float(metadata["recspark.als.reg_param"]) == params["reg_param"] and metadata["recspark.als.rank"] == "4"

    switched_off = tiny_config(tmp_path / "wh", "als.use_tuned_params=false")
    with pytest.raises(AssertionError, match="ran the grid"):
        run_stage("train-als", switched_off, NIGHT + dt.timedelta(days=2), "night-3", spark)
