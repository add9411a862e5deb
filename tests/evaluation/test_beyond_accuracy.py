"""Coverage, entropy, novelty, popularity and intra-list diversity on tiny frames with
hand-computed values."""
from __future__ import annotations

import math

import pytest
from chispa import assert_df_equality
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F

from recspark.evaluation import (
    average_recommendation_popularity,
    catalog_coverage,
    distributional_coverage,
    intra_list_diversity,
    item_choice_popularity,
    item_popularity,
    novelty,
    serendipity,
)
from recspark.evaluation.beyond_accuracy import serendipity_by, with_relevance

pytestmark = pytest.mark.unit

SCHEMA = "user_id string, item_id string"


@pytest.fixture(scope="module")
def train(spark):
    # a: all 4 users (p = 1), b: 2 users (p = 1/2), c: 1 user (p = 1/4); u1-a is repeated.
    return spark.createDataFrame(
        [("u1", "a"), ("u1", "a"), ("u2", "a"), ("u3", "a"), ("u4", "a"),
         ("u1", "b"), ("u2", "b"), ("u3", "c")],
        SCHEMA,
    )


@pytest.fixture(scope="module")
def recommendations(spark):
    # item counts: a 1, b 1, c 2, z 1 (z unseen in train)
    return spark.createDataFrame(
        [("v1", "a"), ("v1", "c"), ("v2", "b"), ("v2", "c"), ("v3", "z")], SCHEMA
    )


def test_catalog_coverage(recommendations):
    # 4 distinct items (a, b, c, z) of a 10-item catalog
    assert catalog_coverage(recommendations, 10) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="n_catalog_items must be positive"):
        catalog_coverage(recommendations, 0)


def test_distributional_coverage(spark, recommendations):
    # p = (1/5, 1/5, 2/5, 1/5): H = 3 * (1/5) * log2(5) + (2/5) * log2(5/2)
    expected = 3 / 5 * math.log2(5) + 2 / 5 * math.log2(5 / 2)
    assert distributional_coverage(recommendations) == pytest.approx(expected, abs=1e-12)
    # p = (1/2, 1/4, 1/4): H = 1/2 * 1 + 2 * 1/4 * 2 = 1.5 bits
    skewed = spark.createDataFrame([("u", "a"), ("v", "a"), ("u", "b"), ("v", "c")], SCHEMA)
    assert distributional_coverage(skewed) == pytest.approx(1.5, abs=1e-12)
    # one item everywhere: 0 bits
    single = spark.createDataFrame([("u", "a"), ("v", "a")], SCHEMA)
    assert distributional_coverage(single) == 0.0
    assert math.isnan(distributional_coverage(spark.createDataFrame([], SCHEMA)))


def test_item_popularity(spark, train):
    expected = spark.createDataFrame(
        [("a", 4, 1.0), ("b", 2, 0.5), ("c", 1, 0.25)],
        "item_id string, n_users long, popularity double",
    )
    assert_df_equality(
        item_popularity(train), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_novelty_skips_unseen_items(recommendations, train):
    # rows a, c, b, c (z unseen, left out): (0 + 2 + 1 + 2) / 4 bits
    assert novelty(recommendations, train) == pytest.approx(5 / 4, abs=1e-12)


def test_average_recommendation_popularity(recommendations, train):
    # rows a, c, b, c, z: (1 + 1/4 + 1/2 + 1/4 + 0) / 5
    assert average_recommendation_popularity(recommendations, train) == pytest.approx(0.4, abs=1e-12)


def test_novelty_rejects_mismatched_id_types(spark, train):
    int_items = spark.createDataFrame([("v1", 1)], "user_id string, item_id int")
    with pytest.raises(ValueError, match="'item_id' is int in recommendations but string"):
        novelty(int_items, train)


VECTORS = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "d": [2.0, 0.0], "zero": [0.0, 0.0]}
DIVERSITY_LISTS = [
    ("u1", "a"), ("u1", "b"), ("u1", "c"), ("u1", "c"),  # c repeated: counted once
    ("u2", "a"), ("u2", "d"),
    ("u3", "a"), ("u3", "missing"),  # one item with a vector: no pair, user left out
    ("u4", "a"), ("u4", "zero"),  # zero vector dropped: no pair, user left out
]
# u1: pairs (a, b) cos 0, (a, c) and (b, c) cos 1/sqrt(2) -> mean distance (1 + 2 (1 - 1/sqrt 2)) / 3
# u2: a and d are parallel -> distance 0
EXPECTED_DIVERSITY = ((1 + 2 * (1 - 1 / math.sqrt(2))) / 3 + 0.0) / 2


def test_intra_list_diversity_arrays(spark):
    recommendations = spark.createDataFrame(DIVERSITY_LISTS, SCHEMA)
    vectors = spark.createDataFrame(
        [(item, [float(x) for x in v]) for item, v in VECTORS.items()],
        "item_id string, features array<float>",
    )
    assert intra_list_diversity(recommendations, vectors) == pytest.approx(
        EXPECTED_DIVERSITY, abs=1e-12
    )


def test_intra_list_diversity_ml_vectors(spark):
    recommendations = spark.createDataFrame(DIVERSITY_LISTS, SCHEMA)
    vectors = spark.createDataFrame(
        [(item, Vectors.dense(v)) for item, v in VECTORS.items()], ["item_id", "embedding"]
    )
    result = intra_list_diversity(recommendations, vectors, vector_col="embedding")
    assert result == pytest.approx(EXPECTED_DIVERSITY, abs=1e-12)


def test_intra_list_diversity_without_pairs_is_nan(spark):
    recommendations = spark.createDataFrame([("u1", "a")], SCHEMA)
    vectors = spark.createDataFrame([("a", [1.0])], "item_id string, features array<double>")
    assert math.isnan(intra_list_diversity(recommendations, vectors))
    with pytest.raises(ValueError, match="lacks column"):
        intra_list_diversity(recommendations, vectors, vector_col="embedding")


# MS Recommenders' evaluation fixture ``diversity_data`` (tests/unit/recommenders/evaluation/
# conftest.py) and the values its test_python_evaluation.py asserts.
MS_TRAIN = [(1, 1), (1, 2), (1, 4), (2, 3), (2, 4), (3, 3), (3, 4), (3, 5)]
MS_RECOMMENDATIONS = [(1, 3, 1), (1, 5, 0), (2, 2, 1), (2, 5, 1), (3, 1, 1), (3, 2, 0)]
MS_FEATURES = {
    1: [0.0, 1.0, 1.0, 0.0, 0.0],
    2: [0.0, 1.0, 0.0, 1.0, 0.0],
    3: [0.0, 0.0, 1.0, 1.0, 0.0],
    4: [0.0, 0.0, 1.0, 0.0, 1.0],
    5: [0.0, 0.0, 0.0, 1.0, 1.0],
}
INT_SCHEMA = "user_id int, item_id int"


@pytest.fixture(scope="module")
def ms_frames(spark):
    train = spark.createDataFrame(MS_TRAIN, INT_SCHEMA)
    recommendations = spark.createDataFrame(MS_RECOMMENDATIONS, INT_SCHEMA + ", relevance int")
    features = spark.createDataFrame(list(MS_FEATURES.items()), "item_id int, features array<double>")
    return train, recommendations, features


def test_choice_novelty_matches_ms_recommenders_fixture(spark, ms_frames):
    train, recommendations, _ = ms_frames
    # items 1..5 hold 1, 1, 2, 3, 1 of the 8 pairs: -log2 = 3, 3, 2, 1.41504, 3 (MS: item_novelty)
    popularity = {r.item_id: -math.log2(r.popularity) for r in item_choice_popularity(train).collect()}
    assert popularity == pytest.approx({1: 3.0, 2: 3.0, 3: 2.0, 4: math.log2(8 / 3), 5: 3.0}, abs=1e-12)
    # rows 3, 5, 2, 5, 1, 2: (2 + 3 * 5) / 6 = 2.83333 (MS: novelty)
    assert novelty(recommendations, train, model="choice") == pytest.approx(17 / 6, abs=1e-12)
    # discovery model: items 1..5 reach 1, 1, 2, 3, 1 of 3 users
    discovery = (4 * math.log2(3) + math.log2(3 / 2)) / 6 + math.log2(3) / 6
    assert novelty(recommendations, train) == pytest.approx(discovery, abs=1e-12)
    with pytest.raises(ValueError, match="model must be"):
        novelty(recommendations, train, model="castells")


def test_serendipity_matches_ms_recommenders_fixture(ms_frames):
    train, recommendations, features = ms_frames
    # MS user_item_serendipity: 0.5, 0, 0.75, 0.5, 2/3, 0; user_serendipity 0.25, 0.625, 1/3
    expected = (0.25 + 0.625 + 1 / 3) / 3  # MS: 0.4028
    result = serendipity(recommendations, train, features, relevance_col="relevance")
    assert result == pytest.approx(expected, abs=1e-12)
    assert result == pytest.approx(0.4028, abs=1e-4)


def test_serendipity_relevance_all_ones_or_from_truth(spark, ms_frames):
    train, recommendations, features = ms_frames
    # every item relevant: user 1 (1/2 + 2/3) / 2, user 2 (3/4 + 1/2) / 2, user 3 (2/3 + 2/3) / 2
    assert serendipity(recommendations, train, features) == pytest.approx(45 / 72, abs=1e-12)
    # only (1, 3) and (3, 2) relevant: user 1 (1/2) / 2, user 2 0, user 3 (2/3) / 2
    truth = spark.createDataFrame([(1, 3), (3, 2), (3, 2)], INT_SCHEMA)
    assert serendipity(recommendations, train, features, truth=truth) == pytest.approx(7 / 36, abs=1e-12)
    with pytest.raises(ValueError, match="not both"):
        serendipity(recommendations, train, features, relevance_col="relevance", truth=truth)


def test_serendipity_missing_vectors_and_users_without_history(spark, ms_frames):
    train, _, features = ms_frames
    # item 6 has no vector: similarity 0 to user 1's history -> 1; user 9 has no history: left out
    recommendations = spark.createDataFrame([(1, 6), (1, 3), (9, 1)], INT_SCHEMA)
    assert serendipity(recommendations, train, features) == pytest.approx((1.0 + 0.5) / 2, abs=1e-12)
    nobody = spark.createDataFrame([(9, 1)], INT_SCHEMA)
    assert math.isnan(serendipity(nobody, train, features))


def test_serendipity_by_groups_equals_each_group_alone(spark, ms_frames):
    train, recommendations, features = ms_frames
    grouped = recommendations.withColumn("source", F.when(F.col("user_id") == 2, "b").otherwise("a"))
    rated = with_relevance(grouped, "user_id", "item_id", relevance_col="relevance")
    by_group = {
        row.source: row.value
        for row in serendipity_by(rated, ["source"], train, features, "features", "user_id", "item_id").collect()
    }
    assert by_group == pytest.approx({"a": (0.25 + 1 / 3) / 2, "b": 0.625}, abs=1e-12)
