"""Compression of a trained NeuMF on the planted fixture: metric bounds, sizes, distillation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from deep_planted import NUM_ITEMS, NUM_USERS, planted_batches, planted_pairs
from recspark.deep.compression import (
    cast_for_inference,
    compare_variants,
    distill,
    inference_throughput,
    model_size_bytes,
    prune_magnitude,
    quantize_int8,
    weight_sparsity,
)
from recspark.deep.models import build_model
from recspark.deep.ranking import full_catalog_validator
from recspark.deep.training import TrainSettings, set_seeds, train_model

SETTINGS = TrainSettings(
    epochs=10, patience=10, k=3, learning_rate=0.02, device="cpu", cpu_threads=1
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def planted():
    threads = torch.get_num_threads()
    train, val = planted_pairs()
    validate = full_catalog_validator(val, train, NUM_ITEMS, k=3)
    set_seeds(0)
    model = build_model("neumf", NUM_USERS, NUM_ITEMS, embedding_dim=8)
    teacher = train_model(model, planted_batches(train), SETTINGS, validate=validate).model
    yield teacher, train, validate
    torch.set_num_threads(threads)


def test_compressed_models_keep_ndcg_within_bounds_of_the_fp32_teacher(planted):
    teacher, train, validate = planted
    teacher_ndcg = validate(teacher)["ndcg@3"]
    assert teacher_ndcg >= 0.9
    # Stated bounds on this fixture: int8 / fp16 / bf16 / 50 % pruning lose at most 2 % of the
    # teacher's NDCG@3; a student with half the embedding width keeps at least 90 % of it.
    bounds = {
        "int8": (quantize_int8(teacher), 0.98),
        "fp16": (cast_for_inference(teacher, "fp16"), 0.98),
        "bf16": (cast_for_inference(teacher, "bf16"), 0.98),
        "pruned_50": (prune_magnitude(teacher, 0.5), 0.98),
    }
    set_seeds(1)
    student = build_model("neumf", NUM_USERS, NUM_ITEMS, embedding_dim=4, mlp_layers=[8, 4])
    distilled = distill(teacher, student, planted_batches(train), SETTINGS, validate=validate)
    bounds["student"] = (distilled.model, 0.9)
    for name, (model, bound) in bounds.items():
        assert validate(model)["ndcg@3"] >= bound * teacher_ndcg, name


def test_compression_leaves_the_teacher_untouched_and_changes_what_it_says(planted):
    teacher, _, _ = planted
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    quantized = quantize_int8(teacher)
    pruned = prune_magnitude(teacher, 0.5)
    half = cast_for_inference(teacher, "fp16")
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key])
    assert isinstance(teacher.mlp[0], nn.Linear) and not isinstance(quantized.mlp[0], nn.Linear)
    users = torch.tensor([0, 7, 39])
    per_pair = quantized(users.repeat_interleave(NUM_ITEMS), torch.arange(NUM_ITEMS).repeat(3))
    torch.testing.assert_close(quantized.score_all_items(users), per_pair.view(3, NUM_ITEMS))
    assert weight_sparsity(teacher) == 0.0
    assert weight_sparsity(pruned) == pytest.approx(0.5, abs=1e-3)
    assert not any(name.endswith("_mask") for name, _ in pruned.named_buffers())
    assert all(p.dtype == torch.float16 for p in half.parameters())
    assert model_size_bytes(half) < 0.6 * model_size_bytes(teacher)
    assert model_size_bytes(quantized) < 0.7 * model_size_bytes(teacher)


def test_distillation_trains_on_the_teachers_probabilities():
    class Undecided(nn.Module):
        def forward(self, user_idx, item_idx):
            return torch.zeros(user_idx.shape)

    train, _ = planted_pairs()
    set_seeds(2)
    student = build_model("neumf", NUM_USERS, NUM_ITEMS, embedding_dim=4, mlp_layers=[8, 4])
    settings = TrainSettings(epochs=2, device="cpu", cpu_threads=1)
    result = distill(Undecided(), student, planted_batches(train), settings)
    # With every target 0.5, BCE is at least ln 2, reached by a logit of 0 (0/1 labels go lower).
    assert all(r["loss"] >= math.log(2) - 1e-6 for r in result.history)
    assert result.history[-1]["loss"] == pytest.approx(math.log(2), abs=1e-3)


def test_compare_variants_reports_ratios_against_the_reference(planted):
    teacher, _, validate = planted
    users, items = np.repeat(np.arange(NUM_USERS), 5), np.tile(np.arange(5), NUM_USERS)
    rows = compare_variants(
        {"fp32": teacher, "fp16": cast_for_inference(teacher, "fp16")},
        validate, users, items, metric="ndcg@3", batch_size=64, repeats=1,
    )
    assert [row["variant"] for row in rows] == ["fp32", "fp16"]
    assert (rows[0]["size_ratio"], rows[0]["speedup"], rows[0]["relative_metric"]) == (1, 1, 1)
    assert rows[1]["size_ratio"] < 0.6 and rows[1]["samples_per_s"] > 0
    assert inference_throughput(teacher, users, items, batch_size=64, repeats=1)["seconds"] > 0


def test_bad_compression_arguments_raise():
    model = build_model("neumf", 2, 2)
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        cast_for_inference(model, "int4")
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\), got 1.5"):
        prune_magnitude(model, 1.5)
    with pytest.raises(ValueError, match="reference variant 'fp32' missing"):
        compare_variants({"int8": model}, lambda m: {}, np.array([0]), np.array([0]))
