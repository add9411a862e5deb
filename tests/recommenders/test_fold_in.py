"""Fold-in of user factors against fixed ALS item factors."""
from __future__ import annotations

import numpy as np
import pytest

from recspark.evaluation import ranking_metrics
from recspark.recommenders.als import ALSRecommender
from recspark.recommenders.fold_in import (
    FoldInSettings,
    fold_in_users,
    merge_user_factors,
    needs_full_retrain,
    solve_user_factors,
)
from recspark.recommenders.popularity import PopularityRecommender
from recspark.recommenders.topk import top_k_by_dot_product
from als_planted import planted_pairs

pytestmark = pytest.mark.unit

SCHEMA = "user_idx int, item_idx int, confidence double"
FACTORS = "item_idx int, features array<float>"
ALS_PARAMS = {"rank": 8, "reg_param": 0.05, "alpha": 5.0, "max_iter": 5, "seed": 3}


def dense_hkv(y: np.ndarray, r: np.ndarray, alpha: float, reg: float) -> np.ndarray:
    """x = (Y^T C Y + reg I)^-1 Y^T C p with C and p over the whole catalogue (r = 0: unobserved)."""
    confidence = np.diag(1.0 + alpha * r)
    preference = (r > 0).astype(float)
    return np.linalg.solve(y.T @ confidence @ y + reg * np.eye(y.shape[1]), y.T @ confidence @ preference)


def test_one_user_on_two_unit_items_has_the_closed_form_answer(spark):
    # Y = I, one pair (item 0, r = 1), alpha 1, reg 0.5 * n_u = 0.5:
    # (diag(2, 1) + 0.5 I) x = (2, 0)  ->  x = (0.8, 0).
    items = spark.createDataFrame([(0, [1.0, 0.0]), (1, [0.0, 1.0])], FACTORS)
    pairs = spark.createDataFrame([(7, 0, 1.0)], SCHEMA)
    folded = fold_in_users(pairs, items, FoldInSettings(reg_param=0.5, alpha=1.0)).collect()
    assert [row.user_idx for row in folded] == [7]
    assert folded[0].features == pytest.approx([0.8, 0.0])


@pytest.mark.parametrize("reg_scaling", ["mllib", "none"])
def test_batched_solve_equals_the_dense_objective(reg_scaling):
    rng = np.random.default_rng(1)
    y = rng.standard_normal((30, 4))
    users = [rng.choice(30, size, replace=False) for size in (1, 5, 12)]
    ratings = [rng.uniform(0.5, 3.0, len(u)) for u in users]
    settings = FoldInSettings(reg_param=0.3, alpha=2.0, reg_scaling=reg_scaling)
    solved = solve_user_factors(y, y.T @ y, users, ratings, settings)
    for got, positions, r in zip(solved, users, ratings):
        full_r = np.zeros(30)
        full_r[positions] = r
        reg = 0.3 * (len(positions) if reg_scaling == "mllib" else 1)
        np.testing.assert_allclose(got, dense_hkv(y, full_r, 2.0, reg), rtol=1e-9, atol=1e-12)


def test_folding_in_training_users_reproduces_mllib_user_factors(spark):
    # MLlib's last sweep solves the users against the final item factors: the same solve.
    train, _ = planted_pairs(60)
    frame = spark.createDataFrame(train, SCHEMA)
    model = ALSRecommender(**ALS_PARAMS).fit(frame)
    settings = FoldInSettings(reg_param=ALS_PARAMS["reg_param"], alpha=ALS_PARAMS["alpha"])
    folded = fold_in_users(frame, model.item_factors, settings).toPandas().set_index("user_idx")
    fitted = model.user_factors.toPandas().set_index("user_idx")
    assert sorted(folded.index) == sorted(fitted.index) == list(range(60))
    difference = np.stack(folded["features"].loc[fitted.index]) - np.stack(fitted["features"])
    assert np.abs(difference).max() < 1e-3


def test_unknown_items_are_ignored_and_users_without_known_items_dropped(spark):
    items = spark.createDataFrame([(0, [1.0, 0.0]), (1, [0.0, 1.0])], FACTORS)
    pairs = spark.createDataFrame([(1, 0, 1.0), (1, 99, 5.0), (2, 42, 1.0)], SCHEMA)
    folded = fold_in_users(pairs, items, FoldInSettings(reg_param=0.5, alpha=1.0)).collect()
    assert [(row.user_idx, pytest.approx(row.features)) for row in folded] == [(1, [0.8, 0.0])]
    with pytest.raises(ValueError, match="confidence"):
        fold_in_users(pairs.drop("confidence"), items, FoldInSettings())


def test_a_user_added_after_training_gets_a_refits_top_10_and_beats_popularity(spark):
    old_train, _ = planted_pairs(150)
    new_train, new_test = planted_pairs(25, first_user=150)
    old = spark.createDataFrame(old_train, SCHEMA)
    new = spark.createDataFrame(new_train, SCHEMA)
    test = spark.createDataFrame(new_test, SCHEMA)
    settings = FoldInSettings(reg_param=ALS_PARAMS["reg_param"], alpha=ALS_PARAMS["alpha"])

    model = ALSRecommender(**ALS_PARAMS).fit(old)
    folded = fold_in_users(new, model.item_factors, settings)
    folded_top = top_k_by_dot_product(folded, model.item_factors, 10, seen=new)
    refit = ALSRecommender(**ALS_PARAMS).fit(old.unionByName(new))
    refit_top = refit.recommend(10, seen=new, users=new.select("user_idx"))

    def lists(frame) -> dict[int, set[int]]:
        grouped = frame.toPandas().groupby("user_idx")["item_idx"]
        return {user: set(items) for user, items in grouped}

    folded_lists, refit_lists = lists(folded_top), lists(refit_top)
    assert sorted(folded_lists) == list(range(150, 175))
    overlap = np.mean([len(folded_lists[u] & refit_lists[u]) / 10 for u in folded_lists])
    print(f"fold-in vs refit top-10 overlap: {overlap:.3f}")
    assert overlap >= 0.8

    users = new.select("user_idx").distinct()
    popular = PopularityRecommender(k=10).fit(old.unionByName(new)).recommend(users, seen=new)
    fold_in_ndcg = ranking_metrics(folded_top, test, 10, "user_idx", "item_idx")["ndcg@k"]
    popularity_ndcg = ranking_metrics(popular, test, 10, "user_idx", "item_idx")["ndcg@k"]
    print(f"new users ndcg@10: fold-in {fold_in_ndcg:.3f}, popularity {popularity_ndcg:.3f}")
    assert fold_in_ndcg > 2 * popularity_ndcg


def test_merge_replaces_folded_in_users(spark):
    base = spark.createDataFrame([(1, [1.0]), (2, [2.0])], "user_idx int, features array<float>")
    folded = spark.createDataFrame([(2, [5.0]), (3, [3.0])], "user_idx int, features array<float>")
    merged = {row.user_idx: row.features for row in merge_user_factors(base, folded).collect()}
    assert merged == {1: [1.0], 2: [5.0], 3: [3.0]}


def test_drift_rule_and_settings_validation():
    assert needs_full_retrain(0.25, 0.2)
    assert not needs_full_retrain(0.1, 0.2)
    assert needs_full_retrain(0.1, 0.2, validation_ndcg_drop=0.03, max_ndcg_drop=0.02)
    assert not needs_full_retrain(0.1, 0.2, validation_ndcg_drop=0.01, max_ndcg_drop=0.02)
    with pytest.raises(ValueError, match="share_folded_in"):
        needs_full_retrain(1.5, 0.2)
    for bad in ({"reg_param": -1.0}, {"alpha": -0.1}, {"reg_scaling": "other"}, {"max_share_folded_in": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FoldInSettings(**bad)
