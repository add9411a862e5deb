"""train_model: loss goes down, seeds reproduce, early stopping, planted preferences, DDP + Join."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deep_planted import NUM_ITEMS, NUM_USERS, fresh_model, planted_batches, planted_pairs
from recspark.deep.models import build_model
from recspark.deep.ranking import full_catalog_validator
from recspark.deep.training import (
    TrainSettings,
    load_checkpoint,
    previous_night_state,
    save_checkpoint,
    select_device,
    train_model,
    warm_start,
)

pytestmark = pytest.mark.unit

FAST = dict(learning_rate=0.02, device="cpu", cpu_threads=1)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["neumf", "two_tower"])
def test_loss_decreases_and_planted_items_rank_first(name):
    train, val = planted_pairs()
    validate = full_catalog_validator(val, train, NUM_ITEMS, k=3)
    records = []
    result = train_model(
        fresh_model(name),
        planted_batches(train),
        TrainSettings(epochs=12, patience=12, k=3, **FAST),
        validate=validate,
        on_epoch=records.append,
    )
    assert records[-1]["loss"] < 0.7 * records[0]["loss"]
    # The 3 held-out group items are the top 3 of (almost) every user.
    assert result.best_metric >= 0.9
    assert result.best_metric == max(r["ndcg@3"] for r in records)
    assert validate(result.model)["ndcg@3"] == pytest.approx(result.best_metric)
    assert not result.model.training
    assert next(result.model.parameters()).device.type == "cpu"
    assert set(records[0]) >= {
        "epoch", "loss", "samples", "samples_per_s", "loader_s", "step_s",
        "loader_samples_per_s", "step_samples_per_s", "validate_s", "ndcg@3", "recall@3",
    }
    assert records[0]["samples"] == len(train) * 4


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    train, _ = planted_pairs()

    def weights(seed):
        settings = TrainSettings(epochs=2, seed=seed, **FAST)
        model = train_model(fresh_model("neumf", seed), planted_batches(train), settings).model
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


def test_early_stopping_keeps_the_best_epoch_and_checkpoints_it(tmp_path):
    train, _ = planted_pairs()
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])  # best at epoch 1, then 2 epochs without gain
    snapshots = []

    def validate(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"ndcg@10": next(scores)}

    result = train_model(
        fresh_model("two_tower"),
        planted_batches(train),
        TrainSettings(epochs=5, patience=2, **FAST),
        validate=validate,
        checkpoint_dir=tmp_path,
    )
    assert [r["epoch"] for r in result.history] == [0, 1, 2, 3]
    assert (result.best_epoch, result.best_metric) == (1, 0.7)
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(value, snapshots[1][key])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_000.pt", "epoch_001.pt"]
    restored = load_checkpoint(tmp_path / "epoch_001.pt")
    users, items = torch.arange(5), torch.arange(5)
    torch.testing.assert_close(restored(users, items), result.model(users, items))


def test_without_validation_every_epoch_runs_and_the_last_is_kept():
    train, _ = planted_pairs()
    settings = TrainSettings(epochs=2, **FAST)
    result = train_model(fresh_model("neumf"), planted_batches(train), settings)
    assert (len(result.history), result.best_epoch) == (2, 1)
    assert math.isnan(result.best_metric)


def test_no_epoch_starts_that_would_overrun_the_time_budget(monkeypatch):
    clock = iter(range(0, 10_000, 10))  # every perf_counter call advances 10 s
    monkeypatch.setattr("recspark.deep.training.time.perf_counter", lambda: float(next(clock)))
    train, _ = planted_pairs()
    result = train_model(fresh_model("neumf"), planted_batches(train), TrainSettings(epochs=10, time_budget_s=100.0, **FAST))
    spent_per_epoch = 30.0  # start, end of training and end of the epoch: three ticks of 10 s
    assert len(result.history) < 100.0 / spent_per_epoch + 1
    assert [r["budget_stop"] for r in result.history] == [False] * (len(result.history) - 1) + [True]


def test_warm_start_copies_what_fits_and_new_rows_keep_their_initialisation():
    old = fresh_model("neumf", seed=1)
    grown = build_model("neumf", NUM_USERS + 3, NUM_ITEMS, embedding_dim=8)
    before = {k: v.clone() for k, v in grown.state_dict().items()}
    copied = warm_start(grown, old.state_dict())
    assert copied == list(grown.state_dict())
    for name, tensor in grown.state_dict().items():
        previous = old.state_dict()[name]
        if previous.shape == tensor.shape:
            torch.testing.assert_close(tensor, previous)
        else:  # a user table grown by 3 rows: old users keep their vectors, new ones their fresh start
            torch.testing.assert_close(tensor[:NUM_USERS], previous)
            torch.testing.assert_close(tensor[NUM_USERS:], before[name][NUM_USERS:])
    wider = build_model("neumf", NUM_USERS, NUM_ITEMS, embedding_dim=16)
    assert not [n for n in warm_start(wider, old.state_dict()) if "embedding" in n]


def test_only_an_earlier_nights_checkpoint_of_the_same_model_warm_starts(tmp_path):
    path = tmp_path / "neumf.pt"
    assert previous_night_state(path, "neumf", "2024-06-02") is None
    save_checkpoint(fresh_model("neumf"), path, run_date="2024-06-01")
    assert previous_night_state(path, "neumf", "2024-06-02") is not None
    assert previous_night_state(path, "neumf", "2024-06-01") is None  # a rerun of that night starts fresh
    assert previous_night_state(path, "two_tower", "2024-06-02") is None


def test_bad_batches_and_validators_raise_clear_errors():
    train, _ = planted_pairs()
    settings = TrainSettings(epochs=1, **FAST)

    def no_labels(epoch):
        yield {"user_idx": np.array([0]), "item_idx": np.array([1])}

    with pytest.raises(ValueError, match=r"training batch lacks \['label'\]"):
        train_model(fresh_model("neumf"), no_labels, settings)
    with pytest.raises(ValueError, match=r"make_train_batches\(0\) yielded no training samples"):
        train_model(fresh_model("neumf"), lambda epoch: iter(()), settings)
    with pytest.raises(ValueError, match=r"validate\(\) must return 'ndcg@10'"):
        train_model(
            fresh_model("neumf"), planted_batches(train), settings, validate=lambda m: {"auc": 1.0}
        )

    def bad_item(epoch):
        yield {"user_idx": np.array([0]), "item_idx": np.array([NUM_ITEMS]), "label": np.ones(1)}

    with pytest.raises(ValueError, match=r"item_idx value 40 out of range \[0, 40\)"):
        train_model(fresh_model("neumf"), bad_item, settings)


def test_settings_and_device_selection_are_checked():
    with pytest.raises(ValueError, match="epochs: must be >= 1, got 0"):
        TrainSettings(epochs=0)
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert select_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available"):
            select_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        select_device("tpu")


def test_in_batch_softmax_trains_the_two_tower_on_positives_only():
    train, val = planted_pairs()
    validate = full_catalog_validator(val, train, NUM_ITEMS, k=3)
    settings = TrainSettings(epochs=8, patience=8, k=3, loss="in_batch_softmax", **FAST)
    result = train_model(fresh_model("two_tower"), planted_batches(train), settings, validate)
    assert result.history[0]["samples"] == len(train)  # rows labelled 0 are not used
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.best_metric >= 0.9
    with pytest.raises(ValueError, match="'in_batch_softmax' needs a model whose forward takes"):
        train_model(fresh_model("neumf"), planted_batches(train), settings)
    with pytest.raises(ValueError, match="loss: must be one of"):
        TrainSettings(loss="bpr")
