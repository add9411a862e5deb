"""User-based CF: neighbourhoods and recommendations against a naive cross-join reference."""
from __future__ import annotations

import math
import random

import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.recommenders.user_knn import NEIGHBOR_USER_COL, UserKnn, UserKnnSettings

pytestmark = pytest.mark.unit

NEIGHBOUR_SCHEMA = f"user_idx int, {NEIGHBOR_USER_COL} int, score double, support long"
REC_SCHEMA = "user_idx int, item_idx int, score double, rank int, because_user_idx int"

# u0: 1 2 3 | u1: 1 2 | u2: 2 3 | u3: 1 2 4 | u4: 5 (u1's item 1 twice: counts once)
# n0=3 n1=2 n2=2 n3=3 n4=1; common: c01=2 c02=2 c03=2 c12=1 c13=2 c23=1
HAND_ROWS = [(0, 1), (0, 2), (0, 3), (1, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 1), (3, 2), (3, 4), (4, 5)]


def interactions(spark, rows) -> DataFrame:
    return spark.createDataFrame(rows, "user_idx int, item_idx int")


def assert_rows(spark, actual: DataFrame, expected: list[tuple], schema: str) -> None:
    assert_approx_df_equality(
        actual, spark.createDataFrame(expected, schema), 1e-12, ignore_row_order=True, ignore_nullable=True
    )


def test_min_support_and_top_k_on_hand_computed_cosine(spark):
    model = UserKnn(UserKnnSettings(min_support=2, top_k=2)).fit(interactions(spark, HAND_ROWS))
    third, sixth = 2 / math.sqrt(9), 2 / math.sqrt(6)
    expected = [
        (0, 1, sixth, 2), (0, 2, sixth, 2),  # 1, 2 tie at 2/sqrt(6) and beat 3 (2/3)
        (1, 0, sixth, 2), (1, 3, sixth, 2),  # c12 = 1 < min_support
        (2, 0, sixth, 2),
        (3, 1, sixth, 2), (3, 0, third, 2),
    ]  # fmt: skip
    assert_rows(spark, model.neighbours, expected, NEIGHBOUR_SCHEMA)


def test_recommend_sums_neighbour_similarities(spark):
    model = UserKnn(UserKnnSettings(metric="jaccard", min_support=1, top_k=3)).fit(interactions(spark, HAND_ROWS))
    # user 2 (items 2, 3): jaccard to 0 = 2/3, to 1 = 1/3, to 3 = 1/4
    users = spark.createDataFrame([(2,), (2,), (4,)], "user_idx int")  # 4 has no neighbour
    actual = model.recommend(users, n=5, seen=interactions(spark, HAND_ROWS))
    expected = [(2, 1, 2 / 3 + 1 / 3 + 1 / 4, 1, 0), (2, 4, 1 / 4, 2, 3)]
    assert_rows(spark, actual, expected, REC_SCHEMA)


def naive_neighbours(frame: DataFrame, metric: str, min_support: int, top_k: int) -> DataFrame:
    """Reference: users x users cross join over sets of items."""
    items_of = frame.groupBy("user_idx").agg(F.collect_set("item_idx").alias("items"))
    a = items_of.select("user_idx", F.col("items").alias("ia"))
    b = items_of.select(F.col("user_idx").alias(NEIGHBOR_USER_COL), F.col("items").alias("ib"))
    c = F.size(F.array_intersect("ia", "ib")).cast("long")
    n_u, n_v = F.size("ia").cast("long"), F.size("ib").cast("long")
    score = {"cosine": c / F.sqrt(n_u * n_v), "jaccard": c / (n_u + n_v - c)}[metric]
    scored = (
        a.crossJoin(b)
        .where(F.col("user_idx") != F.col(NEIGHBOR_USER_COL))
        .select("user_idx", NEIGHBOR_USER_COL, score.alias("score"), c.alias("support"))
        .where(F.col("support") >= min_support)
    )
    window = Window.partitionBy("user_idx").orderBy(F.desc("score"), F.asc(NEIGHBOR_USER_COL))
    return scored.withColumn("r", F.row_number().over(window)).where(F.col("r") <= top_k).drop("r")


def naive_recommendations(rows, neighbours, n: int) -> list[tuple]:
    items_of: dict[int, set[int]] = {}
    for user, item in rows:
        items_of.setdefault(user, set()).add(item)
    result = []
    for user in sorted(items_of):
        scores: dict[int, float] = {}
        because: dict[int, tuple[float, int]] = {}
        for row in (r for r in neighbours if r.user_idx == user):
            for item in items_of[row[NEIGHBOR_USER_COL]] - items_of[user]:
                scores[item] = scores.get(item, 0.0) + row.score
                because[item] = min(because.get(item, (math.inf, 0)), (-row.score, row[NEIGHBOR_USER_COL]))
        ranked = sorted(scores, key=lambda item: (-scores[item], item))[:n]
        result += [(user, item, scores[item], rank, because[item][1]) for rank, item in enumerate(ranked, 1)]
    return result


@pytest.mark.parametrize("metric", ["cosine", "jaccard"])
def test_equals_naive_cross_join_reference(spark, metric):
    rng = random.Random(7)
    rows = [(rng.randrange(25), rng.randrange(30)) for _ in range(300)]
    frame = interactions(spark, rows).cache()
    settings = UserKnnSettings(metric=metric, min_support=2, top_k=4, max_items_per_user=None)
    model = UserKnn(settings).fit(frame)
    expected_neighbours = naive_neighbours(frame, metric, min_support=2, top_k=4)
    actual_neighbours = spark.createDataFrame(model.neighbours.collect(), NEIGHBOUR_SCHEMA)
    assert_approx_df_equality(
        actual_neighbours, expected_neighbours, 1e-12, ignore_row_order=True, ignore_nullable=True
    )
    # every candidate (n above any count): float sums of tied scores may differ in the last bit,
    # so ranks are checked for consistency with the scores rather than compared
    expected = naive_recommendations(rows, expected_neighbours.collect(), n=100)
    actual = model.recommend(frame.select("user_idx").distinct(), n=100, seen=frame).cache()
    without_rank = ["user_idx", "item_idx", "score", "because_user_idx"]
    assert_approx_df_equality(
        actual.select(without_rank),
        spark.createDataFrame(expected, REC_SCHEMA).select(without_rank),
        1e-9,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    lists: dict[int, list] = {}
    for row in actual.orderBy("user_idx", "rank").collect():
        lists.setdefault(row.user_idx, []).append(row)
    for user_rows in lists.values():
        assert [r["rank"] for r in user_rows] == list(range(1, len(user_rows) + 1))
        assert all(a.score >= b.score - 1e-12 for a, b in zip(user_rows, user_rows[1:]))
    actual.unpersist()
    frame.unpersist()


def sampled_items(spark, user: int, n_items: int, cap: int, seed: int) -> set[int]:
    rows = interactions(spark, [(user, item) for item in range(n_items)])
    by_hash = rows.orderBy(F.xxhash64(F.lit(seed), "user_idx", "item_idx"), "item_idx")
    return {row.item_idx for row in by_hash.limit(cap).collect()}


@pytest.mark.parametrize("seed", [3, 4])
def test_heavy_users_are_sampled_by_seeded_hash(spark, seed):
    # users 7 and 8 share all 8 items; each keeps its own 3 smallest hashes
    rows = [(user, item) for user in (7, 8) for item in range(8)]
    kept_7, kept_8 = (sampled_items(spark, user, 8, 3, seed) for user in (7, 8))
    common = len(kept_7 & kept_8)
    settings = UserKnnSettings(min_support=1, max_items_per_user=3, seed=seed)
    neighbours = UserKnn(settings).fit(interactions(spark, rows)).neighbours
    expected = [(7, 8, common / 3.0, common), (8, 7, common / 3.0, common)] if common else []
    assert_rows(spark, neighbours, expected, NEIGHBOUR_SCHEMA)


@pytest.mark.parametrize("seed", [3, 4])
def test_popular_items_users_are_sampled_by_seeded_hash(spark, seed):
    # items 0 and 1 have 6 users each, item 2 has 2; with max_users_per_item=3 the popular items
    # keep their 3 smallest xxhash64(seed, item, user): the same neighbours as an uncapped fit
    # on exactly that sample
    rows = [(user, item) for item in (0, 1) for user in range(6)] + [(0, 2), (1, 2)]
    frame = interactions(spark, rows)
    by_hash = Window.partitionBy("item_idx").orderBy(F.xxhash64(F.lit(seed), "item_idx", "user_idx"), "user_idx")
    sample = frame.withColumn("_p", F.row_number().over(by_hash)).where(F.col("_p") <= 3).drop("_p")
    assert sample.count() == 8
    capped = UserKnn(UserKnnSettings(min_support=1, max_users_per_item=3, seed=seed)).fit(frame).neighbours
    exact = UserKnn(UserKnnSettings(min_support=1, max_users_per_item=None, seed=seed)).fit(sample).neighbours
    assert_approx_df_equality(capped, exact, 1e-12, ignore_row_order=True, ignore_nullable=True)
    assert UserKnnSettings().max_users_per_item == 500


@pytest.mark.parametrize(
    "kwargs",
    [{"metric": "lift"}, {"min_support": 0}, {"top_k": 0}, {"max_items_per_user": 1},
     {"max_users_per_item": 1}, {"seed": 1.5}],
)
def test_settings_reject_bad_values(kwargs):
    with pytest.raises(ValueError):
        UserKnnSettings(**kwargs)
