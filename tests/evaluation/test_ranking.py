"""Ranking metrics: hand-computed answers, edge cases, bad input, and a cross-check against
Spark MLlib's RankingMetrics and a pure-Python reference on a few hundred random users."""
from __future__ import annotations

import math
from collections import defaultdict

import pytest
from chispa import assert_approx_df_equality
from pyspark.mllib.evaluation import RankingMetrics
from pyspark.sql import Window
from pyspark.sql import functions as F

from recspark.evaluation import ranking_metrics, user_ranking_metrics

pytestmark = pytest.mark.unit

K = 3

# user, item, rank
RECOMMENDATIONS = [
    ("a", "i1", 1), ("a", "i2", 2), ("a", "i3", 3), ("a", "i4", 4),
    ("b", "x1", 1), ("b", "x2", 2), ("b", "x3", 3), ("b", "x4", 4),
    ("c", "y1", 1), ("c", "y2", 2),  # list shorter than k, no hit
    ("e", "z1", 1),  # user not in truth: ignored
]
# user, item
TRUTH = [
    ("a", "i1"), ("a", "i3"), ("a", "i5"), ("a", "i6"),  # 4 relevant, more than k
    ("b", "x2"), ("b", "x4"),  # second hit is beyond k: counts for full-list map only
    ("c", "y9"),
    ("d", "q1"),  # truth user without recommendations: ignored, lowers user_coverage
]

# User a: hits at positions 1 and 3, |R| = 4.
#   precision@3 = 2/3, recall@3 = 2/4
#   DCG@3 = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
#   IDCG@3 over min(4, 3) = 3 positions = 1 + 1/log2(3) + 0.5 = 2.1309297535714575
#   map@3 = (1/1 + 2/3) / min(4, 3) = 5/9; map = (1/1 + 2/3) / 4 = 5/12; mrr@3 = 1
A_NDCG = 1.5 / (1 + 1 / math.log2(3) + 0.5)
# User b: hits at positions 2 (within k) and 4 (beyond k), |R| = 2.
#   precision@3 = 1/3, recall@3 = 1/2
#   DCG@3 = 1/log2(3) = 0.6309297535714575; IDCG@3 over min(2, 3) = 2 positions = 1 + 1/log2(3)
#   map@3 = (1/2) / min(2, 3) = 1/4; map = (1/2 + 2/4) / 2 = 1/2; mrr@3 = 1/2
B_NDCG = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
# User c: no hit, every metric 0.
EXPECTED = {
    "precision@k": (2 / 3 + 1 / 3 + 0) / 3,
    "recall@k": (2 / 4 + 1 / 2 + 0) / 3,
    # per-user harmonic mean of precision@3 and recall@3: a 2/(3/2 + 2), b 2/(3 + 2), c 0
    "f1@k": (2 / (3 / 2 + 2) + 2 / (3 + 2) + 0) / 3,
    "ndcg@k": (A_NDCG + B_NDCG + 0) / 3,
    "map@k": (5 / 9 + 1 / 4 + 0) / 3,
    "map": (5 / 12 + 1 / 2 + 0) / 3,
    "hit_rate@k": (1 + 1 + 0) / 3,
    "mrr@k": (1 + 1 / 2 + 0) / 3,
    "n_users": 3.0,
    "user_coverage": 3 / 4,  # a, b, c of truth users a, b, c, d
}

INT_IDS = {name: i for i, name in enumerate(
    ["a", "b", "c", "d", "e", "i1", "i2", "i3", "i4", "i5", "i6",
     "x1", "x2", "x3", "x4", "y1", "y2", "y9", "z1", "q1"], start=1)}


def _frames(spark, id_type):
    to_id = (lambda name: name) if id_type == "string" else INT_IDS.__getitem__
    recommendations = spark.createDataFrame(
        [(to_id(u), to_id(i), r) for u, i, r in RECOMMENDATIONS],
        f"user_id {id_type}, item_id {id_type}, rank int",
    )
    truth = spark.createDataFrame(
        [(to_id(u), to_id(i)) for u, i in TRUTH], f"user_id {id_type}, item_id {id_type}"
    )
    return recommendations, truth


@pytest.mark.parametrize("id_type", ["string", "int"])
def test_ranking_metrics_known_answers(spark, id_type):
    recommendations, truth = _frames(spark, id_type)
    result = ranking_metrics(recommendations, truth, K)
    assert set(result) == set(EXPECTED)
    for key, value in EXPECTED.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_user_ranking_metrics_per_user_rows(spark):
    recommendations, truth = _frames(spark, "string")
    result = user_ranking_metrics(recommendations, truth, K).orderBy("user_id")
    expected = spark.createDataFrame(
        [
            ("a", 4, 4, True, True, 2, 2 / 3, 2 / 4, 4 / 7, A_NDCG, 5 / 9, 5 / 12, 1.0, 1.0),
            ("b", 2, 4, True, True, 1, 1 / 3, 1 / 2, 2 / 5, B_NDCG, 1 / 4, 1 / 2, 1.0, 1 / 2),
            ("c", 1, 2, True, True, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
            ("d", 1, None, True, False, None, None, None, None, None, None, None, None, None),
            ("e", None, 1, False, True, None, None, None, None, None, None, None, None, None),
        ],
        "user_id string, n_relevant long, n_recommended long, in_truth boolean, "
        "in_recommendations boolean, hits_at_k long, precision_at_k double, recall_at_k double, "
        "f1_at_k double, ndcg_at_k double, map_at_k double, map double, hit_rate_at_k double, mrr_at_k double",
    )
    assert_approx_df_equality(result, expected, precision=1e-12, ignore_nullable=True)


def test_rank_ties_and_duplicate_items(spark):
    recommendations = spark.createDataFrame(
        [
            # u1: tie at rank 1 -> p (smaller id) is position 1, q position 2.
            ("u1", "q", 1), ("u1", "p", 1),
            # u2: z listed twice counts once at its best rank 1; w (rank 5) is position 2.
            ("u2", "z", 3), ("u2", "z", 1), ("u2", "w", 5),
            # u3: a null rank is ignored, so m is the only item, at position 1.
            ("u3", "n", None), ("u3", "m", 2),
        ],
        "user_id string, item_id string, rank int",
    )
    truth = spark.createDataFrame(
        [("u1", "q"), ("u2", "z"), ("u2", "w"), ("u3", "n")], "user_id string, item_id string"
    )
    result = ranking_metrics(recommendations, truth, 2)
    # u1: hit at position 2 -> precision 1/2, mrr 1/2
    # u2: hits at positions 1, 2 -> precision 2/2, mrr 1
    # u3: the only relevant item n has a null rank -> no hit
    assert result["precision@k"] == pytest.approx((1 / 2 + 1 + 0) / 3, abs=1e-12)
    assert result["mrr@k"] == pytest.approx((1 / 2 + 1 + 0) / 3, abs=1e-12)
    # u1 map: (1/2) / 1; u2 map: (1/1 + 2/2) / 2 = 1; u3: 0
    assert result["map"] == pytest.approx((1 / 2 + 1 + 0) / 3, abs=1e-12)


def test_relevance_threshold(spark):
    recommendations = spark.createDataFrame(
        [("u1", "a", 1), ("u1", "b", 2), ("u2", "c", 1)], "user_id string, item_id string, rank int"
    )
    truth = spark.createDataFrame(
        [
            ("u1", "a", 2.0),  # below threshold: not relevant
            ("u1", "b", 4.5),
            ("u1", "x", 4.0),  # exactly the threshold: relevant
            ("u2", "c", 3.0),  # u2 has no relevant item: not a truth user
            ("u3", "d", float("nan")),  # NaN is never relevant
        ],
        "user_id string, item_id string, rating double",
    )
    result = ranking_metrics(
        recommendations, truth, 2, relevance_col="rating", relevance_threshold=4.0
    )
    # Only u1 counts: relevant {b, x}, hit at position 2.
    assert result["n_users"] == 1.0
    assert result["user_coverage"] == 1.0
    assert result["precision@k"] == pytest.approx(1 / 2, abs=1e-12)
    assert result["recall@k"] == pytest.approx(1 / 2, abs=1e-12)
    # DCG = 1/log2(3); IDCG over min(2, 2) positions = 1 + 1/log2(3)
    assert result["ndcg@k"] == pytest.approx(B_NDCG, abs=1e-12)


def test_no_common_users_gives_nan(spark):
    recommendations = spark.createDataFrame([("u1", "a", 1)], "user_id string, item_id string, rank int")
    truth = spark.createDataFrame([("u2", "a")], "user_id string, item_id string")
    result = ranking_metrics(recommendations, truth, 5)
    assert result["n_users"] == 0.0
    assert result["user_coverage"] == 0.0
    assert all(math.isnan(result[key]) for key in ("precision@k", "ndcg@k", "map", "mrr@k"))


def test_custom_column_names(spark):
    recommendations = spark.createDataFrame(
        [(1, 10, 1), (1, 11, 2)], "customer long, product long, position int"
    )
    truth = spark.createDataFrame([(1, 11)], "customer long, product long")
    result = ranking_metrics(
        recommendations, truth, 2, user_col="customer", item_col="product", rank_col="position"
    )
    assert result["mrr@k"] == pytest.approx(1 / 2, abs=1e-12)


def test_bad_input(spark):
    recommendations, truth = _frames(spark, "string")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ranking_metrics(recommendations, truth, 0)
    with pytest.raises(ValueError, match="lacks column"):
        ranking_metrics(recommendations.drop("rank"), truth, K)
    with pytest.raises(ValueError, match="given together"):
        ranking_metrics(recommendations, truth, K, relevance_col="rating")
    with pytest.raises(ValueError, match="lacks column"):
        ranking_metrics(recommendations, truth, K, relevance_col="rating", relevance_threshold=4.0)
    _, int_truth = _frames(spark, "int")
    with pytest.raises(ValueError, match="'user_id' is string in recommendations but int"):
        ranking_metrics(recommendations, int_truth, K)


def _random_frames(spark):
    """~300 users x 40 items; list lengths 3..12, ranks 2, 4, 6, ... (not contiguous); some users
    only in recommendations (id % 13 == 0 have no truth) or only in truth (id % 17 == 0)."""
    pairs = spark.range(300).withColumnRenamed("id", "user_id").crossJoin(
        spark.range(40).withColumnRenamed("id", "item_id")
    )
    score = F.xxhash64("user_id", "item_id", F.lit("score"))
    by_score = Window.partitionBy("user_id").orderBy(score.desc(), "item_id")
    recommendations = (
        pairs.where(F.col("user_id") % 17 != 0)
        .withColumn("position", F.row_number().over(by_score))
        .where(F.col("position") <= 3 + F.col("user_id") % 10)
        .select("user_id", "item_id", (2 * F.col("position")).cast("int").alias("rank"))
    )
    truth = pairs.where(
        (F.col("user_id") % 13 != 0)
        & (F.pmod(F.xxhash64("user_id", "item_id", F.lit("truth")), F.lit(5)) == 0)
    )
    return recommendations, truth


def _harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b else 0.0


def _reference_metrics(ranked: list, relevant: set, k: int) -> dict[str, float]:
    """Straightforward per-user definitions (see recspark.evaluation.ranking)."""
    hits = [position for position, item in enumerate(ranked, start=1) if item in relevant]
    hits_at_k = [p for p in hits if p <= k]
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return {
        "precision@k": len(hits_at_k) / k,
        "recall@k": len(hits_at_k) / len(relevant),
        "f1@k": _harmonic_mean(len(hits_at_k) / k, len(hits_at_k) / len(relevant)),
        "ndcg@k": sum(1 / math.log2(p + 1) for p in hits_at_k) / ideal,
        "map@k": sum(n / p for n, p in enumerate(hits_at_k, 1)) / min(len(relevant), k),
        "map": sum(n / p for n, p in enumerate(hits, 1)) / len(relevant),
        "hit_rate@k": 1.0 if hits_at_k else 0.0,
        "mrr@k": 1 / hits_at_k[0] if hits_at_k else 0.0,
    }


def test_cross_check_with_mllib_and_reference(spark):
    k = 10
    recommendations, truth = _random_frames(spark)
    result = ranking_metrics(recommendations, truth, k)

    lists = defaultdict(list)
    for row in recommendations.collect():
        lists[row.user_id].append((row.rank, row.item_id))
    relevant = defaultdict(set)
    for row in truth.collect():
        relevant[row.user_id].add(row.item_id)
    common = sorted(set(lists) & set(relevant))
    ranked = {user: [item for _, item in sorted(lists[user])] for user in common}
    assert 200 < len(common) < 300  # the frame does exercise both exclusions
    assert result["n_users"] == len(common)
    assert result["user_coverage"] == pytest.approx(len(common) / len(relevant), abs=1e-12)

    per_user = [_reference_metrics(ranked[user], relevant[user], k) for user in common]
    for key in per_user[0]:
        reference = sum(metrics[key] for metrics in per_user) / len(per_user)
        assert result[key] == pytest.approx(reference, abs=1e-9), key

    # MLlib averages over the queries it is given, so give it the common users only. On those,
    # precisionAt, recallAt, ndcgAt (binary gains, natural log: the base cancels),
    # meanAveragePrecisionAt (divides by min(|R|, k)) and meanAveragePrecision (whole list,
    # divides by |R|) share our definitions.
    mllib = RankingMetrics(
        spark.sparkContext.parallelize([(ranked[user], sorted(relevant[user])) for user in common])
    )
    assert result["precision@k"] == pytest.approx(mllib.precisionAt(k), abs=1e-9)
    assert result["recall@k"] == pytest.approx(mllib.recallAt(k), abs=1e-9)
    assert result["ndcg@k"] == pytest.approx(mllib.ndcgAt(k), abs=1e-9)
    assert result["map@k"] == pytest.approx(mllib.meanAveragePrecisionAt(k), abs=1e-9)
    assert result["map"] == pytest.approx(mllib.meanAveragePrecision, abs=1e-9)
