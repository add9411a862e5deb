"""Popularity baseline: known counts, windows, weights, seen exclusion and the candidate bound."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from chispa import assert_df_equality

from recspark.recommenders.popularity import PopularityRecommender

pytestmark = pytest.mark.unit

ITEM_SCORES_SCHEMA = "item_idx int, score double, popularity_rank int"
RECOMMENDATIONS_SCHEMA = "user_idx int, item_idx int, score double, rank int"
T0 = dt.datetime(2024, 1, 10)


def in_row_order(df):
    """All rows sorted in one partition: order-free comparison without a range-partition sort."""
    return df.coalesce(1).sortWithinPartitions(*df.columns)


def assert_rows(actual, spark, expected_rows, schema):
    expected = spark.createDataFrame(expected_rows, schema)
    assert_df_equality(in_row_order(actual), in_row_order(expected), ignore_nullable=True)


@pytest.fixture(scope="module")
def interactions(spark):
    # item 1: users 1, 2, 3 (user 1 twice); item 2: users 1, 2; item 3: users 3, 4;
    # item 4: user 4. Days before T0 in the last field.
    rows = [
        (1, 1, 2.0, 9), (1, 1, 1.0, 0), (2, 1, 1.0, 8), (3, 1, 1.0, 7),
        (1, 2, 5.0, 1), (2, 2, 1.0, 0),
        (3, 3, 1.0, 3), (4, 3, 1.0, 2),
        (4, 4, 0.5, 1),
    ]
    return spark.createDataFrame(
        [(u, i, w, T0 - dt.timedelta(days=d)) for u, i, w, d in rows],
        "user_idx int, item_idx int, weight double, event_ts timestamp",
    )


def test_scores_count_distinct_users_with_ties_by_item_id(spark, interactions):
    model = PopularityRecommender(k=2).fit(interactions)
    assert_rows(
        model.item_scores,
        spark,
        [(1, 3.0, 1), (2, 2.0, 2), (3, 2.0, 3), (4, 1.0, 4)],
        ITEM_SCORES_SCHEMA,
    )


def test_weighted_scores_sum_the_weight(spark, interactions):
    model = PopularityRecommender(weight_col="weight").fit(interactions)
    assert_rows(
        model.item_scores,
        spark,
        [(2, 6.0, 1), (1, 5.0, 2), (3, 2.0, 3), (4, 0.5, 4)],
        ITEM_SCORES_SCHEMA,
    )


def test_window_counts_only_events_after_latest_minus_window(spark, interactions):
    # Latest event is T0; a 2-day window keeps events 0 and 1 days old (2 days old is excluded).
    model = PopularityRecommender(window_days=2).fit(interactions)
    assert_rows(
        model.item_scores,
        spark,
        [(2, 2.0, 1), (1, 1.0, 2), (4, 1.0, 3)],
        ITEM_SCORES_SCHEMA,
    )


def test_window_accepts_epoch_seconds(spark, interactions):
    as_seconds = interactions.withColumn("event_ts", interactions.event_ts.cast("long"))
    model = PopularityRecommender(window_days=2.5).fit(as_seconds)
    assert_rows(
        model.item_scores,
        spark,
        [(2, 2.0, 1), (1, 1.0, 2), (3, 1.0, 3), (4, 1.0, 4)],
        ITEM_SCORES_SCHEMA,
    )


def test_recommend_without_seen_gives_everyone_the_top_k(spark, interactions):
    model = PopularityRecommender(k=2).fit(interactions)
    users = spark.createDataFrame([(7,), (8,), (7,)], "user_idx int")
    assert_rows(
        model.recommend(users),
        spark,
        [(7, 1, 3.0, 1), (7, 2, 2.0, 2), (8, 1, 3.0, 1), (8, 2, 2.0, 2)],
        RECOMMENDATIONS_SCHEMA,
    )


def test_recommend_excludes_seen_items_even_when_all_top_items_are_seen(spark, interactions):
    model = PopularityRecommender(k=2).fit(interactions)
    users = spark.createDataFrame([(1,), (3,), (4,), (9,)], "user_idx int")
    seen = spark.createDataFrame(
        [(1, 1), (1, 2), (3, 1), (3, 3), (4, 1), (4, 2), (4, 3), (4, 4)],
        "user_idx int, item_idx int",
    )
    assert_rows(
        model.recommend(users, seen),
        spark,
        [
            (1, 3, 2.0, 1), (1, 4, 1.0, 2),  # saw the two most popular
            (3, 2, 2.0, 1), (3, 4, 1.0, 2),
            (9, 1, 3.0, 1), (9, 2, 2.0, 2),  # saw nothing; user 4 saw everything: no rows
        ],
        RECOMMENDATIONS_SCHEMA,
    )


def test_recommend_matches_brute_force_on_random_seen_sets(spark):
    rng = np.random.default_rng(11)
    events = [(int(u), int(i)) for u, i in rng.integers(0, [30, 12], size=(150, 2))]
    interactions = spark.createDataFrame(events, "user_idx int, item_idx int")
    seen_pairs = sorted({(int(u), int(i)) for u, i in rng.integers(0, [10, 12], size=(70, 2))})
    seen = spark.createDataFrame(seen_pairs, "user_idx int, item_idx int")
    k = 3
    model = PopularityRecommender(k=k).fit(interactions)
    popularity = {}
    for user, item in set(events):
        popularity[item] = popularity.get(item, 0) + 1
    ranked = sorted(popularity, key=lambda item: (-popularity[item], item))
    expected = []
    for user in range(10):
        unseen = [item for item in ranked if (user, item) not in set(seen_pairs)][:k]
        expected += [(user, item, float(popularity[item]), r) for r, item in enumerate(unseen, 1)]
    users = spark.range(10).selectExpr("cast(id as int) as user_idx")
    assert_rows(model.recommend(users, seen), spark, expected, RECOMMENDATIONS_SCHEMA)


def test_bad_input_is_rejected(spark, interactions):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        PopularityRecommender(k=0)
    with pytest.raises(ValueError, match="window_days must be positive"):
        PopularityRecommender(window_days=0)
    with pytest.raises(ValueError, match="lack column"):
        PopularityRecommender(weight_col="plays").fit(interactions)
    with pytest.raises(ValueError, match="lack column"):
        PopularityRecommender(window_days=1, timestamp_col="ts").fit(interactions)
    model = PopularityRecommender().fit(interactions)
    with pytest.raises(ValueError, match="users lacks column"):
        model.recommend(interactions.select("item_idx"))
    with pytest.raises(ValueError, match="seen lacks column"):
        model.recommend(interactions, interactions.select("user_idx"))
