"""Coverage, entropy, novelty, popularity and intra-list diversity on tiny frames with
hand-computed values."""
from __future__ import annotations

import math

import pytest
from chispa import assert_df_equality
from pyspark.ml.linalg import Vectors

from recspark.evaluation import (
    average_recommendation_popularity,
    catalog_coverage,
    distributional_coverage,
    intra_list_diversity,
    item_popularity,
    novelty,
)

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
