import pytest
from pyspark.sql import functions as F

from recspark.evaluation.sampling import sample_users

pytestmark = pytest.mark.unit


def test_sample_users_is_a_seeded_capped_subset(spark):
    pairs = spark.range(300).select((F.col("id") % 100).cast("int").alias("user_idx"))
    every = sample_users(pairs, None, seed=1)
    assert every.count() == 100
    some = sorted(r.user_idx for r in sample_users(pairs, 30, seed=1).collect())
    assert len(some) == 30 and len(set(some)) == 30 and set(some) <= set(range(100))
    assert some == sorted(r.user_idx for r in sample_users(pairs, 30, seed=1).collect())
    assert some != sorted(r.user_idx for r in sample_users(pairs, 30, seed=2).collect())


def test_sample_users_reads_the_named_user_column(spark):
    pairs = spark.range(10).select(F.col("id").alias("user_id"))
    assert sorted(r.user_id for r in sample_users(pairs, 4, seed=0, user_col="user_id").collect()) == sorted(
        r.user_id for r in sample_users(pairs.repartition(3), 4, seed=0, user_col="user_id").collect())
