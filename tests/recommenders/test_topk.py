"""Top-K retrieval over factor matrices: hand-computed answers, a numpy brute force, and ALS."""
from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.ml.linalg import Vectors
from pyspark.ml.recommendation import ALS
from pyspark.sql import functions as F

from recspark.recommenders.topk import (
    top_k_by_dot_product,
    top_k_of_score_block,
    top_k_similar_items,
)

pytestmark = pytest.mark.unit

RESULT_SCHEMA = "user_idx int, item_idx int, score float, rank int"


def factors(spark, rows, id_col, id_type="int"):
    return spark.createDataFrame(rows, f"{id_col} {id_type}, features array<float>")


def in_row_order(df):
    """All rows sorted in one partition: order-free comparison without a range-partition sort."""
    return df.coalesce(1).sortWithinPartitions(*df.columns)


def assert_rows(actual, spark, expected_rows, schema=RESULT_SCHEMA):
    expected = spark.createDataFrame(expected_rows, schema)
    assert_df_equality(in_row_order(actual), in_row_order(expected), ignore_nullable=True)


@pytest.fixture(scope="module")
def users(spark):
    return factors(spark, [(1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [1.0, 2.0])], "user_idx")


@pytest.fixture(scope="module")
def items(spark):
    # Item scores: user 1 -> 10: 3, 11: 1, 12: 0, 13: 2
    #              user 2 -> 10: 0, 11: 1, 12: 2, 13: 0.5
    #              user 3 -> 10: 3, 11: 3, 12: 4, 13: 3
    return factors(
        spark,
        [(12, [0.0, 2.0]), (10, [3.0, 0.0]), (13, [2.0, 0.5]), (11, [1.0, 1.0])],
        "item_idx",
    )


def test_hand_computed_top_k(spark, users, items):
    result = top_k_by_dot_product(users, items, k=2)
    assert_rows(
        result,
        spark,
        [
            (1, 10, 3.0, 1), (1, 13, 2.0, 2),
            (2, 12, 2.0, 1), (2, 11, 1.0, 2),
            (3, 12, 4.0, 1), (3, 10, 3.0, 2),  # 10, 11 and 13 tie at 3: smallest id wins
        ],
    )


def test_seen_items_are_excluded_and_users_may_get_fewer_than_k(spark, users, items):
    seen = spark.createDataFrame(
        [(1, 10), (1, 10), (2, 10), (2, 11), (2, 12), (3, 12), (3, 99)],  # 99: unknown item
        "user_idx int, item_idx long",
    )
    result = top_k_by_dot_product(users, items, k=3, seen=seen)
    assert_rows(
        result,
        spark,
        [
            (1, 13, 2.0, 1), (1, 11, 1.0, 2), (1, 12, 0.0, 3),
            (2, 13, 0.5, 1),  # only one unseen item left
            (3, 10, 3.0, 1), (3, 11, 3.0, 2), (3, 13, 3.0, 3),
        ],
    )


def test_user_who_saw_everything_gets_no_rows(spark, users, items):
    seen = spark.createDataFrame([(2, i) for i in (10, 11, 12, 13)], "user_idx int, item_idx int")
    result = top_k_by_dot_product(users, items, k=2, seen=seen)
    assert result.where("user_idx = 2").count() == 0
    assert result.where("user_idx = 1").count() == 2


def test_ties_at_the_kth_place_go_to_the_smallest_ids(spark):
    user = factors(spark, [(1, [1.0])], "user_idx")
    tied = factors(spark, [(7, [1.0]), (3, [1.0]), (9, [1.0]), (5, [1.0]), (8, [2.0])], "item_idx")
    assert_rows(top_k_by_dot_product(user, tied, k=2), spark, [(1, 8, 2.0, 1), (1, 3, 1.0, 2)])
    assert_rows(
        top_k_by_dot_product(user, tied.where("item_idx != 8"), k=2),
        spark,
        [(1, 3, 1.0, 1), (1, 5, 1.0, 2)],
    )


def test_k_larger_than_the_catalogue_returns_every_item(spark, users, items):
    result = top_k_by_dot_product(users, items, k=10)
    assert result.groupBy("user_idx").count().where("count != 4").count() == 0
    assert_rows(
        result.where("user_idx = 2"),
        spark,
        [(2, 12, 2.0, 1), (2, 11, 1.0, 2), (2, 13, 0.5, 3), (2, 10, 0.0, 4)],
    )


def test_no_items_gives_no_rows(spark, users):
    no_items = spark.createDataFrame([], "item_idx int, features array<float>")
    assert top_k_by_dot_product(users, no_items, k=2).count() == 0


def test_empty_seen_frame_changes_nothing(spark, users, items):
    no_seen = spark.createDataFrame([], "user_idx int, item_idx int")
    assert_df_equality(
        in_row_order(top_k_by_dot_product(users, items, k=3, seen=no_seen)),
        in_row_order(top_k_by_dot_product(users, items, k=3)),
    )


def test_string_ids_tie_break_by_string_order(spark):
    users = factors(spark, [("u1", [1.0, 0.0]), ("u2", [0.0, 1.0])], "user_id", "string")
    items = factors(
        spark,
        [("b", [1.0, 0.0]), ("a", [1.0, 0.0]), ("c", [1.0, 1.0]), ("B", [0.0, 3.0])],
        "item_id",
        "string",
    )
    seen = spark.createDataFrame([("u2", "B")], "user_id string, item_id string")
    result = top_k_by_dot_product(
        users, items, k=2, seen=seen, user_col="user_id", item_col="item_id"
    )
    assert_rows(
        result,
        spark,
        [
            ("u1", "a", 1.0, 1), ("u1", "b", 1.0, 2),  # "B" < "a" < "b" < "c", B scores 0
            ("u2", "c", 1.0, 1), ("u2", "a", 0.0, 2),  # B is seen; a and b tie at 0
        ],
        "user_id string, item_id string, score float, rank int",
    )


def test_ml_vector_and_double_factors_are_accepted(spark):
    users = spark.createDataFrame([(1, Vectors.dense([1.0, 2.0]))], ["user_idx", "features"])
    items = spark.createDataFrame(
        [(1, [0.5, 0.25]), (2, [1.0, 0.0])], "item_idx int, features array<double>"
    )
    assert_rows(
        top_k_by_dot_product(users, items, k=2),
        spark,
        [(1, 1, 1.0, 1), (1, 2, 1.0, 2)],
        "user_idx long, item_idx int, score float, rank int",
    )


def brute_force_top_k(user_matrix, item_matrix, item_ids, k, seen_pairs):
    """Reference: full score matrix, every (user, item) sorted by (-score, item id)."""
    expected = []
    for user, vector in enumerate(user_matrix):
        scores = item_matrix @ vector
        ranked = sorted(
            (item for item in range(len(item_ids)) if (user, item_ids[item]) not in seen_pairs),
            key=lambda item: (-scores[item], item_ids[item]),
        )
        expected += [
            (user, int(item_ids[item]), float(scores[item]), rank)
            for rank, item in enumerate(ranked[:k], start=1)
        ]
    return expected


def test_matches_numpy_brute_force_with_many_ties_across_blocks(spark):
    rng = np.random.default_rng(3)
    user_matrix = rng.integers(-2, 3, size=(20, 3)).astype(np.float32)  # small ints: many ties
    item_matrix = rng.integers(-2, 3, size=(30, 3)).astype(np.float32)
    item_ids = rng.permutation(np.arange(100, 130))
    seen_pairs = {(int(u), int(item_ids[i])) for u, i in rng.integers(0, [20, 30], size=(60, 2))}
    users = factors(spark, [(u, v.tolist()) for u, v in enumerate(user_matrix)], "user_idx")
    items = factors(
        spark, [(int(i), v.tolist()) for i, v in zip(item_ids, item_matrix)], "item_idx"
    )
    seen = spark.createDataFrame(sorted(seen_pairs), "user_idx int, item_idx int")
    result = top_k_by_dot_product(users, items, k=5, seen=seen, block_size=3)
    assert_rows(result, spark, brute_force_top_k(user_matrix, item_matrix, item_ids, 5, seen_pairs))


def test_score_block_keeps_ties_straddling_the_kth_place():
    scores = np.array(
        [[1.0, 5.0, 1.0, 1.0, 1.0], [-np.inf, 2.0, -np.inf, -np.inf, 3.0]], dtype=np.float32
    )
    rows, cols, values, ranks = top_k_of_score_block(scores, 3)
    assert rows.tolist() == [0, 0, 0, 1, 1]
    assert cols.tolist() == [1, 0, 2, 4, 1]
    assert values.tolist() == [5.0, 1.0, 1.0, 3.0, 2.0]
    assert ranks.tolist() == [1, 2, 3, 1, 2]


def test_score_block_matches_a_full_sort_when_columns_are_grouped():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 40, size=(50, 1003)).astype(np.float32)  # ~25 ties per value
    scores[3, :] = -np.inf  # everything excluded
    scores[4, 7:] = -np.inf  # 7 candidates left
    scores[5, :] = 1.0  # one tie across the whole row
    rows, cols, values, ranks = top_k_of_score_block(scores, 10)
    expected_rows, expected_cols = [], []
    for row in range(scores.shape[0]):
        finite = np.flatnonzero(scores[row] > -np.inf)
        best = finite[np.lexsort((finite, -scores[row, finite]))][:10]
        expected_rows += [row] * len(best)
        expected_cols += best.tolist()
    assert rows.tolist() == expected_rows
    assert cols.tolist() == expected_cols
    assert values.tolist() == scores[expected_rows, expected_cols].tolist()
    expected_ranks = [r for row in range(50) for r in range(1, 1 + expected_rows.count(row))]
    assert ranks.tolist() == expected_ranks


def test_similar_items_cosine_and_dot(spark):
    items = factors(
        spark, [(3, [1.0, 1.0]), (1, [1.0, 0.0]), (2, [0.0, 2.0]), (4, [3.0, 0.0])], "item_idx"
    )
    cosine_schema = "item_idx int, similar_item_idx int, score float, rank int"
    half_sqrt2 = float(np.float32(np.sqrt(0.5)))
    assert_rows(
        top_k_similar_items(items, k=2),
        spark,
        [
            (1, 4, 1.0, 1), (1, 3, half_sqrt2, 2),
            (2, 3, half_sqrt2, 1), (2, 1, 0.0, 2),  # 1 and 4 tie at 0
            (3, 1, half_sqrt2, 1), (3, 2, half_sqrt2, 2),
            (4, 1, 1.0, 1), (4, 3, half_sqrt2, 2),
        ],
        cosine_schema,
    )
    assert_rows(
        top_k_similar_items(items, k=1, metric="dot", similar_item_col="neighbour"),
        spark,
        [(1, 4, 3.0, 1), (2, 3, 2.0, 1), (3, 4, 3.0, 1), (4, 1, 3.0, 1)],
        "item_idx int, neighbour int, score float, rank int",
    )


def test_similar_items_of_a_single_item_is_empty(spark):
    assert top_k_similar_items(factors(spark, [(1, [1.0])], "item_idx"), k=3).count() == 0


def test_agrees_with_als_recommend_for_all_users(spark):
    ratings = spark.range(600).select(
        F.pmod(F.hash("id", F.lit(1)), 40).alias("user"),
        F.pmod(F.hash("id", F.lit(2)), 60).alias("item"),
        (F.pmod(F.hash("id", F.lit(3)), 5) + 1).cast("float").alias("rating"),
    )
    als = ALS(rank=4, maxIter=5, regParam=0.1, seed=7, userCol="user", itemCol="item")
    model = als.fit(ratings)
    als_top = (
        model.recommendForAllUsers(5)
        .select("user", F.explode("recommendations").alias("rec"))
        .select("user", "rec.item", "rec.rating")
        .collect()
    )
    ours = top_k_by_dot_product(
        model.userFactors.withColumnRenamed("id", "user"),
        model.itemFactors.withColumnRenamed("id", "item"),
        k=5,
        user_col="user",
        item_col="item",
    ).collect()
    assert len(ours) == len(als_top) == 40 * 5
    for user in range(40):
        als_scores = {r.item: r.rating for r in als_top if r.user == user}
        our_rows = sorted((r for r in ours if r.user == user), key=lambda r: r["rank"])
        our_scores = {r.item: r.score for r in our_rows}
        assert [r.score for r in our_rows] == pytest.approx(
            sorted(als_scores.values(), reverse=True), abs=1e-5
        )
        # Items in only one list must tie with the k-th score (ALS breaks ties arbitrarily).
        kth_score = our_rows[-1].score
        for item in als_scores.keys() ^ our_scores.keys():
            assert {**als_scores, **our_scores}[item] == pytest.approx(kth_score, abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be a positive integer"),
        ({"k": 2, "block_size": 0}, "block_size must be a positive integer"),
        ({"k": 2, "user_col": "uid"}, "user_factors lacks column"),
        ({"k": 2, "factors_col": "vec"}, "lacks column"),
    ],
)
def test_bad_arguments_are_rejected(spark, users, items, kwargs, message):
    with pytest.raises(ValueError, match=message):
        top_k_by_dot_product(users, items, **kwargs)


def test_same_id_column_for_users_and_items_is_rejected(spark):
    als_like = factors(spark, [(1, [1.0])], "id")
    with pytest.raises(ValueError, match="rename one id column"):
        top_k_by_dot_product(als_like, als_like, k=1, user_col="id", item_col="id")


def test_bad_item_factors_are_rejected(spark, users):
    duplicated = factors(spark, [(1, [1.0, 0.0]), (1, [0.0, 1.0])], "item_idx")
    with pytest.raises(ValueError, match="duplicate ids"):
        top_k_by_dot_product(users, duplicated, k=1)
    non_finite = factors(spark, [(1, [float("nan"), 0.0])], "item_idx")
    with pytest.raises(ValueError, match="non-finite"):
        top_k_by_dot_product(users, non_finite, k=1)
    text = spark.createDataFrame([(1, "x")], "item_idx int, features string")
    with pytest.raises(ValueError, match="array of numbers"):
        top_k_by_dot_product(users, text, k=1)
    with pytest.raises(ValueError, match="metric"):
        top_k_similar_items(duplicated, k=1, metric="euclid")


def test_rank_mismatch_fails_when_scored(spark, users):
    rank3 = factors(spark, [(1, [1.0, 0.0, 0.0])], "item_idx")
    with pytest.raises(Exception, match="every query needs 3 factors"):
        top_k_by_dot_product(users, rank3, k=1).collect()
