"""NeuMF / two-tower models, full-catalogue validation metrics and batched pair scoring."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from recspark.deep.models import NeuMF, TwoTower, build_model, rebuild_model
from recspark.deep.ranking import full_catalog_validator, score_pairs
from recspark.deep.training import set_seeds

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def all_models() -> list[nn.Module]:
    set_seeds(0)
    features = torch.randn(7, 5)
    return [
        build_model("neumf", 4, 7, embedding_dim=8, mlp_layers=[16, 8]),
        build_model("two_tower", 4, 7, embedding_dim=8, hidden_dim=16),
        build_model("two_tower", 4, 7, item_features=features, embedding_dim=8, hidden_dim=16),
    ]


@pytest.mark.parametrize("model", all_models(), ids=["neumf", "two_tower", "two_tower_features"])
def test_forward_gives_one_logit_per_pair_and_matches_score_all_items(model):
    users = torch.tensor([0, 0, 3, 2])
    items = torch.tensor([6, 1, 0, 6])
    logits = model(users, items)
    assert logits.shape == (4,) and logits.dtype == torch.float32
    every_item = model.score_all_items(torch.tensor([0, 3, 2]))
    assert every_item.shape == (3, 7)
    expected = torch.stack([every_item[0, 6], every_item[0, 1], every_item[1, 0], every_item[2, 6]])
    torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize("model", all_models(), ids=["neumf", "two_tower", "two_tower_features"])
def test_rebuild_from_init_args_and_state_dict_scores_the_same(model):
    rebuilt = rebuild_model(model.name, model.init_args, model.state_dict())
    users, items = torch.tensor([0, 1, 2, 3]), torch.tensor([6, 5, 4, 3])
    torch.testing.assert_close(rebuilt(users, items), model(users, items))
    assert "item_features" not in model.init_args


def test_two_tower_item_features_are_a_frozen_buffer():
    features = torch.randn(7, 5)
    model = TwoTower(4, 7, item_features=features)
    assert all(p.shape != features.shape for p in model.parameters())
    torch.testing.assert_close(model.state_dict()["item_features"], features)
    with pytest.raises(ValueError, match=r"item_features must have shape \[num_items=7, d\]"):
        TwoTower(4, 7, item_features=torch.randn(6, 5))


def test_neumf_has_gmf_and_mlp_branches_of_the_configured_sizes():
    model = NeuMF(5, 9, embedding_dim=12, mlp_layers=(20, 10, 6))
    assert model.gmf_item.weight.shape == (9, 12)
    assert model.mlp_item.weight.shape == (9, 10)
    assert model.predict.in_features == 12 + 6


def test_out_of_range_indexes_raise_naming_the_index():
    model = NeuMF(4, 7)
    with pytest.raises(ValueError, match=r"item_idx value 7 out of range \[0, 7\)"):
        model(torch.tensor([0]), torch.tensor([7]))
    with pytest.raises(ValueError, match=r"user_idx value -1 out of range \[0, 4\)"):
        TwoTower(4, 7)(torch.tensor([-1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="must be an integer tensor"):
        model(torch.tensor([0.0]), torch.tensor([1]))


def test_build_model_rejects_unknown_names_and_parameters():
    with pytest.raises(ValueError, match=r"unknown model 'gru4rec'; expected one of"):
        build_model("gru4rec", 3, 3)
    with pytest.raises(ValueError, match=r"parameter\(s\) \['hidden_dim'\] for model 'neumf'"):
        build_model("neumf", 3, 3, hidden_dim=8)


class FixedScores(nn.Module):
    """forward(u, i) = scores[u, i]: a model with known rankings."""

    def __init__(self, scores):
        super().__init__()
        self.register_buffer("scores", torch.tensor(scores, dtype=torch.float32))

    def forward(self, user_idx, item_idx):
        return self.scores[user_idx, item_idx]


def test_full_catalog_validator_on_known_rankings():
    model = FixedScores(
        [
            [0.9, 0.8, 0.7, 0.1, 0.2],  # seen item 0 masked -> ranking 1, 2, 4, 3
            [0.1, 0.2, 0.3, 0.4, 0.5],  # ranking 4, 3, 2, 1, 0
            [0.5, 0.5, 0.5, 0.5, 0.5],  # has no validation pairs: not averaged
        ]
    )
    val = np.array([[0, 2], [0, 3], [1, 4]])
    seen = np.array([[0, 0], [2, 1]])
    metrics = full_catalog_validator(val, seen, num_items=5, k=2, batch_users=1)(model)
    user0_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert metrics["ndcg@2"] == pytest.approx((user0_ndcg + 1.0) / 2)
    assert metrics["recall@2"] == pytest.approx((0.5 + 1.0) / 2)


def test_full_catalog_validator_restores_training_mode_and_checks_input():
    model = FixedScores([[0.0, 1.0]])
    model.train()
    full_catalog_validator(np.array([[0, 1]]), np.empty((0, 2), dtype=int), num_items=2)(model)
    assert model.training
    with pytest.raises(ValueError, match=r"val_pairs item_idx value 2 out of range \[0, 2\)"):
        full_catalog_validator(np.array([[0, 2]]), np.empty((0, 2), dtype=int), num_items=2)
    with pytest.raises(ValueError, match=r"seen_pairs must have shape \[n, 2\]"):
        full_catalog_validator(np.array([[0, 1]]), np.array([0, 1]), num_items=2)


def test_score_pairs_matches_forward_in_small_batches():
    model = all_models()[0]
    users = np.array([0, 1, 2, 3, 3], dtype=np.int32)
    items = np.array([6, 5, 4, 3, 0], dtype=np.int64)
    scores = score_pairs(model, users, items, batch_size=2)
    assert scores.dtype == np.float32
    with torch.no_grad():
        expected = model.eval()(torch.as_tensor(users).long(), torch.as_tensor(items)).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="1-D of equal length"):
        score_pairs(model, users, items[:3])
    with pytest.raises(ValueError, match=r"item_idx value 9 out of range \[0, 7\)"):
        score_pairs(model, users[:1], np.array([9]))


def test_two_tower_in_batch_logits_score_every_user_against_every_batch_item():
    model = all_models()[2]
    users, items = torch.tensor([0, 3, 1]), torch.tensor([6, 2, 2])
    grid = model(users, items, in_batch=True)
    assert grid.shape == (3, 3)
    expected = model(users.repeat_interleave(3), items.repeat(3)).view(3, 3)
    torch.testing.assert_close(grid, expected)
