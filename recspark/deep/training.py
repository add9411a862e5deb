"""Training loop for the deep recommenders: BCE with sampled negatives, Adam, early stopping.

Plain PyTorch; runs the same on one process and under ``torch.distributed`` (TorchDistributor,
torchrun): when a process group is initialised the model is wrapped in DistributedDataParallel,
each rank iterates its own shard of batches, ``Join`` lets ranks with fewer batches finish
without hanging the others, and rank 0 validates and broadcasts whether the epoch improved and
whether to stop, so every rank keeps the same best weights. Epochs are numbered from 0.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.join import Join
from torch.nn.parallel import DistributedDataParallel

from recspark.deep.models import rebuild_model
from recspark.deep.settings import TrainSettings

BATCH_KEYS = ("user_idx", "item_idx", "label")

Batch = Mapping[str, "np.ndarray | torch.Tensor"]


@dataclass
class TrainResult:
    """``model``: unwrapped, best weights, on CPU, eval mode. ``history``: one record per epoch
    (complete on rank 0; other ranks lack validation metrics). ``best_epoch``: epoch of the best
    validation metric (the last epoch without validation). ``best_metric``: that ``ndcg@k``
    (NaN without validation)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = math.nan


def set_seeds(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(preference: str = "auto") -> torch.device:
    """The torch device for ``preference``.

    ``"auto"``: CUDA when available (under torch.distributed or torchrun the GPU numbered by
    ``LOCAL_RANK``), else CPU. ``"cuda"``/``"cuda:N"`` fail with ValueError when CUDA is absent.
    """
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if preference == "cuda" or preference.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} requested but CUDA is not available")
        return torch.device(preference)
    raise ValueError(f"unknown device {preference!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def _set_cpu_threads(settings: TrainSettings, distributed: bool) -> None:
    threads = settings.cpu_threads
    if threads is None and distributed:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        threads = max(1, (os.cpu_count() or 1) // local_world)
    if threads is not None:
        torch.set_num_threads(threads)


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """bf16 on a CUDA device that supports it, fp16 on other CUDA devices, None (fp32) on CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def batch_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``(user_idx long, item_idx long, label float)`` on ``device`` from one training batch."""
    missing = [key for key in BATCH_KEYS if key not in batch]
    if missing:
        raise ValueError(f"training batch lacks {missing}; it has {sorted(batch)}")
    users = torch.as_tensor(batch["user_idx"]).to(device, torch.long)
    items = torch.as_tensor(batch["item_idx"]).to(device, torch.long)
    labels = torch.as_tensor(batch["label"]).to(device, torch.float32)
    if not users.shape == items.shape == labels.shape or users.dim() != 1:
        raise ValueError(
            "user_idx, item_idx and label must be 1-D of equal length, got shapes "
            f"{tuple(users.shape)}, {tuple(items.shape)}, {tuple(labels.shape)}"
        )
    return users, items, labels


def _batch_loss(
    module: nn.Module, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor, loss: str
) -> tuple[torch.Tensor, int]:
    """(mean loss of the batch, number of training examples in it) for ``TrainSettings.loss``."""
    if loss == "bce":
        logits = module(users, items).float()
        return nn.functional.binary_cross_entropy_with_logits(logits, labels), labels.numel()
    positive = labels > 0.5
    users, items = users[positive], items[positive]
    logits = module(users, items, in_batch=True).float()
    others = ~torch.eye(len(items), dtype=torch.bool, device=items.device)
    logits = logits.masked_fill((items[:, None] == items[None, :]) & others, -torch.inf)
    targets = torch.arange(len(items), device=items.device)
    return nn.functional.cross_entropy(logits, targets), len(items)


def _train_epoch(
    module: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    loss_name: str,
) -> dict[str, float]:
    """One pass over ``batches``: summed loss, samples, loader and step seconds (this rank).
    A batch without training examples is skipped."""
    samples, loss_sum, loader_s, step_s = 0, 0.0, 0.0, 0.0
    iterator = iter(batches)
    while True:
        start = time.perf_counter()
        batch = next(iterator, None)
        if batch is None:
            loader_s += time.perf_counter() - start
            break
        users, items, labels = batch_tensors(batch, device)
        loaded = time.perf_counter()
        loader_s += loaded - start
        if labels.numel() == 0 or (loss_name != "bce" and not bool((labels > 0.5).any())):
            continue
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss, count = _batch_loss(module, users, items, labels, loss_name)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += float(loss.detach()) * count
        samples += count
        step_s += time.perf_counter() - loaded
    return {"samples": samples, "loss_sum": loss_sum, "loader_s": loader_s, "step_s": step_s}


def checkpoint_path(model_dir: str, model_name: str) -> Path:
    """Where the checkpoint of ``model_name`` lives under ``model_dir`` (a path or file:// URI):
    train-deep saves it there and rerank loads it."""
    return Path(model_dir.removeprefix("file://")) / f"{model_name}.pt"


def save_checkpoint(model: nn.Module, path: Path, **extra: Any) -> None:
    """Save ``{model_name, init_args, state_dict (on CPU), **extra}`` to ``path``; the model
    name and init_args are those of ``models.py`` models (class name and {} for other modules)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {
        "model_name": getattr(model, "name", type(model).__name__),
        "init_args": getattr(model, "init_args", {}),
        "state_dict": state,
        **extra,
    }
    torch.save(checkpoint, path)


def warm_start(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy a previous night's weights ``state`` into ``model`` where they fit and return the
    names copied. A tensor of the same shape is copied; one with the same trailing shape and
    fewer rows (the embedding table of a user base or catalogue that grew since: ids are stable,
    so row i is still the same user or item) gets the old rows, its new rows keep their fresh
    initialisation; anything else keeps its fresh initialisation."""
    copied = []
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            old = state.get(name)
            if old is None or old.dim() != tensor.dim() or old.shape[1:] != tensor.shape[1:]:
                continue
            if old.dim() == 0 or old.shape[0] == tensor.shape[0]:
                tensor.copy_(old)
            elif old.shape[0] < tensor.shape[0]:
                tensor[: old.shape[0]].copy_(old)
            else:
                continue
            copied.append(name)
    return copied


def train_model(
    model: nn.Module,
    make_train_batches: Callable[[int], Iterable[Batch]],
    settings: TrainSettings,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` with BCE-with-logits on labelled pairs and Adam; keep the best epoch.

    ``make_train_batches(epoch)`` yields batches (mappings with ``user_idx``, ``item_idx`` and a
    float ``label`` in [0, 1], NumPy arrays or tensors) for this rank. ``validate(model)`` returns
    metrics including ``ndcg@{settings.k}``; the best epoch by that metric is kept and training
    stops after ``settings.patience`` epochs without improvement, or before an epoch that would
    overrun ``settings.time_budget_s`` (``budget_stop`` in the record). Without ``validate`` every
    epoch runs (within the budget) and the last is kept. With ``checkpoint_dir`` each improving epoch's weights go to
    ``epoch_NNN.pt`` there (rank 0). ``on_epoch(record)`` (rank 0) gets ``epoch``, ``loss`` (mean
    per sample over all ranks), ``samples`` (all ranks), ``samples_per_s`` (all ranks, training
    wall time), ``loader_s`` and ``step_s`` (rank 0's seconds waiting for batches and in
    forward/backward/update), ``loader_samples_per_s`` and ``step_samples_per_s`` (rank 0's
    samples over those), ``validate_s`` and the validation metrics. Seeds are set from
    ``settings.seed`` before the first epoch (build the model after ``set_seeds`` for
    reproducible initial weights).
    """
    if settings.loss == "in_batch_softmax" and (
        "in_batch" not in inspect.signature(model.forward).parameters
    ):
        raise ValueError(
            f"loss 'in_batch_softmax' needs a model whose forward takes in_batch (two_tower); "
            f"{type(model).__name__} does not"
        )
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    metric_name = f"ndcg@{settings.k}"
    set_seeds(settings.seed)
    device = select_device(settings.device)
    if device.type == "cpu":
        _set_cpu_threads(settings, distributed)
    model.to(device)
    module: nn.Module = model
    if distributed:
        module = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    amp_dtype = autocast_dtype(device, settings.mixed_precision)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    checkpoint_path = Path(checkpoint_dir) if checkpoint_dir is not None else None

    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, best_metric, epochs_since_best = -1, -math.inf, 0
    training_started = time.perf_counter()
    for epoch in range(settings.epochs):
        module.train()
        start = time.perf_counter()
        with Join([module]) if distributed else contextlib.nullcontext():
            stats = _train_epoch(
                module, make_train_batches(epoch), optimizer, scaler, device, amp_dtype,
                settings.loss,
            )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s = time.perf_counter() - start
        totals = torch.tensor([stats["samples"], stats["loss_sum"]], dtype=torch.float64)
        if distributed:
            totals = totals.to(device)
            dist.all_reduce(totals)
        total_samples, total_loss = int(totals[0]), float(totals[1])
        if total_samples == 0:
            raise ValueError(f"make_train_batches({epoch}) yielded no training samples")
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": total_loss / total_samples,
            "samples": total_samples,
            "samples_per_s": total_samples / train_s,
            "loader_s": stats["loader_s"],
            "step_s": stats["step_s"],
            "loader_samples_per_s": stats["samples"] / max(stats["loader_s"], 1e-9),
            "step_samples_per_s": stats["samples"] / max(stats["step_s"], 1e-9),
        }
        improved, stop = True, False
        if rank == 0 and validate is not None:
            validate_start = time.perf_counter()
            metrics = validate(model)
            record["validate_s"] = time.perf_counter() - validate_start
            if metric_name not in metrics:
                raise ValueError(f"validate() must return {metric_name!r}; got {sorted(metrics)}")
            record.update(metrics)
            improved = best_state is None or metrics[metric_name] > best_metric
            epochs_since_best = 0 if improved else epochs_since_best + 1
            stop = epochs_since_best >= settings.patience
        if rank == 0 and settings.time_budget_s is not None:
            spent = time.perf_counter() - training_started
            record["budget_stop"] = spent + spent / (epoch + 1) > settings.time_budget_s
            stop = stop or record["budget_stop"]
        metric = record.get(metric_name, math.nan)
        if distributed:
            decision = torch.tensor([improved, stop, metric], dtype=torch.float64, device=device)
            dist.broadcast(decision, src=0)
            improved, stop, metric = bool(decision[0]), bool(decision[1]), float(decision[2])
        if improved:
            best_epoch, best_metric = epoch, metric
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            if rank == 0 and checkpoint_path is not None:
                path = checkpoint_path / f"epoch_{epoch:03d}.pt"
                save_checkpoint(model, path, epoch=epoch, metric=best_metric)
        history.append(record)
        if rank == 0 and on_epoch is not None:
            on_epoch(record)
        if stop:
            break
    model.cpu()
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_metric=best_metric if validate is not None else math.nan,
    )


def previous_night_state(path: str | os.PathLike, model_name: str, run_date: str) -> dict[str, torch.Tensor] | None:
    """The weights of the checkpoint at ``path`` when it holds ``model_name`` trained on a night
    before ``run_date`` (ISO date); None otherwise (none yet, another model, or tonight's own: a
    rerun of a night starts from the same weights as its first attempt)."""
    if not Path(path).exists():
        return None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    trained_on = checkpoint.get("run_date")
    if checkpoint.get("model_name") != model_name or trained_on is None or trained_on >= run_date:
        return None
    return checkpoint["state_dict"]


def load_checkpoint(path: str | os.PathLike) -> nn.Module:
    """The model saved by ``save_checkpoint`` (e.g. ``epoch_NNN.pt`` of ``train_model``), on CPU."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return rebuild_model(
        checkpoint["model_name"], checkpoint["init_args"], checkpoint["state_dict"]
    )
