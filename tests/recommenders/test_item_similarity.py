"""Item-item similarity (co-occurrence and factor based) and item-based CF recommendations."""
from __future__ import annotations

import math
import random

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.recommenders import item_similarity
from recspark.recommenders.item_similarity import (
    NEIGHBOR_COL,
    ItemSimilarity,
    ItemSimilarityModel,
    factor_similarity,
)

pytestmark = pytest.mark.unit

SIM_SCHEMA = f"item_idx int, {NEIGHBOR_COL} int, score double, support long"
REC_SCHEMA = "user_idx int, item_idx int, score double, rank int, because_item int"

# u0: 1 2 3 | u1: 1 2 | u2: 2 3 | u3: 1 2 4 (u1's item 1 twice: counts once)
# n1=3 n2=4 n3=2 n4=1, N=4; c12=3 c13=1 c23=2 c14=1 c24=1
HAND_ROWS = [(0, 1), (0, 2), (0, 3), (1, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 1), (3, 2), (3, 4)]
HAND_SCORES = {
    "cosine": {
        (1, 2): 3 / math.sqrt(12),
        (1, 3): 1 / math.sqrt(6),
        (2, 3): 2 / math.sqrt(8),
        (1, 4): 1 / math.sqrt(3),
        (2, 4): 1 / math.sqrt(4),
    },
    "jaccard": {(1, 2): 3 / 4, (1, 3): 1 / 4, (2, 3): 2 / 4, (1, 4): 1 / 3, (2, 4): 1 / 4},
    "lift": {(1, 2): 12 / 12, (1, 3): 4 / 6, (2, 3): 8 / 8, (1, 4): 4 / 3, (2, 4): 4 / 4},
}
HAND_SUPPORT = {(1, 2): 3, (1, 3): 1, (2, 3): 2, (1, 4): 1, (2, 4): 1}


def interactions(spark, rows) -> DataFrame:
    return spark.createDataFrame(rows, "user_idx int, item_idx int")


def both_directions(scores: dict, support: dict) -> list[tuple]:
    rows = []
    for (i, j), score in scores.items():
        rows += [(i, j, score, support[(i, j)]), (j, i, score, support[(i, j)])]
    return rows


def assert_same_rows(actual: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def assert_similarities(spark, actual: DataFrame, expected_rows: list[tuple]) -> None:
    assert_same_rows(actual, spark.createDataFrame(expected_rows, SIM_SCHEMA))


def assert_recommendations(spark, actual: DataFrame, expected_rows: list[tuple]) -> None:
    assert_same_rows(actual, spark.createDataFrame(expected_rows, REC_SCHEMA))


@pytest.mark.parametrize("metric", ["cosine", "jaccard", "lift"])
def test_hand_computed_scores_and_support(spark, metric):
    model = ItemSimilarity(metric=metric, min_support=1, max_items_per_user=None).fit(
        interactions(spark, HAND_ROWS)
    )
    expected = both_directions(HAND_SCORES[metric], HAND_SUPPORT)
    assert_similarities(spark, model.similarities, expected)


def test_min_support_prunes_rare_pairs(spark):
    model = ItemSimilarity(metric="cosine", min_support=2).fit(interactions(spark, HAND_ROWS))
    kept = {pair: HAND_SCORES["cosine"][pair] for pair in [(1, 2), (2, 3)]}
    assert_similarities(spark, model.similarities, both_directions(kept, HAND_SUPPORT))


def test_top_n_keeps_best_and_breaks_ties_by_neighbor_id(spark):
    # item 0 meets 5 twice and 3, 1, 2 once each: n0=5, n5=2, n1=n2=n3=1
    rows = [(0, 0), (0, 3), (1, 0), (1, 1), (2, 0), (2, 2), (3, 0), (3, 5), (4, 0), (4, 5)]
    model = ItemSimilarity(metric="cosine", min_support=1, top_n=2).fit(interactions(spark, rows))
    expected = [
        (0, 5, 2 / math.sqrt(10), 2),
        (0, 1, 1 / math.sqrt(5), 1),  # 1, 2 and 3 tie for second place; the smallest id wins
        (1, 0, 1 / math.sqrt(5), 1),
        (2, 0, 1 / math.sqrt(5), 1),
        (3, 0, 1 / math.sqrt(5), 1),
        (5, 0, 2 / math.sqrt(10), 2),
    ]
    assert_similarities(spark, model.similarities, expected)


@pytest.mark.parametrize("counting", ["dense", "chunked"])
def test_weighted_cosine_sums_repeated_weights(spark, monkeypatch, counting):
    if counting == "chunked":
        monkeypatch.setattr(item_similarity, "PAIRS_PER_CHUNK", 1)  # one anchor per chunk
        monkeypatch.setattr(item_similarity, "MAX_DENSE_PAIR_GRID", 1)  # np.unique, not bincount
    rows = [(0, 1, 2.0), (0, 2, 1.0), (1, 1, 1.0), (1, 2, 1.0), (1, 2, 2.0), (1, 3, -1.0)]
    frame = spark.createDataFrame(rows, "user_idx int, item_idx int, weight double")
    model = ItemSimilarity(min_support=1, weight_col="weight").fit(frame)
    # dot = 2*1 + 1*3 = 5, |w1|^2 = 4 + 1, |w2|^2 = 1 + 9; the negative weight is ignored
    score = 5 / math.sqrt(5.0 * 10.0)
    assert_similarities(spark, model.similarities, [(1, 2, score, 2), (2, 1, score, 2)])


def naive_similarities(frame: DataFrame, metric: str, min_support: int, top_n: int) -> DataFrame:
    """Reference: items x items cross join over binary user vectors (sets of users)."""
    users_of = frame.groupBy("item_idx").agg(F.collect_set("user_idx").alias("users"))
    n_users = frame.select("user_idx").distinct().count()
    a = users_of.select(F.col("item_idx"), F.col("users").alias("ua"))
    b = users_of.select(F.col("item_idx").alias(NEIGHBOR_COL), F.col("users").alias("ub"))
    pairs = a.crossJoin(b).where(F.col("item_idx") != F.col(NEIGHBOR_COL))
    c = F.size(F.array_intersect("ua", "ub")).cast("long")
    n_i, n_j = F.size("ua").cast("long"), F.size("ub").cast("long")
    scores = {
        "cosine": c / F.sqrt(n_i * n_j),
        "jaccard": c / (n_i + n_j - c),
        "lift": c.cast("double") * n_users / (n_i * n_j),
    }
    scored = pairs.select(
        "item_idx", NEIGHBOR_COL, scores[metric].alias("score"), c.alias("support")
    ).where(F.col("support") >= min_support)
    window = Window.partitionBy("item_idx").orderBy(F.desc("score"), F.asc(NEIGHBOR_COL))
    return (
        scored.withColumn("r", F.row_number().over(window))
        .where(F.col("r") <= top_n)
        .drop("r")
    )


@pytest.fixture(scope="module")
def random_interactions(spark) -> DataFrame:
    rng = random.Random(11)
    rows = [(rng.randrange(25), rng.randrange(30)) for _ in range(300)]
    return interactions(spark, rows).cache()


@pytest.mark.parametrize(
    "metric, max_items_per_user, n_buckets, counting",
    [
        ("cosine", None, 5, "dense"),  # 5 anchor buckets (shuffle partitions), 5 tasks
        ("jaccard", None, 2, "chunked"),  # many chunks per task, np.unique instead of bincount
        ("lift", 1000, 2, "dense"),  # a cap above every user is a no-op
    ],
)
def test_equals_naive_cross_join_reference(
    spark, random_interactions, monkeypatch, metric, max_items_per_user, n_buckets, counting
):
    if counting == "chunked":
        monkeypatch.setattr(item_similarity, "PAIRS_PER_CHUNK", 100)
        monkeypatch.setattr(item_similarity, "MAX_DENSE_PAIR_GRID", 1)
    expected = naive_similarities(random_interactions, metric, min_support=2, top_n=5)
    estimator = ItemSimilarity(
        metric, min_support=2, top_n=5, max_items_per_user=max_items_per_user
    )
    partitions = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(n_buckets))
    try:
        actual = estimator.fit(random_interactions).similarities.collect()
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", partitions)
    assert_same_rows(spark.createDataFrame(actual, SIM_SCHEMA), expected)


def items_with_neighbours(spark, rows, seed: int) -> set[int]:
    model = ItemSimilarity(min_support=1, top_n=10, max_items_per_user=3, seed=seed).fit(
        interactions(spark, rows)
    )
    return {row.item_idx for row in model.similarities.collect()}


def test_heavy_user_sampling_keeps_smallest_hashes_deterministically(spark):
    heavy, light = [(7, item) for item in range(6)], [(8, 10), (8, 11)]
    by_hash = (
        interactions(spark, heavy)
        .orderBy(F.xxhash64(F.lit(5), "user_idx", "item_idx"), "item_idx")
        .limit(3)
    )
    expected = {row.item_idx for row in by_hash.collect()} | {10, 11}  # light user untouched
    assert items_with_neighbours(spark, heavy + light, seed=5) == expected
    assert items_with_neighbours(spark, heavy + light, seed=5) == expected  # same on a re-run
    other_seed = items_with_neighbours(spark, heavy, seed=0)
    assert len(other_seed) == 3 and other_seed != expected - {10, 11}  # the seed matters


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metric": "pearson"},
        {"metric": "jaccard", "weight_col": "weight"},
        {"min_support": 0},
        {"top_n": 0},
        {"max_items_per_user": 1},
        {"seed": "1"},
        {"item_col": NEIGHBOR_COL},
    ],
)
def test_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        ItemSimilarity(**kwargs)


def test_fit_rejects_missing_columns_and_string_ids(spark):
    with pytest.raises(ValueError, match="lacks"):
        ItemSimilarity(weight_col="weight").fit(interactions(spark, HAND_ROWS))
    string_ids = spark.createDataFrame([(0, "a")], "user_idx int, item_idx string")
    with pytest.raises(ValueError, match="integer"):
        ItemSimilarity().fit(string_ids)


@pytest.fixture(scope="module")
def planted_model(spark) -> ItemSimilarityModel:
    rows = [
        (1, 10, 0.5), (1, 11, 0.25), (1, 2, 0.75),
        (2, 10, 0.25), (2, 12, 0.5), (2, 1, 0.75),
        (3, 11, 0.75), (3, 10, 0.75),
        (4, 10, 0.5),
    ]  # fmt: skip
    schema = f"item_idx int, {NEIGHBOR_COL} int, score double"
    return ItemSimilarityModel(spark.createDataFrame(rows, schema))


def test_recommend_sums_similarities_and_excludes_seen(spark, planted_model):
    history = interactions(spark, [(0, 1), (0, 2), (0, 2), (1, 3), (2, 1), (2, 4)])
    expected = [
        (0, 10, 0.75, 1, 1),  # 0.5 via 1 + 0.25 via 2; 1 and 2 are seen
        (0, 12, 0.5, 2, 2),
        (1, 10, 0.75, 1, 3),  # 10 and 11 tie: smaller id first
        (1, 11, 0.75, 2, 3),
        (2, 10, 1.0, 1, 1),  # 0.5 via 1 and 0.5 via 4: the smaller id explains
        (2, 2, 0.75, 2, 1),
    ]
    actual = planted_model.recommend(history, k=2)
    assert_recommendations(spark, actual, expected)


def test_recommend_can_include_seen_items(spark, planted_model):
    history = interactions(spark, [(0, 1), (0, 2)])
    expected = [(0, 1, 0.75, 1, 2), (0, 2, 0.75, 2, 1), (0, 10, 0.75, 3, 1)]
    actual = planted_model.recommend(history, k=3, exclude_seen=False)
    assert_recommendations(spark, actual, expected)


def test_recommend_weighted_and_normalized(spark, planted_model):
    history = spark.createDataFrame(
        [(0, 1, 2.0), (0, 2, 1.0)], "user_idx int, item_idx int, w double"
    )
    weighted = [(0, 10, 1.25, 1, 1), (0, 11, 0.5, 2, 1), (0, 12, 0.5, 3, 2)]
    actual = planted_model.recommend(history, k=3, weight_col="w")
    assert_recommendations(spark, actual, weighted)
    normalized = [(0, 11, 0.5 / 0.25, 1, 1), (0, 10, 1.25 / 0.75, 2, 1), (0, 12, 0.5 / 0.5, 3, 2)]
    actual = planted_model.recommend(history, k=3, weight_col="w", normalize=True)
    assert_recommendations(spark, actual, normalized)


def test_fit_then_recommend(spark):
    model = ItemSimilarity(min_support=1).fit(interactions(spark, HAND_ROWS))
    cos = HAND_SCORES["cosine"]
    expected = [
        (2, 1, cos[(1, 2)] + cos[(1, 3)], 1, 2),  # user 2 has items 2 and 3
        (2, 4, cos[(2, 4)], 2, 2),
    ]
    actual = model.recommend(interactions(spark, [(2, 2), (2, 3)]), k=5)
    assert_recommendations(spark, actual, expected)


def test_recommend_rejects_bad_input(spark, planted_model):
    history = interactions(spark, [(0, 1)])
    with pytest.raises(ValueError):
        planted_model.recommend(history, k=0)
    with pytest.raises(ValueError, match="lacks"):
        planted_model.recommend(history, k=1, weight_col="w")
    with pytest.raises(ValueError, match="lacks"):
        ItemSimilarityModel(spark.createDataFrame([(1, 0.5)], "item_idx int, score double"))


def test_factor_similarity_exact_cosine_neighbours(spark):
    factors = spark.createDataFrame(
        [(0, [1.0, 0.0]), (1, [1.0, 1.0]), (2, [0.0, 1.0]), (3, [-1.0, 0.0])],
        "item_idx int, features array<double>",
    )
    half = 1 / math.sqrt(2)
    expected = spark.createDataFrame(
        [
            (0, 1, half, None), (0, 2, 0.0, None),
            (1, 0, half, None), (1, 2, half, None),  # tie: smaller id first
            (2, 1, half, None), (2, 0, 0.0, None),  # 0 and 3 tie at 0
            (3, 2, 0.0, None), (3, 1, -half, None),
        ],  # fmt: skip
        SIM_SCHEMA,
    )
    actual = factor_similarity(factors, top_n=2)
    assert_approx_df_equality(actual, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)
