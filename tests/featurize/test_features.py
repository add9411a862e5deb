"""Aggregated user-item rows, user features and item features on hand-computed data."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from recspark.featurize.features import (
    aggregate_user_item,
    genre_vocabulary,
    item_features,
    user_features,
)
from recspark.featurize.ids import item_index, user_index
from recspark.schemas import INTERACTIONS, ITEMS

pytestmark = pytest.mark.unit

AS_OF = dt.datetime(2024, 1, 11)


def ts(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour)


# (user_id, item_id, event_type, rating, weight, event_ts)
EVENTS = [
    ("u1", "i1", "rating", 4.0, 1.0, ts(1)),
    ("u1", "i1", "rating", 5.0, 2.0, ts(1, 12)),
    ("u1", "i2", "play", None, 3.0, ts(10)),
    ("u2", "i1", "rating", 3.0, 1.0, ts(6)),
    ("u2", "i3", "rating", 2.0, 1.0, ts(8)),
    ("u2", "i3", "rating", 4.0, 1.0, ts(8)),
    ("u2", "i3", "play", None, 2.0, ts(9)),
    ("u3", "i2", "click", None, 1.0, ts(12)),  # after AS_OF
]


@pytest.fixture(scope="module")
def interactions(spark):
    lineage = ("test", None, dt.date(2024, 1, 12), "r1")
    return spark.createDataFrame([event + lineage for event in EVENTS], INTERACTIONS)


@pytest.fixture(scope="module")
def items(spark):
    rows = [
        ("i1", "Toy Story", ["Animation", "Comedy"], ["pixar"], "Toy Story animation comedy pixar"),
        ("i2", "Heat", ["Action"], [], "Heat action"),
        ("i4", "Cold", ["Comedy", "Drama"], [], "Cold comedy drama"),
    ]
    return spark.createDataFrame([row + (None, dt.date(2024, 1, 12)) for row in rows], ITEMS)


def test_aggregate_user_item(spark, interactions):
    result = aggregate_user_item(interactions, confidence_alpha=2.0, confidence_epsilon=1.0)
    expected = spark.createDataFrame(
        [
            # latest explicit rating wins; weight summed; confidence = 1 + 2 ln(1 + weight)
            ("u1", "i1", 5.0, 3.0, 2, ts(1), ts(1, 12), 1 + 2 * math.log(4.0)),
            ("u1", "i2", None, 3.0, 1, ts(10), ts(10), 1 + 2 * math.log(4.0)),
            ("u2", "i1", 3.0, 1.0, 1, ts(6), ts(6), 1 + 2 * math.log(2.0)),
            # two ratings at the same time: the higher wins; the later play has no rating
            ("u2", "i3", 4.0, 4.0, 3, ts(8), ts(9), 1 + 2 * math.log(5.0)),
            ("u3", "i2", None, 1.0, 1, ts(12), ts(12), 1 + 2 * math.log(2.0)),
        ],
        "user_id string, item_id string, rating double, weight double, n_events long, "
        "first_ts timestamp, event_ts timestamp, confidence double",
    )
    assert_approx_df_equality(
        result, expected, 1e-12, ignore_row_order=True, ignore_nullable=True
    )


def test_confidence_epsilon_scales_weight(spark, interactions):
    result = aggregate_user_item(interactions, confidence_alpha=1.0, confidence_epsilon=2.0)
    row = result.where("user_id = 'u2' and item_id = 'i3'").select("confidence").first()
    assert row.confidence == pytest.approx(1 + math.log(1 + 4.0 / 2.0))


@pytest.mark.parametrize("alpha, epsilon", [(-1.0, 1.0), (1.0, 0.0)])
def test_aggregate_rejects_bad_confidence_parameters(interactions, alpha, epsilon):
    with pytest.raises(ValueError, match="confidence_"):
        aggregate_user_item(interactions, alpha, epsilon)


def test_user_features(spark, interactions):
    result = user_features(interactions, user_index(interactions), AS_OF, half_life_days=10.0)
    expected = spark.createDataFrame(
        [
            # ages 10, 9.5 and 1 days; ratings 4, 5
            ("u1", 0, 3, 2, 2, 4.5, 0.5, ts(1), ts(10), 2, 1.0, 0.5**1.0 + 0.5**0.95 + 0.5**0.1),
            # ages 5, 3, 3, 2 days; ratings 3, 2, 4 (population std sqrt(2/3))
            ("u2", 1, 4, 2, 3, 3.0, math.sqrt(2 / 3), ts(6), ts(9), 3, 2.0,
             0.5**0.5 + 2 * 0.5**0.3 + 0.5**0.2),
            # one implicit event after AS_OF: age floored at 0, no ratings
            ("u3", 2, 1, 1, 0, None, None, ts(12), ts(12), 1, 0.0, 1.0),
        ],
        "user_id string, user_idx int, n_interactions long, n_items long, n_ratings long, "
        "mean_rating double, rating_std double, first_ts timestamp, last_ts timestamp, "
        "active_days long, days_since_last double, recency_weighted_activity double",
    )
    assert_approx_df_equality(result, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_user_features_rejects_bad_half_life(interactions):
    with pytest.raises(ValueError, match="half_life_days"):
        user_features(interactions, user_index(interactions), AS_OF, half_life_days=0.0)


def test_genre_vocabulary(items):
    assert genre_vocabulary(items) == ["Action", "Animation", "Comedy", "Drama"]


def test_item_features(spark, interactions, items):
    genres = ["Action", "Animation", "Comedy", "Drama"]
    result = item_features(interactions, items, item_index(interactions, items), genres, AS_OF)
    expected = spark.createDataFrame(
        [
            ("i1", 0, 3, 2, 4.0, 3, 1, ts(1), ts(6), 5.0, [0, 1, 1, 0], "Toy Story",
             "Toy Story animation comedy pixar"),
            ("i2", 1, 2, 2, None, 0, 3, ts(10), ts(12), 0.0, [1, 0, 0, 0], "Heat", "Heat action"),
            # ties i1 on 3 events, ranked after it by item_id; no metadata
            ("i3", 2, 3, 1, 3.0, 2, 2, ts(8), ts(9), 2.0, [0, 0, 0, 0], None, None),
            # metadata only: zero counts, null times
            ("i4", 3, 0, 0, None, 0, 4, None, None, None, [0, 0, 1, 1], "Cold", "Cold comedy drama"),
        ],
        "item_id string, item_idx int, n_interactions long, n_users long, mean_rating double, "
        "rating_count long, popularity_rank int, first_ts timestamp, last_ts timestamp, "
        "days_since_last double, genre_multi_hot array<int>, title string, text string",
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_item_features_with_empty_vocabulary(spark, interactions, items):
    result = item_features(interactions, items, item_index(interactions, items), [], AS_OF)
    multi_hot = result.select("item_id", "genre_multi_hot")
    expected = spark.createDataFrame(
        [("i1", []), ("i2", []), ("i3", []), ("i4", [])], "item_id string, genre_multi_hot array<int>"
    )
    assert_df_equality(multi_hot, expected, ignore_row_order=True, ignore_nullable=True)
