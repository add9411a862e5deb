"""Negative sampling: exclusion of positives, counts, popularity weighting, determinism."""
from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recspark.featurize.negatives import sample_negatives, with_negatives

pytestmark = pytest.mark.unit

PAIRS = "user_idx int, item_idx int"
LABELLED = "user_idx int, item_idx int, label int"


def _item_index(spark, n_items):
    return spark.range(n_items).select(
        F.concat(F.lit("i"), F.col("id").cast("string")).alias("item_id"),
        F.col("id").cast("int").alias("item_idx"),
    )


def test_uniform_negatives_exclude_positives_and_have_ratio_count(spark):
    positives = spark.createDataFrame([(0, 0), (0, 1), (0, 1), (1, 2)], PAIRS)  # (0, 1) twice
    negatives = sample_negatives(positives, _item_index(spark, 6), ratio=2, seed=3).cache()
    counts = negatives.groupBy("user_idx", "label").count()
    expected_counts = spark.createDataFrame([(0, 0, 4), (1, 0, 2)], "user_idx int, label int, count long")
    assert_df_equality(counts, expected_counts, ignore_row_order=True, ignore_nullable=True)
    assert negatives.join(positives, on=["user_idx", "item_idx"]).count() == 0
    assert negatives.where("item_idx < 0 or item_idx > 5").count() == 0


def test_popularity_weighting_never_draws_unpopular_items(spark):
    # popularity: item 0 -> 2 users, items 1 and 2 -> 1 user, items 3..5 -> 0 (never drawn)
    positives = spark.createDataFrame([(0, 0), (0, 1), (1, 2), (2, 0)], PAIRS)
    negatives = sample_negatives(positives, _item_index(spark, 6), ratio=2, seed=3, popularity_alpha=1.0).cache()
    user_0 = negatives.where("user_idx = 0")
    expected_user_0 = spark.createDataFrame([(0, 2, 0)] * 4, LABELLED)  # item 2 is the only option
    assert_df_equality(user_0, expected_user_0, ignore_row_order=True, ignore_nullable=True)
    assert negatives.where("item_idx >= 3").count() == 0
    assert negatives.join(positives, on=["user_idx", "item_idx"]).count() == 0
    assert negatives.count() == 8


def test_low_acceptance_user_and_saturated_user(spark):
    # user 0 has 9 of 10 items (uniform mass left 0.1): every negative is item 9;
    # user 1 has every item: no negatives are possible.
    positives = spark.createDataFrame([(0, i) for i in range(9)] + [(1, i) for i in range(10)], PAIRS)
    negatives = sample_negatives(positives, _item_index(spark, 10), ratio=1, seed=0)
    expected = spark.createDataFrame([(0, 9, 0)] * 9, LABELLED)
    assert_df_equality(negatives, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.fixture(scope="module")
def many_positives(spark):
    return spark.range(400).select(
        (F.col("id") % 40).cast("int").alias("user_idx"),
        ((F.col("id") * 7) % 97).cast("int").alias("item_idx"),
    )


def test_negatives_are_deterministic_and_partition_independent(spark, many_positives):
    items = _item_index(spark, 100)
    first = sample_negatives(many_positives, items, ratio=3, seed=11).cache()
    again = sample_negatives(many_positives.repartition(5), items, ratio=3, seed=11)
    assert_df_equality(first, again, ignore_row_order=True)
    other_seed = sample_negatives(many_positives, items, ratio=3, seed=12)
    assert sorted(first.collect()) != sorted(other_seed.collect())
    assert first.count() == 3 * many_positives.distinct().count()
    assert first.join(many_positives, on=["user_idx", "item_idx"]).count() == 0


def test_with_negatives_labels(spark):
    positives = spark.createDataFrame([(0, 0), (1, 2)], PAIRS)
    labelled = with_negatives(positives, _item_index(spark, 5), ratio=2, seed=1).cache()
    counts = labelled.groupBy("label").count()
    expected = spark.createDataFrame([(0, 4), (1, 2)], "label int, count long")
    assert_df_equality(counts, expected, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(
        labelled.where("label = 1"),
        spark.createDataFrame([(0, 0, 1), (1, 2, 1)], LABELLED),
        ignore_row_order=True,
        ignore_nullable=True,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ratio": 0, "seed": 1}, "ratio"),
        ({"ratio": 1.5, "seed": 1}, "ratio"),
        ({"ratio": 1, "seed": -1}, "seed"),
        ({"ratio": 1, "seed": 1, "popularity_alpha": -0.5}, "popularity_alpha"),
    ],
)
def test_invalid_negative_sampling_arguments(spark, kwargs, message):
    positives = spark.createDataFrame([(0, 0)], PAIRS)
    with pytest.raises(ValueError, match=message):
        sample_negatives(positives, _item_index(spark, 3), **kwargs)
