"""Spark side of the deep recommenders: examples, Petastorm shards, TorchDistributor training,
export, batch scoring, re-ranking and the hybrid blend, on tiny hand-made frames."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recspark.deep.distributed import TrainJob, train_distributed, use_gpu_for
from recspark.deep.examples import item_feature_matrix, pairs_array, training_examples
from recspark.deep.export import export_training_data
from recspark.deep.models import NeuMF, build_model
from recspark.deep.ranking import score_pairs
from recspark.deep.scoring import (
    blend,
    deep_rerank,
    model_bytes,
    model_from_bytes,
    normalised_scores,
    score_pairs_frame,
    tune_blend_weights,
    weight_grid,
)
from recspark.deep.training import TrainSettings
from recspark.io.petastorm import delete_converter, make_converter, shard_batches

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def positives(spark):
    """12 users x 3 items each out of 20: user u likes items u % 20, (u + 1) % 20, (u + 2) % 20."""
    rows = [(u, (u + j) % 20) for u in range(12) for j in range(3)]
    return spark.createDataFrame(rows, "user_idx int, item_idx int")


@pytest.fixture(scope="module")
def item_index(spark):
    return spark.createDataFrame([(i,) for i in range(20)], "item_idx int")


def test_training_examples_hold_positives_and_seeded_negatives(positives, item_index):
    examples = training_examples(positives, item_index, negatives_ratio=2, seed=7)
    rows = examples.collect()
    assert examples.dtypes == [("user_idx", "bigint"), ("item_idx", "bigint"), ("label", "float")]
    labels = Counter(r.label for r in rows)
    assert labels == {1.0: 36, 0.0: 72}
    liked = {(r.user_idx, r.item_idx) for r in positives.collect()}
    assert all((r.user_idx, r.item_idx) not in liked for r in rows if r.label == 0.0)
    assert rows == training_examples(positives, item_index, negatives_ratio=2, seed=7).collect()
    assert rows != training_examples(positives, item_index, negatives_ratio=2, seed=8).collect()


def test_training_examples_name_a_missing_column(positives, item_index):
    with pytest.raises(ValueError, match="item_idx"):
        training_examples(positives.select("user_idx"), item_index, negatives_ratio=1, seed=0)


def test_petastorm_shards_return_every_row_once(spark, tmp_path):
    frame = spark.range(1000).select(
        F.col("id").alias("user_idx"), (F.col("id") % 7).alias("item_idx"), (F.col("id") % 2).cast("float").alias("label")
    )
    converter = make_converter(spark, frame, str(tmp_path / "cache"), min_row_groups=4)
    try:
        shards = [list(shard_batches(converter, shard, 2, batch_size=128, seed=1)) for shard in range(2)]
    finally:
        delete_converter(converter)
    assert all(len(batches) > 0 for batches in shards)  # both ranks get data
    assert all(len(b["user_idx"]) <= 128 for batches in shards for b in batches)
    ids = np.concatenate([b["user_idx"].numpy() for batches in shards for b in batches])
    assert sorted(ids.tolist()) == list(range(1000))
    first = shards[0][0]
    assert first["label"].dtype == torch.float32 and first["item_idx"].dtype == torch.int64
    with pytest.raises(ValueError, match="cur_shard"):
        next(shard_batches(converter, 2, 2, batch_size=8, seed=0))


@pytest.mark.parametrize("local_mode", [True, False], ids=["on_driver", "barrier_stage_on_executors"])
def test_torch_distributor_with_two_processes_trains_and_returns_the_model(
    spark, positives, item_index, tmp_path, local_mode
):
    examples = training_examples(positives, item_index, negatives_ratio=3, seed=1)
    converter = make_converter(spark, examples, str(tmp_path / "cache"), min_row_groups=4)
    pairs = pairs_array(positives)
    validation, seen = pairs[2::3], np.concatenate([pairs[0::3], pairs[1::3]])
    job = TrainJob(
        "neumf", {"embedding_dim": 8, "mlp_layers": [16, 8]}, 12, 20,
        TrainSettings(epochs=2, batch_size=32, patience=2, seed=3), converter, validation, seen,
    )
    try:
        result = train_distributed(job, num_processes=2, local_mode=local_mode, use_gpu=False)
    finally:
        delete_converter(converter)
    assert isinstance(result.model, NeuMF) and not result.model.training
    assert [r["epoch"] for r in result.history] == [0, 1]
    assert all(r["samples"] == 144 for r in result.history)  # both shards read: 36 positives + 108 negatives
    assert result.best_metric == max(r["ndcg@10"] for r in result.history)
    assert result.history[1]["loss"] < result.history[0]["loss"]
    assert score_pairs(result.model, np.array([0]), np.array([0])).shape == (1,)


def test_use_gpu_rejects_unknown_values():
    assert use_gpu_for("false") is False
    with pytest.raises(ValueError, match="deep.use_gpu"):
        use_gpu_for("maybe")


def test_export_writes_the_standalone_layout(spark, positives, tmp_path):
    examples = positives.select("user_idx", "item_idx", F.lit(1.0).alias("label"))
    features = np.ones((20, 3), dtype=np.float32)
    root = export_training_data(str(tmp_path / "export"), examples, positives.limit(5), positives, 12, 20, features)
    train = pq.read_table(root / "train").to_pandas()
    assert train.dtypes.to_dict() == {"user_idx": np.int64, "item_idx": np.int64, "label": np.float32}
    assert len(train) == 36 and len(pq.read_table(root / "validation")) == 5 and len(pq.read_table(root / "seen")) == 36
    meta = json.loads((root / "meta.json").read_text())
    assert meta == {"num_users": 12, "num_items": 20, "item_features_file": "item_features.npy"}
    assert np.load(root / meta["item_features_file"]).shape == (20, 3)


def test_item_feature_matrix_fills_missing_items_with_zeros(spark):
    embeddings = spark.createDataFrame([(0, [1.0, 2.0]), (2, [3.0, 4.0])], "item_idx int, embedding array<float>")
    np.testing.assert_array_equal(item_feature_matrix(embeddings, 3), [[1, 2], [0, 0], [3, 4]])
    with pytest.raises(ValueError, match="item_idx 2 out of range"):
        item_feature_matrix(embeddings, 2)


def planted_neumf(item_scores: list[float]) -> NeuMF:
    """A NeuMF whose logit of (any user, item i) is ``item_scores[i]`` (GMF branch only)."""
    model = build_model("neumf", 3, len(item_scores), embedding_dim=1, mlp_layers=[2, 1])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.gmf_user.weight.fill_(1.0)
        model.gmf_item.weight[:, 0] = torch.tensor(item_scores)
        model.predict.weight[0, 0] = 1.0
    return model.eval()


def test_model_round_trips_through_bytes():
    model = planted_neumf([0.5, -1.0, 2.0])
    restored = model_from_bytes(model_bytes(model))
    users, items = np.array([0, 1, 2]), np.array([0, 1, 2])
    np.testing.assert_array_equal(score_pairs(restored, users, items), [0.5, -1.0, 2.0])


def test_deep_rerank_orders_the_union_of_candidates_by_the_model(spark):
    # ALS ranks items 1, 2, 3 for user 0 and popularity adds item 4; the model prefers 3, then 4.
    candidates = spark.createDataFrame(
        [(0, 1, "als", 3.0), (0, 2, "als", 2.0), (0, 3, "als", 1.0), (0, 4, "popularity", 9.0), (0, 3, "popularity", 8.0),
         (1, 2, "als", 1.0), (1, 5, "item_item", 1.0)],
        "user_idx int, item_idx int, source string, score double",
    )
    model = planted_neumf([0.0, 0.1, 0.2, 0.9, 0.5, 0.3])
    ranked = deep_rerank(candidates, ["als", "popularity"], model, n=3)
    expected = spark.createDataFrame(
        [(0, 3, 0.9, 1), (0, 4, 0.5, 2), (0, 2, 0.2, 3), (1, 2, 0.2, 1)], "user_idx int, item_idx int, score double, rank int"
    )
    assert_df_equality(ranked.select("user_idx", "item_idx", F.round("score", 6).alias("score"), "rank"), expected,
                       ignore_row_order=True, ignore_nullable=True)


def test_score_pairs_frame_names_missing_columns_and_bad_indexes(spark):
    model = planted_neumf([0.0, 1.0])
    with pytest.raises(ValueError, match="item_idx"):
        score_pairs_frame(spark.createDataFrame([(0,)], "user_idx int"), model)
    out_of_range = spark.createDataFrame([(0, 5)], "user_idx int, item_idx int")
    with pytest.raises(ValueError, match=r"item_idx value 5 out of range \[0, 2\)"):
        score_pairs_frame(out_of_range, model)


def test_normalised_scores_are_min_max_per_user_and_source(spark):
    candidates = spark.createDataFrame(
        [(0, 1, "a", 4.0), (0, 2, "a", 2.0), (0, 3, "a", 3.0), (0, 1, "b", 7.0), (1, 1, "a", 5.0)],
        "user_idx int, item_idx int, source string, score double",
    )
    expected = spark.createDataFrame(
        [(0, 1, "a", 1.0), (0, 2, "a", 0.0), (0, 3, "a", 0.5), (0, 1, "b", 1.0), (1, 1, "a", 1.0)],
        "user_idx int, item_idx int, source string, norm_score double",
    )
    assert_df_equality(normalised_scores(candidates, ["a", "b"]), expected, ignore_row_order=True, ignore_nullable=True)


def test_weight_grid_excludes_all_zero_and_bad_values():
    assert weight_grid(["a", "b"], [0.0, 1.0]) == [{"a": 0.0, "b": 1.0}, {"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 1.0}]
    with pytest.raises(ValueError, match="non-negative"):
        weight_grid(["a"], [0.0, -1.0])


def test_hybrid_weights_pick_the_source_that_finds_the_validation_items(spark):
    # Source a ranks the validation item 10 first; b does not propose it and pushes 11 up.
    rows = []
    for user in range(20):
        rows += [(user, 10, "a", 3.0), (user, 11, "a", 2.0), (user, 12, "a", 1.0)]
        rows += [(user, 11, "b", 3.0), (user, 12, "b", 2.0), (user, 13, "b", 1.0)]
    candidates = spark.createDataFrame(rows, "user_idx int, item_idx int, source string, score double")
    truth = spark.createDataFrame([(user, 10) for user in range(20)], "user_idx int, item_idx int")
    normalised = normalised_scores(candidates, ["a", "b"])
    tuning = tune_blend_weights(normalised, truth, ["a", "b"], [0.0, 1.0], k=2)
    assert tuning.weights == {"a": 1.0, "b": 0.0}
    assert tuning.validation_ndcg == pytest.approx(1.0)
    # b alone misses item 10; a + b ranks 11 (score 1.5) above 10 (1.0): 1 / log2(3) at rank 2
    assert tuning.grid_ndcg == [({"a": 0.0, "b": 1.0}, 0.0), ({"a": 1.0, "b": 0.0}, pytest.approx(1.0)),
                                ({"a": 1.0, "b": 1.0}, pytest.approx(1 / np.log2(3)))]
    hybrid = blend(normalised, tuning.weights, n=2)
    firsts = {(r.item_idx, r.score) for r in hybrid.where(F.col("rank") == 1).collect()}
    assert firsts == {(10, 1.0)} and hybrid.count() == 40


def test_grid_ndcg_of_many_users_in_one_bucket_equals_each_user_scored_alone(spark):
    # users of different list lengths, relevant counts and ties share the grid's pandas calls
    rng = np.random.default_rng(3)
    rows, truth_rows = [], []
    for user in range(150):
        items = rng.choice(40, size=int(rng.integers(1, 12)), replace=False)
        for item in items:
            for source in ("a", "b"):
                if rng.random() < 0.7:
                    rows.append((user, int(item), source, float(rng.integers(0, 3)) / 2))
        truth_rows += [(user, int(item)) for item in rng.choice(40, size=int(rng.integers(1, 4)), replace=False)]
    normalised = spark.createDataFrame(rows, "user_idx int, item_idx int, source string, norm_score double")
    truth = spark.createDataFrame(truth_rows, "user_idx int, item_idx int")
    grid_values, k = [0.0, 0.5, 1.0], 3
    tuning = tune_blend_weights(normalised, truth, ["a", "b"], grid_values, k)

    def expected_ndcg(weights):
        per_user = []
        for user in sorted({u for u, *_ in rows} & {u for u, _ in truth_rows}):
            scores = {}
            for u, item, source, value in rows:
                if u == user:
                    scores[item] = scores.get(item, 0.0) + weights[source] * value
            top = sorted(scores, key=lambda item: (-scores[item], item))[:k]
            relevant = {i for u, i in truth_rows if u == user}
            dcg = sum(1 / np.log2(rank + 2) for rank, item in enumerate(top) if item in relevant)
            per_user.append(dcg / sum(1 / np.log2(rank + 2) for rank in range(min(len(relevant), k))))
        return float(np.mean(per_user))

    assert [w for w, _ in tuning.grid_ndcg] == weight_grid(["a", "b"], grid_values)
    for weights, ndcg in tuning.grid_ndcg:
        assert ndcg == pytest.approx(expected_ndcg(weights)), weights


def test_blend_is_the_weighted_sum_of_normalised_scores(spark):
    normalised = spark.createDataFrame(
        [(0, 1, "a", 1.0), (0, 2, "a", 0.0), (0, 2, "b", 1.0), (0, 3, "b", 0.5)],
        "user_idx int, item_idx int, source string, norm_score double",
    )
    expected = spark.createDataFrame(
        [(0, 2, 2.0, 1), (0, 3, 1.0, 2), (0, 1, 0.5, 3)], "user_idx int, item_idx int, score double, rank int"
    )
    assert_df_equality(blend(normalised, {"a": 0.5, "b": 2.0}, n=3).select("user_idx", "item_idx", "score", "rank"),
                       expected, ignore_row_order=True, ignore_nullable=True)


def test_hybrid_tuning_fails_clearly_without_validation_candidates(spark):
    normalised = spark.createDataFrame(
        [(0, 1, "a", 1.0)], "user_idx int, item_idx int, source string, norm_score double"
    )
    truth = spark.createDataFrame([(5, 1)], "user_idx int, item_idx int")
    with pytest.raises(ValueError, match="cannot tune the hybrid"):
        tune_blend_weights(normalised, truth, ["a"], [1.0], k=2)


def test_pairs_array_is_sorted_distinct_int64(spark):
    pairs = spark.createDataFrame([(2, 1), (0, 3), (2, 1), (0, 1)], "user_idx int, item_idx int")
    array = pairs_array(pairs)
    assert array.dtype == np.int64
    np.testing.assert_array_equal(array, [[0, 1], [0, 3], [2, 1]])
    assert pd.DataFrame(array).duplicated().sum() == 0
