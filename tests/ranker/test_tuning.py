"""The recorded blend choice: JSON round trip, the checks that decide whether a night may apply it,
and applying it (hybrid weights and ranker) to tonight's candidates."""
from __future__ import annotations

import datetime as dt
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


def _base_only_ranker(features) -> str:
    """A recorded ranker over ``features`` (a FeatureSet) that serves ``rank_als`` (no trees)."""
    import lightgbm as lgb
    import numpy as np

    from recspark.ranker.lambdarank import RankerModel

    rng = np.random.default_rng(0)
    data = lgb.Dataset(rng.random((40, len(features.columns))), label=rng.integers(0, 2, 40), group=[10] * 4,
                       feature_name=features.columns)
    booster = lgb.train({"objective": "lambdarank", "verbose": -1, "num_threads": 1}, data, num_boost_round=2)
    return RankerModel(booster.model_to_string(), base_feature="rank_als", use_trees=False).to_string()


def test_a_ranker_without_trees_serves_its_base_source_without_building_features(spark):
    from chispa import assert_df_equality

    from recspark.ranker.features import ranker_features

    rows = [(0, 10, "als", 3.0, 1), (0, 11, "als", 2.0, 2), (0, 12, "popularity", 9.0, 1),
            (0, 13, "popularity", 8.0, 2), (0, 10, "popularity", 1.0, 3), (1, 12, "als", 1.0, 1)]
    candidates = spark.createDataFrame(rows, "user_idx int, item_idx int, source string, score double, rank int")
    choice = _choice(hybrid_weights=None, champion="ranker", ranker_model=_base_only_ranker(_choice().feature_set()))
    # No history rows and no embeddings although the choice has content features: neither is read.
    empty_history = spark.createDataFrame([], "user_idx int, item_idx int, event_ts timestamp, split string")
    lists = apply_blends(choice, candidates, empty_history, None, n=3)
    got = [(r.user_idx, r.item_idx, r.rank) for r in lists["ranker"].orderBy("user_idx", "rank").collect()]
    # als's ranking first (10, 11), then the unranked candidates by item id (12, 13)
    assert got == [(0, 10, 1), (0, 11, 2), (0, 12, 3), (1, 12, 1)]
    # the same lists as scoring the full feature frame
    history = spark.createDataFrame([(0, 1, dt.datetime(2024, 1, 1), "train"), (1, 2, dt.datetime(2024, 1, 2), "train")],
                                    "user_idx int, item_idx int, event_ts timestamp, split string")
    embeddings = spark.createDataFrame([(i, [1.0, float(i)]) for i in (1, 2, 10, 11, 12, 13)],
                                       "item_idx int, embedding array<float>")
    full = ranker_features(candidates, history.drop("split"), choice.feature_set(), item_embeddings=embeddings)
    assert_df_equality(lists["ranker"].select("user_idx", "item_idx", "rank"),
                       choice.ranker().rank(full, 3).select("user_idx", "item_idx", "rank"), ignore_row_order=True,
                       ignore_nullable=True)
