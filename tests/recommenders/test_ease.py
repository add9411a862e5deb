"""EASE: the Spark-built Gram matrix and closed form against dense numpy, recommendations."""
from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import DataFrame

from recspark.recommenders import ease
from recspark.recommenders.ease import CatalogueTooLarge, Ease, EaseSettings

pytestmark = pytest.mark.unit

# 6 users x 5 items (ids 10..14); user 5's item 13 is listed twice (binary: counts once).
ITEMS = [10, 11, 12, 13, 14]
HAND_ROWS = [
    (0, 10), (0, 11), (0, 12),
    (1, 10), (1, 11),
    (2, 11), (2, 12), (2, 13),
    (3, 10), (3, 13), (3, 14),
    (4, 12), (4, 14),
    (5, 13), (5, 13), (5, 11),
]  # fmt: skip
REC_SCHEMA = "user_idx int, item_idx int, score double, rank int, because_item_idx int"


def interactions(spark, rows) -> DataFrame:
    return spark.createDataFrame(rows, "user_idx int, item_idx int")


def dense_matrix(rows) -> np.ndarray:
    x = np.zeros((max(u for u, _ in rows) + 1, len(ITEMS)))
    for user, item in rows:
        x[user, ITEMS.index(item)] = 1.0
    return x


def numpy_ease(x: np.ndarray, reg_lambda: float) -> np.ndarray:
    """Steck's closed form in float64."""
    p = np.linalg.inv(x.T @ x + reg_lambda * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.mark.parametrize("n_buckets, max_grid", [(2, 1 << 24), (3, 7)])
def test_weights_equal_dense_numpy_closed_form(spark, monkeypatch, n_buckets, max_grid):
    # max_grid 7 < 5 items x 2 anchors: one anchor per bincount pass
    monkeypatch.setattr(ease, "MAX_GRAM_GRID", max_grid)
    partitions = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(n_buckets))
    try:
        model = Ease(EaseSettings(reg_lambda=2.0, device="cpu")).fit(interactions(spark, HAND_ROWS))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", partitions)
    assert model.item_ids.tolist() == ITEMS
    expected = numpy_ease(dense_matrix(HAND_ROWS), 2.0)
    np.testing.assert_allclose(model.weights, expected, rtol=1e-4, atol=1e-6)
    assert np.all(np.diag(model.weights) == 0.0)


def test_popularity_exponent_divides_each_items_scores_by_its_popularity_power(spark):
    # popularity of item j = G_jj = users with j: 10 -> 3, 11 -> 4, 12 -> 3, 13 -> 3, 14 -> 2
    model = Ease(EaseSettings(reg_lambda=2.0, popularity_exponent=0.5, device="cpu")).fit(interactions(spark, HAND_ROWS))
    popularity = np.array([3.0, 4.0, 3.0, 3.0, 2.0])
    expected = numpy_ease(dense_matrix(HAND_ROWS), 2.0) * popularity[None, :] ** -0.5
    np.testing.assert_allclose(model.weights, expected, rtol=1e-4, atol=1e-6)


def numpy_recommendations(weights: np.ndarray, x: np.ndarray, users: list[int], n: int):
    rows = []
    for user in users:
        history = np.flatnonzero(x[user])
        scores = x[user] @ weights
        scores[history] = -np.inf
        order = np.lexsort((np.arange(len(ITEMS)), -scores))[:n]
        for rank, col in enumerate(order, start=1):
            because = history[np.argmax(weights[history, col])]
            rows.append((user, ITEMS[col], float(scores[col]), rank, ITEMS[because]))
    return rows


@pytest.fixture(scope="module")
def fitted(spark):
    return Ease(EaseSettings(reg_lambda=2.0, device="cpu")).fit(interactions(spark, HAND_ROWS))


def test_recommend_matches_numpy_argsort_and_excludes_seen(spark, fitted):
    users = spark.createDataFrame([(0,), (3,), (3,), (4,), (9,)], "user_idx int")  # 9: no history
    actual = fitted.recommend(users, n=2, seen=interactions(spark, HAND_ROWS))
    expected = numpy_recommendations(fitted.weights, dense_matrix(HAND_ROWS), [0, 3, 4], n=2)
    assert_approx_df_equality(
        actual, spark.createDataFrame(expected, REC_SCHEMA), 1e-5, ignore_row_order=True, ignore_nullable=True
    )
    seen = {(u, i) for u, i in HAND_ROWS}
    assert not [r for r in actual.collect() if (r.user_idx, r.item_idx) in seen]


def test_sparse_scoring_with_all_neighbours_equals_dense(spark, fitted):
    # above dense_max_items (0 here) B is pruned; 4 neighbours per item keep every off-diagonal
    # weight, so the sparse top-N is exact
    assert fitted.scores_dense
    sparse = ease.EaseModel(fitted.item_ids, fitted.weights, EaseSettings(dense_max_items=0, top_n_neighbours=4))
    assert not sparse.scores_dense
    users = spark.createDataFrame([(0,), (2,), (4,)], "user_idx int")
    history = interactions(spark, HAND_ROWS)
    assert_approx_df_equality(
        sparse.recommend(users, n=2, seen=history),
        fitted.recommend(users, n=2, seen=history),
        1e-5,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_pruned_rows_keep_each_items_largest_weights_in_blocks(monkeypatch, fitted):
    # blocks of one row (6 cells < 2 rows x 5 items) give what a single block gives
    monkeypatch.setattr(ease, "TOP_WEIGHTS_BLOCK_CELLS", 6)
    model = ease.EaseModel(fitted.item_ids, fitted.weights, EaseSettings(dense_max_items=0, top_n_neighbours=2))
    pruned = model.pruned_rows().matrix().toarray()
    expected = np.zeros_like(pruned)
    for row in range(len(ITEMS)):
        weights = fitted.weights[row].astype(np.float64).copy()
        weights[row] = -np.inf
        keep = np.lexsort((np.arange(len(ITEMS)), -weights))[:2]
        expected[row, keep] = fitted.weights[row, keep]
    np.testing.assert_allclose(pruned, expected)
    assert (np.count_nonzero(pruned, axis=1) <= 2).all()


def test_sparse_scoring_sums_the_kept_weights(spark, fitted):
    # 2 weights per item: only the items some history item keeps are candidates
    model = ease.EaseModel(fitted.item_ids, fitted.weights, EaseSettings(dense_max_items=0, top_n_neighbours=2))
    pruned = model.pruned_rows().matrix().toarray()
    x = dense_matrix(HAND_ROWS)
    expected = []
    for user in (0, 3, 4):
        history = np.flatnonzero(x[user])
        reached = (pruned[history] != 0).any(axis=0)
        reached[history] = False
        scores = np.where(reached, x[user] @ pruned, -np.inf)
        order = [c for c in np.lexsort((np.arange(len(ITEMS)), -scores)) if np.isfinite(scores[c])][:2]
        for rank, col in enumerate(order, start=1):
            because = history[np.argmax(pruned[history, col])]
            expected.append((user, ITEMS[col], float(scores[col]), rank, ITEMS[because]))
    users = spark.createDataFrame([(0,), (3,), (4,)], "user_idx int")
    actual = model.recommend(users, n=2, seen=interactions(spark, HAND_ROWS))
    assert_approx_df_equality(
        actual, spark.createDataFrame(expected, REC_SCHEMA), 1e-5, ignore_row_order=True, ignore_nullable=True
    )


def test_catalogue_above_max_items_raises_before_solving(spark):
    with pytest.raises(CatalogueTooLarge, match="max_items is 4"):
        Ease(EaseSettings(max_items=4)).fit(interactions(spark, HAND_ROWS))
    assert issubclass(CatalogueTooLarge, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [{"reg_lambda": 0.0}, {"reg_lambda": "1"}, {"max_items": 0}, {"top_n_neighbours": 0}, {"top_n_neighbours": None},
     {"dense_max_items": -1}, {"device": "tpu"},
     {"popularity_exponent": -0.1}, {"tuning_ratio": 1.0}],
)
def test_settings_reject_bad_values(kwargs):
    with pytest.raises(ValueError):
        EaseSettings(**kwargs)


@pytest.mark.parametrize("kwargs", [{"reg_lambda": []}, {"reg_lambda": [0.0]}, {"popularity_exponent": [-1.0]}])
def test_grid_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        ease.EaseGrid(**kwargs)


def test_fit_and_recommend_reject_bad_input(spark, fitted):
    with pytest.raises(ValueError, match="integer ids"):
        Ease().fit(spark.createDataFrame([(0, "a")], "user_idx int, item_idx string"))
    with pytest.raises(ValueError, match="no"):
        Ease().fit(spark.createDataFrame([], "user_idx int, item_idx int"))
    history = interactions(spark, HAND_ROWS)
    with pytest.raises(ValueError, match="n must be"):
        fitted.recommend(history, n=0, seen=history)
