"""Learned ranker: features on a hand-made frame, a planted rule, no test rows, round trip."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recspark.ranker.features import NO_HISTORY_DAYS, FeatureSet, content_similarity_feature, ranker_features
from recspark.ranker.lambdarank import (
    LearnedRanker,
    RankerModel,
    RankerSettings,
    mean_ndcg,
    training_rows,
    training_users,
    trees_beat_base,
    validation_labels,
)

pytestmark = pytest.mark.unit

UTC = dt.timezone.utc
AS_OF = dt.datetime(2024, 1, 11, tzinfo=UTC)
SMALL = RankerSettings(n_estimators=60, num_leaves=4, min_data_in_leaf=5, early_stopping_rounds=10,
                       learning_rate=0.2, num_threads=1, eval_fraction=0.25)
FEATURES = ["signal", "noise", "decoy"]


def _ts(day: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, tzinfo=UTC)


@pytest.fixture(scope="module")
def hand_made(spark):
    candidates = spark.createDataFrame(
        [(1, 10, "als", 0.9, 1), (1, 11, "als", 0.5, 2), (1, 10, "item_item", 2.0, 1), (1, 12, "item_item", 1.0, 2),
         (2, 11, "als", 0.7, 1), (2, 13, "popularity", 5.0, 1)],
        "user_idx int, item_idx int, source string, score double, rank int",
    )
    history = spark.createDataFrame(
        [(1, 1, _ts(1)), (1, 2, _ts(1)), (2, 1, _ts(6)), (2, 10, _ts(9))],
        "user_idx int, item_idx int, event_ts timestamp",
    )
    similarity = spark.createDataFrame(
        [(1, 10, 0.5, 3), (2, 10, 0.25, 2), (1, 11, 0.1, 1), (10, 11, 0.4, 2)],
        "item_idx int, neighbor_idx int, score double, support long",
    )
    embeddings = spark.createDataFrame(
        [(1, [1.0, 0.0]), (2, [0.0, 1.0]), (10, [1.0, 0.0]), (11, [0.0, 1.0]), (12, [1.0, 1.0])],
        "item_idx int, embedding array<float>",
    )
    user_factors = spark.createDataFrame([(1, [1.0, 2.0]), (2, [0.0, 1.0])], "user_idx int, features array<float>")
    item_factors = spark.createDataFrame([(10, [1.0, 1.0]), (11, [2.0, 0.0])], "item_idx int, features array<float>")
    return candidates, history, similarity, embeddings, user_factors, item_factors


def test_feature_columns_on_a_hand_made_frame(spark, hand_made):
    candidates, history, similarity, embeddings, user_factors, item_factors = hand_made
    feature_set = FeatureSet(("als", "item_item"), n=3, content=True, cooccurrence=True, als=True)
    frame = ranker_features(candidates, history, feature_set, AS_OF, embeddings, similarity, user_factors, item_factors)
    assert frame.columns == ["user_idx", "item_idx"] + feature_set.columns
    assert feature_set.columns == [
        "score_als", "rank_als", "in_als", "score_item_item", "rank_item_item", "in_item_item",
        "n_sources", "item_popularity", "item_recency_days", "user_activity", "content_similarity",
        "cooccurrence_score", "cooccurrence_support", "cooccurrence_links", "als_dot",
    ]
    half = float(np.sqrt(0.5))
    never = NO_HISTORY_DAYS
    # Pair (2, 13) comes only from popularity, which is not a feature source: no row.
    expected = spark.createDataFrame(
        [
            (1, 10, 0.9, 1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 2.0, 2.0, half, 0.75, 5.0, 2.0, 3.0),
            (1, 11, 0.5, 2.0, 1.0, 0.0, 4.0, 0.0, 1.0, 0.0, never, 2.0, half, 0.1, 1.0, 1.0, 2.0),
            (1, 12, 0.0, 4.0, 0.0, 1.0, 2.0, 1.0, 1.0, 0.0, never, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0),
            (2, 11, 0.7, 1.0, 1.0, 0.0, 4.0, 0.0, 1.0, 0.0, never, 2.0, 0.0, 0.5, 3.0, 2.0, 0.0),
        ],
        ", ".join(["user_idx int", "item_idx int"] + [f"{c} double" for c in feature_set.columns]),
    )
    assert_approx_df_equality(frame, expected, 1e-6, ignore_nullable=True, ignore_row_order=True)


def test_content_similarity_is_the_cosine_of_profile_and_item_and_skips_pairs_without_both(spark):
    embeddings = spark.createDataFrame(
        [(1, [1.0, 0.0]), (2, [0.0, 1.0]), (10, [1.0, 0.0]), (11, [0.0, 2.0]), (12, [3.0, 3.0]), (20, [0.0, 0.0])],
        "item_idx int, embedding array<float>")
    # user 1's profile is the mean of items 1 and 2; user 2's is item 10; user 4's history has no
    # embedding and user 3 has no history: neither has a profile
    history = spark.createDataFrame([(1, 1, _ts(1)), (1, 2, _ts(2)), (2, 10, _ts(3)), (4, 50, _ts(3))],
                                    "user_idx int, item_idx int, event_ts timestamp")
    pairs = spark.createDataFrame([(1, 10), (1, 11), (1, 12), (1, 99), (2, 11), (2, 20), (2, 12), (3, 10), (4, 10)],
                                  "user_idx int, item_idx int")
    half = float(np.sqrt(0.5))
    expected = spark.createDataFrame(
        [(1, 10, half), (1, 11, half), (1, 12, 1.0), (2, 11, 0.0), (2, 20, 0.0), (2, 12, half)],
        "user_idx int, item_idx int, content_similarity double")
    assert_approx_df_equality(content_similarity_feature(pairs, history, embeddings), expected, 1e-6,
                              ignore_nullable=True, ignore_row_order=True)


def test_features_need_the_inputs_they_declare(spark, hand_made):
    candidates, history, similarity, *_ = hand_made
    with pytest.raises(ValueError, match="item_similarity"):
        ranker_features(candidates, history, FeatureSet(("als",), n=3, cooccurrence=True), AS_OF)
    with pytest.raises(ValueError, match="item_similarity"):
        ranker_features(candidates, history, FeatureSet(("als",), n=3), AS_OF, item_similarity=similarity)


def _planted(spark, seed: int, users: int = 80, items_per_user: int = 20, positives: int = 3):
    """Candidates where ``signal`` is 1 exactly for the positives; ``decoy`` is higher for the
    negatives (so a ranker that follows it ranks positives last) and ``noise`` is random."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for user in range(users):
        for item in range(items_per_user):
            positive = item < positives
            rows.append((user, item, float(positive), float(rng.normal()), float(rng.uniform(0, 0.6) + (0 if positive else 0.4))))
            if positive:
                labels.append((user, item))
    features = spark.createDataFrame(rows, "user_idx int, item_idx int, signal double, noise double, decoy double")
    return features, spark.createDataFrame(labels, "user_idx int, item_idx int")


def test_ranker_learns_a_planted_rule(spark):
    train_features, train_labels = _planted(spark, seed=1)
    model = LearnedRanker(SMALL).fit(train_features, train_labels, FEATURES)
    assert model.eval_ndcg == pytest.approx(1.0)
    assert next(iter(model.feature_importances())) == "signal"
    fresh_features, fresh_labels = _planted(spark, seed=2, users=30)
    top = model.rank(fresh_features, 3).select("user_idx", "item_idx")
    assert_df_equality(top, fresh_labels, ignore_row_order=True, ignore_nullable=True)
    ranks = {r["rank"] for r in model.rank(fresh_features, 3).collect()}
    assert ranks == {1, 2, 3}


def test_the_driver_gets_whole_users_within_both_caps(spark):
    features, labels = _planted(spark, seed=4, users=40)  # 20 candidates a user
    every = training_rows(features, labels, FEATURES, SMALL)
    assert every["user_idx"].nunique() == 40 and len(every) == 800
    by_rows = training_rows(features, labels, FEATURES, RankerSettings(**{**SMALL.__dict__, "max_training_rows": 250}))
    assert by_rows["user_idx"].nunique() == 12 and len(by_rows) == 240
    assert set(by_rows["user_idx"]) == set(training_rows(features, labels, FEATURES, RankerSettings(
        **{**SMALL.__dict__, "max_training_users": 12}))["user_idx"])  # the same seeded order under either cap
    one = training_rows(features, labels, FEATURES, RankerSettings(**{**SMALL.__dict__, "max_training_rows": 5}))
    assert one["user_idx"].nunique() == 1 and len(one) == 20  # never fewer than one whole user


def test_the_training_users_are_known_before_the_features_and_fitting_on_them_alone_is_the_same(spark):
    features, labels = _planted(spark, seed=4, users=80)  # 20 candidates a user: 40 users fit 800 rows
    capped = RankerSettings(**{**SMALL.__dict__, "max_training_rows": 800})
    pairs = features.select("user_idx", "item_idx").unionByName(features.select("user_idx", "item_idx"))  # repeats
    users = training_users(pairs, labels, capped)
    chosen = {r.user_idx for r in users.collect()}
    assert chosen == set(training_rows(features, labels, FEATURES, capped)["user_idx"]) and len(chosen) == 40
    alone = features.join(users.select("user_idx"), "user_idx", "left_semi")
    assert LearnedRanker(capped).fit(alone, labels, FEATURES).to_string() == LearnedRanker(capped).fit(
        features, labels, FEATURES).to_string()


def test_ranker_never_sees_test_rows(spark):
    """Validation positives carry ``signal``, test pairs carry ``leak``; labels cut by
    ``validation_labels`` must make ``leak`` worthless, and labels with test rows are refused."""
    features, validation_pairs = _planted(spark, seed=3)
    test_pairs = features.where((F.col("item_idx") >= 3) & (F.col("item_idx") < 6)).select("user_idx", "item_idx")
    split = (
        features.select("user_idx", "item_idx")
        .join(validation_pairs.withColumn("split", F.lit("validation")), ["user_idx", "item_idx"], "left")
        .join(test_pairs.withColumn("test", F.lit("test")), ["user_idx", "item_idx"], "left")
        .select("user_idx", "item_idx", F.coalesce("split", "test", F.lit("train")).alias("split"))
    )
    labels = validation_labels(split)
    assert labels.join(test_pairs, ["user_idx", "item_idx"]).count() == 0
    assert labels.count() == validation_pairs.count()
    leaky = features.join(test_pairs.withColumn("leak", F.lit(1.0)), ["user_idx", "item_idx"], "left").fillna({"leak": 0.0})
    model = LearnedRanker(SMALL).fit(leaky, labels, FEATURES + ["leak"])
    assert model.feature_importances()["leak"] == 0.0
    with pytest.raises(ValueError, match="never see test"):
        LearnedRanker(SMALL).fit(leaky, split.where(F.col("split") != "train"), FEATURES + ["leak"])
    history = split.join(features.select("user_idx", "item_idx"), ["user_idx", "item_idx"]).withColumn(
        "event_ts", F.lit(AS_OF)
    )
    candidates = features.select("user_idx", "item_idx", F.lit("als").alias("source"), F.col("noise").alias("score"),
                                 F.lit(1).alias("rank"))
    with pytest.raises(ValueError, match="test rows must never reach the ranker"):
        ranker_features(candidates, history, FeatureSet(("als",), n=3), AS_OF)


def test_model_round_trip(spark):
    features, labels = _planted(spark, seed=4, users=40)
    model = LearnedRanker(SMALL).fit(features, labels, FEATURES)
    restored = RankerModel.from_string(model.to_string())
    assert restored.feature_names == FEATURES
    assert restored.feature_importances() == model.feature_importances()
    assert_df_equality(restored.rank(features, 5), model.rank(features, 5), ignore_row_order=True)


def _ranked_by_a_source(spark, seed: int, users: int = 60, items_per_user: int = 12):
    """``rank_good`` ranks each user's 3 positives first (in a random order), ``rank_bad`` ranks
    them last; ``noise`` is random. The good source alone scores NDCG 1.0."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for user in range(users):
        good = rng.permutation(items_per_user) + 1
        for item in range(items_per_user):
            positive = good[item] <= 3
            rows.append((user, item, float(good[item]), float(items_per_user + 1 - good[item]), float(rng.normal())))
            if positive:
                labels.append((user, item))
    features = spark.createDataFrame(rows, "user_idx int, item_idx int, rank_good double, rank_bad double, noise double")
    return features, spark.createDataFrame(labels, "user_idx int, item_idx int")


def test_mean_ndcg_on_hand_computed_values():
    users = np.array([1, 1, 1, 2, 2, 3])
    items = np.array([10, 11, 12, 10, 11, 10])
    scores = np.array([0.9, 0.5, 0.5, 0.1, 0.2, 1.0])
    labels = np.array([0, 1, 0, 1, 0, 0])
    # user 1: positive 11 ties with 12 at 0.5 and wins (smaller item) -> position 2: 1/log2(3);
    # user 2: positive 10 is second: 1/log2(3); user 3 has no positive and is left out.
    assert mean_ndcg(users, items, scores, labels, k=10) == pytest.approx(1 / np.log2(3))
    assert mean_ndcg(users, items, scores, labels, k=1) == 0.0


def test_trees_must_beat_the_base_by_the_standard_errors_asked():
    base = np.array([0.5, 0.5, 0.5, 0.5])
    # gains 0.1, 0.3, -0.1, 0.1: mean 0.1, sample sd 0.1633, standard error 0.0816
    noisy = base + np.array([0.1, 0.3, -0.1, 0.1])
    assert trees_beat_base(noisy, base, 1.0) and not trees_beat_base(noisy, base, 2.0)
    assert trees_beat_base(base + 0.1, base, 2.0)  # the same gain for everyone: no spread
    assert not trees_beat_base(base, base, 0.0) and not trees_beat_base(base - 0.1, base, 0.0)


def test_auto_base_source_is_served_when_the_trees_cannot_beat_it(spark):
    features, labels = _ranked_by_a_source(spark, seed=5)
    names = ["rank_bad", "rank_good", "noise"]
    model = LearnedRanker(SMALL).fit(features, labels, names)
    assert model.base_feature == "rank_good"
    assert model.base_ndcg == pytest.approx(1.0)
    assert not model.use_trees and model.eval_ndcg == pytest.approx(1.0)
    top = model.rank(features, 3).select("user_idx", "item_idx", "rank")
    expected = features.where(F.col("rank_good") <= 3).select("user_idx", "item_idx", F.col("rank_good").cast("int").alias("rank"))
    assert_df_equality(top, expected, ignore_row_order=True, ignore_nullable=True)
    restored = RankerModel.from_string(model.to_string())
    assert (restored.base_feature, restored.use_trees) == ("rank_good", False)
    assert_df_equality(restored.rank(features, 3), model.rank(features, 3), ignore_row_order=True)


def test_named_base_source_must_be_a_rank_feature(spark):
    features, labels = _ranked_by_a_source(spark, seed=6, users=20)
    with pytest.raises(ValueError, match="rank_ease"):
        LearnedRanker(RankerSettings(base_source="ease", num_threads=1)).fit(features, labels, ["rank_good", "noise"])
    plain = LearnedRanker(RankerSettings(**{**SMALL.__dict__, "base_source": "none"})).fit(features, labels,
                                                                                           ["rank_bad", "noise"])
    assert plain.base_feature is None and plain.use_trees


def test_settings_validate_themselves():
    with pytest.raises(ValueError, match="base_source"):
        RankerSettings(sources=["als", "ease"], base_source="popularity")
    with pytest.raises(ValueError, match="min_gain_standard_errors"):
        RankerSettings(min_gain_standard_errors=-1.0)
    with pytest.raises(ValueError, match="num_leaves"):
        RankerSettings(num_leaves=1)
    with pytest.raises(ValueError, match="eval_fraction"):
        RankerSettings(eval_fraction=1.0)
