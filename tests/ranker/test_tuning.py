"""The recorded blend choice: JSON round trip, the checks that decide whether a night may apply it,
and applying it (hybrid weights and ranker) to tonight's candidates."""
from __future__ import annotations

import json

import pytest

from recspark.ranker.tuning import BlendChoice, BlendPlan, apply_blends

pytestmark = pytest.mark.unit

PLAN = BlendPlan(retrieval=["als"], deep=[], hybrid=["als", "popularity"], ranker=["als", "popularity"], content=True)


def _choice(**changes) -> BlendChoice:
    fields = dict(k=2, n=3, ranker_sources=["als", "popularity"], hybrid_sources=["als", "popularity"], deep_sources=[],
                  content=True, ranker_model=None, hybrid_weights={"als": 1.0, "popularity": 0.5},
                  scores={"hybrid": 0.3, "als": 0.25}, champion="hybrid", selection_users=7, validation_users=9)
    return BlendChoice(**(fields | changes))


def test_a_choice_survives_its_json():
    choice = _choice(details={"hybrid": {"weights": {"als": 1.0}}})
    assert BlendChoice.from_json(choice.to_json()) == choice
    assert choice.champion_ndcg == 0.3


def test_json_that_is_not_a_choice_is_refused():
    with pytest.raises(ValueError, match="not a recorded blend choice"):
        BlendChoice.from_json('{"k": 10, "surprise": 1}')
    with pytest.raises(ValueError, match="not a recorded blend choice"):
        BlendChoice.from_json("[1, 2]")
    without_hybrid_sources = {key: value for key, value in json.loads(_choice().to_json()).items()
                              if key != "hybrid_sources"}
    with pytest.raises(ValueError, match="not a recorded blend choice"):
        BlendChoice.from_json(json.dumps(without_hybrid_sources))


def test_a_choice_fits_only_the_sources_and_settings_it_was_fitted_for():
    assert _choice().mismatch(PLAN, k=2, n=3) is None
    other_sources = BlendPlan(["als"], [], ["als", "ease"], ["als", "ease"], True)
    assert "ranker sources ['als', 'popularity'] (tonight ['als', 'ease'])" in _choice().mismatch(other_sources, 2, 3)
    assert "candidates.n 3 (tonight 100)" in _choice().mismatch(PLAN, k=2, n=100)
    without_embeddings = BlendPlan(["als"], [], ["als", "popularity"], ["als", "popularity"], content=False)
    assert "content features" in _choice().mismatch(without_embeddings, 2, 3)
    with_deep = BlendPlan(["als"], ["neumf"], ["als", "popularity"], ["als", "popularity"], True)
    assert "deep models [] (tonight ['neumf'])" in _choice().mismatch(with_deep, 2, 3)


def test_applying_the_recorded_hybrid_weights_blends_tonights_candidates(spark):
    # user 0: als ranks 10 > 11 > 12, popularity ranks 12 > 13 (min-max normalised per user and source)
    rows = [(0, 10, "als", 3.0, 1), (0, 11, "als", 2.0, 2), (0, 12, "als", 1.0, 3),
            (0, 12, "popularity", 9.0, 1), (0, 13, "popularity", 1.0, 2), (0, 14, "ease", 5.0, 1)]
    candidates = spark.createDataFrame(rows, "user_idx int, item_idx int, source string, score double, rank int")
    history = spark.createDataFrame([], "user_idx int, item_idx int, event_ts timestamp, split string")
    lists = apply_blends(_choice(), candidates, history, None, n=3)
    assert set(lists) == {"hybrid"}
    got = [(r.item_idx, r.score, r.rank) for r in lists["hybrid"].orderBy("rank").collect()]
    # 10: 1 x 1.0; 12: 1 x 0.0 + 0.5 x 1.0; 11: 1 x 0.5 (tie with 12 -> smaller item first)
    assert got == [(10, 1.0, 1), (11, 0.5, 2), (12, 0.5, 3)]
