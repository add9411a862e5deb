"""Distributed training of a deep recommender with Spark's ``TorchDistributor``.

``train_distributed`` launches ``num_processes`` training processes (on the driver with
``local_mode``, else as a barrier stage on the executors). Each process joins a
``torch.distributed`` group (``nccl`` on GPU, ``gloo`` on CPU), reads its own Petastorm shard of
the training examples each epoch and runs :func:`recspark.deep.training.train_model`, which wraps
the model in DistributedDataParallel and uses ``Join`` for uneven shards. Rank 0 validates on
the full catalogue and returns the best weights and the epoch history; the driver rebuilds the
model from them.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recspark.deep.models import build_model, rebuild_model
from recspark.deep.ranking import full_catalog_validator
from recspark.deep.training import TrainResult, TrainSettings, set_seeds, train_model, warm_start


@dataclass
class TrainJob:
    """Everything one training process needs (pickled to every rank).

    ``converter``: the Petastorm converter of the training examples (user_idx, item_idx, label).
    ``val_pairs`` / ``seen_pairs``: int64 ``[n, 2]`` (user_idx, item_idx) for the full-catalogue
    validator. ``item_features``: float32 ``[num_items, d]`` or None. ``checkpoint_dir``: where
    rank 0 keeps each improving epoch's weights (None: no checkpoints). ``initial_state``: a
    previous night's state dict to start from (:func:`~recspark.deep.training.warm_start`).
    """

    model_name: str
    model_params: dict[str, Any]
    num_users: int
    num_items: int
    settings: TrainSettings
    converter: Any
    val_pairs: np.ndarray
    seen_pairs: np.ndarray
    item_features: np.ndarray | None = None
    checkpoint_dir: str | None = None
    initial_state: dict[str, Any] | None = None


def use_gpu_for(preference: str) -> bool:
    """Whether to train on GPUs: ``"auto"`` when CUDA is available, ``"true"`` / ``"false"``."""
    preference = str(preference).lower()
    if preference not in ("auto", "true", "false"):
        raise ValueError(f"deep.use_gpu must be 'auto', 'true' or 'false', got {preference!r}")
    return torch.cuda.is_available() if preference == "auto" else preference == "true"


def train_on_rank(job: TrainJob) -> dict[str, Any]:
    """The function every TorchDistributor process runs (top level, so it pickles by reference).

    Returns ``{model_name, init_args, state_dict, history, best_epoch, best_metric}``: the best
    weights on CPU and rank 0's history (with the validation metrics), the same on every rank.
    """
    import torch.distributed as dist

    from recspark.io.petastorm import shard_batches

    backend = "nccl" if torch.cuda.is_available() and job.settings.device != "cpu" else "gloo"
    started_group = "WORLD_SIZE" in os.environ and not dist.is_initialized()
    if started_group:
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    try:
        set_seeds(job.settings.seed)
        features = torch.as_tensor(job.item_features) if job.item_features is not None else None
        model = build_model(job.model_name, job.num_users, job.num_items, item_features=features, **job.model_params)
        if job.initial_state is not None:
            warm_start(model, job.initial_state)
        validate = None
        if rank == 0 and len(job.val_pairs):
            validate = full_catalog_validator(job.val_pairs, job.seen_pairs, job.num_items, k=job.settings.k)

        def make_train_batches(epoch: int):
            return shard_batches(
                job.converter, rank, world, job.settings.batch_size, seed=job.settings.seed + epoch,
                columns=("user_idx", "item_idx", "label"),
            )

        result = train_model(model, make_train_batches, job.settings, validate=validate,
                             checkpoint_dir=job.checkpoint_dir if rank == 0 else None)
        summary = [result.history, result.best_epoch, result.best_metric]
        if dist.is_initialized():
            # Every local-mode rank writes the distributor's output file: make them all rank 0's.
            dist.broadcast_object_list(summary, src=0)
    finally:
        if started_group:
            dist.destroy_process_group()
    return {
        "model_name": job.model_name,
        "init_args": dict(result.model.init_args),
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "history": summary[0],
        "best_epoch": summary[1],
        "best_metric": summary[2],
    }


def result_from_payload(payload: dict[str, Any]) -> TrainResult:
    """The TrainResult (model rebuilt on CPU, eval mode) from :func:`train_on_rank`'s return value."""
    model = rebuild_model(payload["model_name"], payload["init_args"], payload["state_dict"])
    model.eval()
    best_metric = payload["best_metric"]
    return TrainResult(
        model=model, history=payload["history"], best_epoch=payload["best_epoch"],
        best_metric=best_metric if best_metric is not None else math.nan,
    )


def train_distributed(job: TrainJob, num_processes: int, local_mode: bool, use_gpu: bool) -> TrainResult:
    """Run :func:`train_on_rank` under ``TorchDistributor(num_processes, local_mode, use_gpu)``
    and return rank 0's result. ``job.settings.device`` is forced to CPU when ``use_gpu`` is off."""
    from pyspark.ml.torch.distributor import TorchDistributor

    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if not use_gpu and job.settings.device == "auto":
        job = dataclasses.replace(job, settings=dataclasses.replace(job.settings, device="cpu"))
    distributor = TorchDistributor(num_processes=num_processes, local_mode=local_mode, use_gpu=use_gpu)
    return result_from_payload(distributor.run(train_on_rank, job))
