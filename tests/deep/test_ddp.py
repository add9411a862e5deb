"""DDP training with real processes: two gloo ranks on uneven shards (integration: it spawns
processes, like TorchDistributor does)."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from deep_planted import NUM_ITEMS, fresh_model, planted_batches, planted_pairs
from recspark.deep.ranking import full_catalog_validator
from recspark.deep.training import TrainSettings, train_model

pytestmark = pytest.mark.integration


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_WORLD_SIZE="2")
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        train, val = planted_pairs()
        shard = train[:220] if rank == 0 else train[220:]  # uneven: 9 vs 3 batches of 100
        result = train_model(
            fresh_model("neumf"),
            planted_batches(shard, batch_size=100),
            TrainSettings(epochs=2, k=3, learning_rate=0.02, device="cpu"),
            validate=full_catalog_validator(val, train, NUM_ITEMS, k=3),
        )
        torch.save(
            {
                "state": result.model.state_dict(),
                "history": result.history,
                "best": (result.best_epoch, result.best_metric),
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_ddp_with_uneven_shards_finishes_with_identical_weights_on_every_rank(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for key, value in rank0["state"].items():
        torch.testing.assert_close(value, rank1["state"][key])
    history = rank0["history"]
    assert len(history) == 2
    assert history[0]["samples"] == len(planted_pairs()[0]) * 4  # summed over both ranks
    assert "ndcg@3" in history[0] and "ndcg@3" not in rank1["history"][0]
    assert rank1["best"] == rank0["best"]
    assert rank0["best"][1] == max(record["ndcg@3"] for record in history)
