"""Validation-time inputs never carry test rows; lists compared on validation NDCG; the champion."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.sql import functions as F

import recspark.ranker.blend as blend_module
from recspark.ranker.blend import LeakedTestRowsError, choose_champion, validation_inputs, validation_ndcg
from recspark.ranker.lambdarank import LearnedRanker
from recspark.ranker.settings import RankerSettings

pytestmark = pytest.mark.unit

SPLIT_SCHEMA = "user_id string, item_id string, user_idx int, item_idx int, event_ts timestamp, split string"
TS = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
SMALL = RankerSettings(n_estimators=40, num_leaves=4, min_data_in_leaf=5, early_stopping_rounds=10,
                       learning_rate=0.2, num_threads=1, eval_fraction=0.25)


def _split(spark, users=40, train_items=10, test_items=3):
    """Every user has train items 0..train_items-1 and test items 100..100+test_items-1."""
    rows = [(f"u{u}", f"i{i}", u, i, TS, "train") for u in range(users) for i in range(train_items)]
    rows += [(f"u{u}", f"i{100 + i}", u, 100 + i, TS, "test") for u in range(users) for i in range(test_items)]
    return spark.createDataFrame(rows, SPLIT_SCHEMA)


def _pairs(frame):
    return {(r.user_idx, r.item_idx) for r in frame.select("user_idx", "item_idx").collect()}


def test_validation_inputs_hold_no_test_pair(spark):
    split = _split(spark)
    inputs = validation_inputs(split, 0.3, split_seed=42)
    test = _pairs(split.where(F.col("split") == "test"))
    assert not (_pairs(inputs.fit_rows) | _pairs(inputs.validation) | _pairs(inputs.labels)) & test
    assert _pairs(inputs.fit_rows) | _pairs(inputs.validation) == _pairs(split.where(F.col("split") == "train"))
    assert {r.split for r in inputs.labels.select("split").distinct().collect()} == {"validation"}
    assert {r.split for r in inputs.fit_rows.select("split").distinct().collect()} == {"train"}


def test_a_carve_that_lets_test_rows_through_fails(spark, monkeypatch):
    split = _split(spark, users=4)
    leaky = lambda frame, ratio, seed, stratify_by: (frame.where(F.col("split") == "train"),  # noqa: E731
                                        frame.where(F.col("split") == "test"))
    monkeypatch.setattr(blend_module, "tuning_frames", leaky)
    with pytest.raises(LeakedTestRowsError, match="validation pairs contain test pairs"):
        validation_inputs(split, 0.3, split_seed=42)
    monkeypatch.setattr(blend_module, "tuning_frames", lambda frame, ratio, seed, stratify_by: (frame, frame.limit(1)))
    with pytest.raises(LeakedTestRowsError, match="fit rows contain test pairs"):
        validation_inputs(split, 0.3, split_seed=42)


def test_a_ranker_trained_on_the_validation_inputs_learns_nothing_from_test_pairs(spark):
    """Candidates: every train item and every test item of each user. ``leak`` marks the test
    pairs, ``signal`` the validation pairs; a ranker that saw test labels would split on
    ``leak``."""
    split = _split(spark)
    inputs = validation_inputs(split, 0.3, split_seed=42)
    validation = inputs.validation.withColumn("signal", F.lit(1.0))
    test = split.where(F.col("split") == "test").select("user_idx", "item_idx").withColumn("leak", F.lit(1.0))
    candidates = split.select("user_idx", "item_idx")
    features = (candidates.join(validation, ["user_idx", "item_idx"], "left")
                .join(test, ["user_idx", "item_idx"], "left").fillna(0.0, subset=["signal", "leak"]))
    model = LearnedRanker(SMALL).fit(features, inputs.labels, ["signal", "leak"])
    importances = model.feature_importances()
    assert importances["leak"] == 0.0 and importances["signal"] > 0.0
    assert model.eval_users and set(model.eval_users) <= set(range(40))


def test_validation_ndcg_counts_users_without_a_list_as_zero(spark):
    truth = spark.createDataFrame([(1, 10), (1, 11), (2, 20), (3, 30)], "user_idx int, item_idx int")
    lists = spark.createDataFrame(
        [(1, 10, "a", 1), (1, 12, "a", 2), (2, 21, "a", 1), (2, 20, "a", 2),  # user 3 has no list of a
         (1, 11, "b", 1), (2, 20, "b", 1), (3, 30, "b", 1), (3, 30, "b", 3)],
        "user_idx int, item_idx int, source string, rank int",
    )
    ndcg = validation_ndcg(lists, truth, k=2)
    idcg_user1 = 1 + 1 / math.log2(3)
    expected_a = (1 / idcg_user1 + (1 / math.log2(3)) / 1 + 0.0) / 3
    expected_b = (1 / idcg_user1 + 1 + 1) / 3
    assert ndcg["a"] == pytest.approx(expected_a) and ndcg["b"] == pytest.approx(expected_b)
    only_user_1 = validation_ndcg(lists, truth, k=2, users=[1])
    assert only_user_1 == {"a": pytest.approx(1 / idcg_user1), "b": pytest.approx(1 / idcg_user1)}


def test_the_champion_is_the_best_list_ties_by_preference():
    assert choose_champion({"als": 0.3, "ranker": 0.35, "hybrid": 0.33}, ["ranker", "hybrid"]) == "ranker"
    assert choose_champion({"als": 0.4, "ranker": 0.35}, ["ranker"]) == "als"
    assert choose_champion({"hybrid": 0.3, "ranker": 0.3, "als": 0.3}, ["ranker", "hybrid"]) == "ranker"
    with pytest.raises(ValueError, match="no validation scores"):
        choose_champion({}, ["ranker"])
    # within the tolerance of the best, the preferred list wins; outside it, the best
    close = {"hybrid": 0.1535, "ease": 0.1516, "ranker": 0.1516, "als": 0.1328}
    assert choose_champion(close, ["ranker", "hybrid", "als"], tolerance=0.005) == "ranker"
    assert choose_champion(close, ["ranker", "hybrid", "als"], tolerance=0.001) == "hybrid"
    assert choose_champion(close, ["hybrid", "als"], tolerance=0.005) == "hybrid"
    assert choose_champion({"ease": 0.16, "ranker": 0.15}, ["ranker"], tolerance=0.005) == "ease"
    with pytest.raises(ValueError, match="tolerance"):
        choose_champion(close, ["ranker"], tolerance=-0.1)
