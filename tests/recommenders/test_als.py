"""ALS estimator, grid expansion and search on a planted two-community dataset."""
from __future__ import annotations

import logging

import pytest
from pyspark.sql import functions as F

from recspark.recommenders.als import ALSRecommender, blocks_for, expand_grid, search_als

pytestmark = pytest.mark.unit

N_USERS, GROUP = 20, 10  # users 0-9 use items 0-9, users 10-19 items 10-19
HELD_OUT = 3  # per user, the last 3 of its group's items (rotated by user) are held out


def community(user: int) -> list[int]:
    base = 0 if user < GROUP else GROUP
    return [base + (user + j) % GROUP for j in range(GROUP)]


@pytest.fixture(scope="module")
def planted(spark):
    train, held_out = [], []
    for user in range(N_USERS):
        items = community(user)
        train += [(user, item, 4.0 + (j % 2), 1.0 + j % 3) for j, item in enumerate(items[:-HELD_OUT])]
        held_out += [(user, item, 5.0, 1.0) for item in items[-HELD_OUT:]]
    schema = "user_idx int, item_idx int, rating double, confidence double"
    return spark.createDataFrame(train, schema).cache(), spark.createDataFrame(held_out, schema).cache()


def test_implicit_als_recommends_the_held_out_community_items(planted):
    train, held_out = planted
    model = ALSRecommender(rank=2, reg_param=0.01, alpha=10.0, max_iter=10, seed=1).fit(train)
    recommendations = model.recommend(k=HELD_OUT, seen=train).collect()
    got = {}
    for row in recommendations:
        got.setdefault(row.user_idx, set()).add(row.item_idx)
    expected = {user: set(community(user)[-HELD_OUT:]) for user in range(N_USERS)}
    assert got == expected
    assert sorted({row.rank for row in recommendations}) == [1, 2, 3]


def test_seen_items_are_never_recommended_and_users_can_be_restricted(spark, planted):
    train, _ = planted
    model = ALSRecommender(rank=2, max_iter=5, seed=1).fit(train)
    users = spark.createDataFrame([(0,), (15,)], "user_idx int")
    recommendations = model.recommend(k=20, seen=train, users=users)
    assert {r.user_idx for r in recommendations.collect()} == {0, 15}
    assert recommendations.join(train, ["user_idx", "item_idx"]).count() == 0
    assert recommendations.count() == 2 * (2 * GROUP - (GROUP - HELD_OUT))  # every unseen item


def test_same_seed_gives_the_same_factors(planted):
    train, _ = planted

    def factors():
        model = ALSRecommender(rank=3, max_iter=3, seed=7).fit(train)
        return sorted((r.item_idx, tuple(r.features)) for r in model.item_factors.collect())

    assert factors() == factors()


def test_explicit_predictions_fit_the_ratings_and_drop_unknown_users(spark, planted):
    train, _ = planted
    model = ALSRecommender(rank=4, reg_param=0.01, implicit_prefs=False, max_iter=15, seed=1).fit(train)
    pairs = spark.createDataFrame([(0, 0, 4.0), (99, 0, 4.0)], "user_idx int, item_idx int, rating double")
    predicted = model.predict(pairs).collect()
    assert [r.user_idx for r in predicted] == [0]
    assert predicted[0].prediction == pytest.approx(4.0, abs=0.3)


def test_explicit_mode_ignores_pairs_without_a_rating(spark):
    rows = [(0, 0, 5.0), (0, 1, None), (1, 0, 4.0), (1, 1, 3.0)]
    frame = spark.createDataFrame(rows, "user_idx int, item_idx int, rating double")
    model = ALSRecommender(rank=1, implicit_prefs=False, max_iter=2).fit(frame)
    assert model.item_factors.count() == 2  # item 1 still learnt from user 1's rating
    assert model.user_factors.schema["features"].dataType.simpleString() == "array<float>"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"rank": 0}, "rank"), ({"max_iter": 1.5}, "max_iter"), ({"reg_param": -1}, "reg_param"), ({"alpha": -0.1}, "alpha"),
     ({"num_blocks": 0}, "num_blocks")],
)
def test_invalid_params_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ALSRecommender(**kwargs)


def test_blocks_grow_with_the_data_and_stop_at_mllibs_default():
    assert [blocks_for(n) for n in (1, 50_000, 50_001, 75_000, 499_999, 20_000_000)] == [1, 1, 2, 2, 10, 10]


def test_missing_input_column_is_named(spark):
    frame = spark.createDataFrame([(0, 0)], "user_idx int, item_idx int")
    with pytest.raises(ValueError, match="confidence"):
        ALSRecommender().fit(frame)


def test_grid_expansion_drops_alpha_variants_of_explicit_points():
    points = expand_grid({"implicit_prefs": [True, False], "rank": [8], "alpha": [1.0, 5.0]})
    assert points == [
        {"implicit_prefs": True, "rank": 8, "alpha": 1.0},
        {"implicit_prefs": True, "rank": 8, "alpha": 5.0},
        {"implicit_prefs": False, "rank": 8, "alpha": 1.0},
    ]


@pytest.mark.parametrize("grid, message", [({"rnak": [1]}, "unknown"), ({"rank": []}, "no values")])
def test_bad_grids_are_rejected(grid, message):
    with pytest.raises(ValueError, match=message):
        expand_grid(grid)


def test_search_picks_the_trial_with_the_best_validation_metric(planted):
    train, held_out = planted
    base = ALSRecommender(max_iter=4, seed=1, reg_param=0.01)
    grid = {"implicit_prefs": [True, False], "rank": [2], "alpha": [0.01, 10.0]}
    result = search_als(train, held_out, grid, base, k=HELD_OUT, metric="precision@k")
    assert [t.params["implicit_prefs"] for t in result.trials] == [True, True, False]
    scores = [t.metrics["precision@k"] for t in result.trials]
    assert result.best_index == scores.index(max(scores))
    assert result.best.metrics["precision@k"] == 1.0
    assert result.best.params["implicit_prefs"] is True
    assert all(t.fit_seconds > 0 and t.params["max_iter"] == 4 for t in result.trials)


def test_search_rejects_an_unknown_metric(planted):
    train, held_out = planted
    with pytest.raises(ValueError, match="selection metric"):
        search_als(train, held_out, {"rank": [2]}, ALSRecommender(max_iter=1), k=3, metric="ndcg@5")


def test_search_skips_explicit_points_once_when_no_pair_has_a_rating(planted, caplog):
    train, held_out = planted
    unrated = train.withColumn("rating", F.lit(None).cast("double"))
    grid = {"implicit_prefs": [True, False], "rank": [2], "reg_param": [0.01, 0.1], "alpha": [10.0]}
    with caplog.at_level(logging.INFO, logger="recspark.recommenders.als"):
        result = search_als(unrated, held_out, grid, ALSRecommender(max_iter=2, seed=1), k=HELD_OUT)
    assert [(t.params["implicit_prefs"], t.params["reg_param"]) for t in result.trials] == [(True, 0.01), (True, 0.1)]
    skips = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert skips == ["ALS search: no training pair has a 'rating', skipping 2 explicit grid point(s)"]


def test_search_of_explicit_points_only_without_ratings_names_the_grid(planted):
    train, held_out = planted
    with pytest.raises(ValueError, match="als.grid: every point is explicit"):
        search_als(train.drop("rating"), held_out, {"implicit_prefs": [False], "rank": [2]},
                   ALSRecommender(max_iter=1), k=HELD_OUT)


def test_explicit_fit_without_ratings_is_a_clear_error_not_a_jvm_trace(spark):
    frame = spark.createDataFrame([(0, 0, None), (1, 1, None)], "user_idx int, item_idx int, rating double")
    with pytest.raises(ValueError, match="explicit ALS has nothing to fit: no row has a non-null 'rating'"):
        ALSRecommender(implicit_prefs=False, max_iter=1).fit(frame)
