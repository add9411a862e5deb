"""Pure helpers of the CF stages: tuning split, protocol labels, stage efficiency, evaluation suite."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from recspark.evaluation.efficiency import stage_efficiency
from recspark.evaluation.sampling import sample_users
from recspark.evaluation.suite import evaluate_recommendations, evaluate_recommendations_by
from recspark.featurize.splits import (
    SplitSettings,
    carve_stratification,
    describe_split,
    split_carve,
    split_protocol,
    tuning_frames,
)
from recspark.recommenders.als import als_params_from_metadata, als_params_metadata
from recspark.schemas import STAGE_RUNS

pytestmark = pytest.mark.unit

SPLIT_SCHEMA = "user_id string, item_id string, user_idx int, item_idx int, split string"


def test_tuning_uses_the_validation_split_when_there_is_one(spark):
    rows = [("u", "a", 0, 0, "train"), ("u", "b", 0, 1, "validation"), ("u", "c", 0, 2, "test")]
    train, validation = tuning_frames(spark.createDataFrame(rows, SPLIT_SCHEMA), 0.5, split_seed=0)
    assert [r.item_id for r in train.collect()] == ["a"]
    assert [r.item_id for r in validation.collect()] == ["b"]


def test_without_validation_a_share_of_each_users_train_pairs_is_carved_out(spark):
    rows = [(f"u{u}", f"i{i}", u, i, "train") for u in range(3) for i in range(10)]
    rows += [("u0", "t", 0, 99, "test")]
    train, validation = tuning_frames(spark.createDataFrame(rows, SPLIT_SCHEMA), 0.2, split_seed=0)
    per_user = {r.user_id: r["count"] for r in validation.groupBy("user_id").count().collect()}
    assert per_user == {"u0": 2, "u1": 2, "u2": 2}
    assert train.count() == 24 and "t" not in {r.item_id for r in train.union(validation).collect()}
    again = tuning_frames(spark.createDataFrame(rows, SPLIT_SCHEMA), 0.2, split_seed=0)[1]
    assert sorted(validation.collect()) == sorted(again.collect())  # seeded


def test_the_carve_is_seeded_by_the_split_seed_and_disjoint_from_test(spark):
    rows = [(f"u{u}", f"i{i}", u, i, "train") for u in range(4) for i in range(10)]
    rows += [(f"u{u}", "t", u, 99, "test") for u in range(4)]
    split = spark.createDataFrame(rows, SPLIT_SCHEMA)
    fit, validation = tuning_frames(split, 0.3, split_seed=42)
    assert {r.user_id: r["count"] for r in validation.groupBy("user_id").count().collect()} == {
        "u0": 3, "u1": 3, "u2": 3, "u3": 3}
    pairs = lambda frame: {(r.user_idx, r.item_idx) for r in frame.collect()}  # noqa: E731
    assert pairs(fit) | pairs(validation) == pairs(split.where("split = 'train'"))
    assert not pairs(fit) & pairs(validation) and 99 not in {i for _, i in pairs(fit) | pairs(validation)}
    assert pairs(tuning_frames(split, 0.3, split_seed=42)[1]) == pairs(validation)
    assert pairs(tuning_frames(split, 0.3, split_seed=7)[1]) != pairs(validation)


def test_under_the_per_item_protocol_the_carve_takes_a_share_of_each_items_train_pairs(spark):
    rows = [(f"u{u}", f"i{i}", u, i, "train") for u in range(10) for i in range(3)]
    fit, validation = tuning_frames(spark.createDataFrame(rows, SPLIT_SCHEMA), 0.2, split_seed=0, stratify_by="item")
    assert {r.item_id: r["count"] for r in validation.groupBy("item_id").count().collect()} == {
        "i0": 2, "i1": 2, "i2": 2}
    assert fit.count() == 24


def test_the_carve_is_stratified_like_the_test_split_and_recorded_with_it():
    assert carve_stratification(SplitSettings(stratify_by="item")) == "item"
    assert carve_stratification(SplitSettings()) == "user"
    assert carve_stratification(SplitSettings(method="leave_last_n", n=1, min_user_interactions=3)) == "user"
    metadata = {"recspark.split.protocol": "random_stratified(by=item,test=0.25,validation=0.0,seed=42)",
                "recspark.split.seed": "42"}
    assert split_carve(metadata) == (42, "user")  # written before the stratification was recorded
    assert split_carve({**metadata, "recspark.split.carve_stratify_by": "item"}) == (42, "item")


def test_als_params_round_trip_through_commit_metadata():
    params = {"rank": 16, "reg_param": 0.1, "alpha": 5.0, "implicit_prefs": True, "max_iter": 15, "seed": 42,
              "nonnegative": False}
    stored = {f"recspark.{key}": value for key, value in als_params_metadata(params).items()}
    assert als_params_from_metadata(stored) == params
    with pytest.raises(ValueError, match=r"lacks the ALS param\(s\) \['reg_param'"):
        als_params_from_metadata({"recspark.als.rank": "8"})


def test_split_protocol_travels_in_commit_metadata():
    assert split_protocol({"recspark.split.protocol": "leave_last_n(n=1,validation=true)", "recspark.split.seed": "7"}) \
        == ("leave_last_n(n=1,validation=true)", 7)
    with pytest.raises(ValueError, match="re-run the featurize stage"):
        split_protocol({})


@pytest.mark.parametrize(
    "split, label",
    [
        (SplitSettings(), "random_stratified(by=user,test=0.25,validation=0.0,seed=42)"),
        (SplitSettings(method="leave_last_n", n=2, min_user_interactions=5), "leave_last_n(n=2,validation=true)"),
        (SplitSettings(method="time", test_start="2024-05-01"), "time(validation_start=None,test_start=2024-05-01)"),
        (SplitSettings(method="time"), "time(validation=0.1,test=0.1)"),
    ],
)
def test_protocol_labels(split, label):
    assert describe_split(split) == label


def test_stage_efficiency_takes_the_latest_row_of_each_step_of_the_date(spark):
    day, other = dt.date(2024, 6, 1), dt.date(2024, 5, 31)
    at = dt.datetime(2024, 6, 1, 3, 0)
    rows = [
        (day, "r1", "train-als", "train-als", 50.0, 900.0, at),
        (day, "r2", "train-als", "train-als", 40.0, 800.0, at + dt.timedelta(hours=1)),  # re-run wins
        (day, "r2", "train-als", "als.search", 30.0, 700.0, at + dt.timedelta(hours=1)),
        (other, "r0", "ingest", "ingest", 9.0, 100.0, at),
    ]
    efficiency = stage_efficiency(spark.createDataFrame(rows, STAGE_RUNS), day)
    assert efficiency == {
        "train-als": {"wall_time_s": 40.0, "peak_rss_mib": 800.0},
        "als.search": {"wall_time_s": 30.0, "peak_rss_mib": 700.0},
    }


def test_evaluation_suite_on_a_hand_computed_example(spark):
    # user 0: list [1, 2, 3], relevant {2}; user 1: list [3, 1, 4], relevant {3}. k = 2.
    recs = spark.createDataFrame(
        [(0, 1, 1), (0, 2, 2), (0, 3, 3), (1, 3, 1), (1, 1, 2), (1, 4, 3)], "user_idx int, item_idx int, rank int"
    )
    truth = spark.createDataFrame([(0, 2), (1, 3)], "user_idx int, item_idx int")
    train = spark.createDataFrame([(0, 1), (1, 1), (0, 3), (2, 2)], "user_idx int, item_idx int")
    vectors = spark.createDataFrame([(1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [1.0, 0.0])], "item_idx int, features array<double>")
    results = evaluate_recommendations(recs, truth, train, k=2, n_catalog_items=10, item_vectors=vectors)
    assert results["precision@k"] == pytest.approx(0.5)
    assert results["ndcg@k"] == pytest.approx((1 / 1.5849625007211563 + 1.0) / 2)
    assert results["catalog_coverage"] == pytest.approx(3 / 10)  # items 1, 2, 3 within rank 2
    # rows within k: items 1, 2, 3, 1; training popularity: 1 -> 2/3, 2 -> 1/3, 3 -> 1/3
    assert results["avg_popularity"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3 + 2 / 3) / 4)
    assert results["diversity"] == pytest.approx(0.5)  # user 0: distance 1; user 1: items 3, 1 identical: 0
    assert results["distributional_coverage"] == pytest.approx(1.5)  # counts 2, 1, 1 of 4 rows


def test_grouped_evaluation_equals_evaluating_each_group_alone(spark):
    # Source a: the lists of the hand-computed example; b: other lists, a user without truth
    # (7) and truth user 1 missing, so coverage and n_users differ per source.
    rows = [(0, 1, 1), (0, 2, 2), (0, 3, 3), (1, 3, 1), (1, 1, 2), (1, 4, 3)]
    recs = spark.createDataFrame(
        [(u, i, r, "a") for u, i, r in rows] + [(0, 2, 1, "b"), (0, 4, 2, "b"), (7, 1, 1, "b"), (7, 2, 2, "b")],
        "user_idx int, item_idx int, rank int, source string",
    )
    truth = spark.createDataFrame([(0, 2), (1, 3), (2, 4)], "user_idx int, item_idx int")
    train = spark.createDataFrame([(0, 1), (1, 1), (0, 3), (2, 2)], "user_idx int, item_idx int")
    vectors = spark.createDataFrame([(1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [1.0, 0.0]), (4, [1.0, 1.0])],
                                    "item_idx int, features array<double>")
    grouped = evaluate_recommendations_by(recs, "source", truth, train, k=2, n_catalog_items=10, item_vectors=vectors)
    assert set(grouped) == {"a", "b"}
    # Source b alone; source a's lists are those of the hand-computed example above.
    alone = evaluate_recommendations(recs.where(F.col("source") == "b"), truth, train, k=2, n_catalog_items=10,
                                     item_vectors=vectors)
    assert grouped["b"] == pytest.approx(alone, nan_ok=True)
    assert grouped["a"]["precision@k"] == pytest.approx(0.5) and grouped["a"]["catalog_coverage"] == pytest.approx(0.3)
    assert grouped["a"]["diversity"] == pytest.approx(0.5) and grouped["a"]["distributional_coverage"] == pytest.approx(1.5)
    assert grouped["b"]["n_users"] == 1.0 and grouped["b"]["user_coverage"] == pytest.approx(1 / 3)
    assert grouped["a"]["ndcg@k"] == pytest.approx((1 / np.log2(3) + 1.0) / 2)  # as in the example above
    # rows within k: 2, 4, 1, 2; item 4 is unseen in training and left out of novelty
    assert grouped["b"]["novelty"] == pytest.approx((np.log2(3) + np.log2(1.5) + np.log2(3)) / 3)


def test_vector_metrics_on_a_user_sample_equal_those_users_alone(spark):
    # 12 users, two sources; with a cap of 5 users, diversity and serendipity are those of the 5
    # sampled users' lists (the same users for both sources); every other metric uses all users.
    rows = [(u, (u + r) % 6, r, s) for u in range(12) for r in (1, 2, 3) for s in ("a", "b") if s == "a" or u % 2]
    recs = spark.createDataFrame(rows, "user_idx int, item_idx int, rank int, source string")
    truth = spark.createDataFrame([(u, (u + 1) % 6) for u in range(12)], "user_idx int, item_idx int")
    train = spark.createDataFrame([(u, (u + 3) % 6) for u in range(12)], "user_idx int, item_idx int")
    vectors = spark.createDataFrame([(i, [float(i % 2), float(i % 3), 1.0]) for i in range(6)],
                                    "item_idx int, features array<double>")
    everyone = evaluate_recommendations_by(recs, "source", truth, train, 3, 6, vectors)
    capped = evaluate_recommendations_by(recs, "source", truth, train, 3, 6, vectors, vector_metrics_max_users=5,
                                         seed=7)
    sampled = sample_users(recs, 5, 7)
    assert sampled.count() == 5
    alone = evaluate_recommendations_by(recs.join(sampled, "user_idx", "left_semi"), "source", truth,
                                        train.join(sampled, "user_idx", "left_semi"), 3, 6, vectors)
    for source in ("a", "b"):
        for name in ("diversity", "serendipity", "serendipity_relevant"):
            assert capped[source][name] == pytest.approx(alone[source][name])
        for name in ("ndcg@k", "catalog_coverage", "novelty", "n_users"):
            assert capped[source][name] == pytest.approx(everyone[source][name])
    assert capped["a"]["diversity"] != pytest.approx(everyone["a"]["diversity"])


def test_ranking_metrics_on_a_user_sample_equal_those_users_alone(spark):
    # 12 test users, two sources; with a cap of 4, the ranking metrics are those of 4 sampled test
    # users (the same for both sources); coverage and novelty still use every list.
    rows = [(u, (u + r) % 6, r, s) for u in range(12) for r in (1, 2, 3) for s in ("a", "b") if s == "a" or u % 2]
    recs = spark.createDataFrame(rows, "user_idx int, item_idx int, rank int, source string")
    truth = spark.createDataFrame([(u, (u * 5 + 1) % 6) for u in range(12)], "user_idx int, item_idx int")
    train = spark.createDataFrame([(u, (u + 3) % 6) for u in range(12)], "user_idx int, item_idx int")
    everyone = evaluate_recommendations_by(recs, "source", truth, train, 3, 6)
    capped = evaluate_recommendations_by(recs, "source", truth, train, 3, 6, ranking_metrics_max_users=4, seed=7)
    sampled = sample_users(truth, 4, 7)
    alone = evaluate_recommendations_by(recs.join(sampled, "user_idx", "left_semi"), "source",
                                        truth.join(sampled, "user_idx", "left_semi"), train, 3, 6)
    for source in ("a", "b"):
        for name in ("ndcg@k", "precision@k", "recall@k", "map@k", "n_users", "user_coverage"):
            assert capped[source][name] == pytest.approx(alone[source][name])
        for name in ("catalog_coverage", "novelty", "avg_popularity"):
            assert capped[source][name] == pytest.approx(everyone[source][name])
    assert capped["a"]["n_users"] == 4 and everyone["a"]["n_users"] == 12
    assert capped["a"]["ndcg@k"] != pytest.approx(everyone["a"]["ndcg@k"])
