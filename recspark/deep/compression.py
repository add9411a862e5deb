"""Making a trained recommender cheaper: int8 dynamic quantisation, fp16/bf16 casting, magnitude
pruning, knowledge distillation, and the measurements that compare them with the fp32 teacher
(serialized size, inference throughput, ranking metric).

Every transform returns a new model and leaves its input untouched. int8 dynamic quantisation
runs on CPU only (PyTorch's quantized kernels); fp16/bf16 casting and pruning run anywhere.
"""
from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from recspark.deep.ranking import model_device, score_pairs
from recspark.deep.training import Batch, TrainResult, TrainSettings, train_model

INFERENCE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def quantize_int8(model: nn.Module) -> nn.Module:
    """CPU copy with int8 dynamic quantisation: ``nn.Linear`` weights qint8 with activations
    quantised per batch at run time, ``nn.Embedding`` tables quint8 weight-only with per-row
    float scale and zero point (the embeddings hold nearly all of these models' weights)."""
    from torch.ao import quantization

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantization.quantize_dynamic(
            copy.deepcopy(model).cpu().eval(),
            {
                nn.Linear: quantization.default_dynamic_qconfig,
                nn.Embedding: quantization.float_qparams_weight_only_qconfig,
            },
            dtype=torch.qint8,
        )


def cast_for_inference(model: nn.Module, dtype: str | torch.dtype) -> nn.Module:
    """Copy with every floating-point parameter and buffer cast to ``dtype`` (``"fp16"``,
    ``"bf16"``, ``"fp32"`` or a torch dtype), in eval mode. Scores come out in that dtype;
    ``score_pairs`` returns them as float32."""
    if isinstance(dtype, str):
        if dtype not in INFERENCE_DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(INFERENCE_DTYPES)}")
        dtype = INFERENCE_DTYPES[dtype]
    return copy.deepcopy(model).to(dtype).eval()


def prune_magnitude(model: nn.Module, amount: float = 0.5) -> nn.Module:
    """Copy with the ``amount`` fraction of smallest-magnitude weights set to zero, ranked
    globally over every ``nn.Linear`` and ``nn.Embedding`` weight (biases kept), made permanent
    (no masks left). The tensors stay dense: the zeros save space only in a sparse format."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    pruned = copy.deepcopy(model)
    targets = [
        (module, "weight")
        for module in pruned.modules()
        if isinstance(module, (nn.Linear, nn.Embedding))
    ]
    if not targets:
        raise ValueError(f"{type(model).__name__} has no Linear or Embedding weights to prune")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in targets:
        prune.remove(module, name)
    return pruned.eval()


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries over the ``nn.Linear`` and ``nn.Embedding`` weights."""
    weights = [
        m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))
    ]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


def distill(
    teacher: nn.Module,
    student: nn.Module,
    make_train_batches: Callable[[int], Iterable[Batch]],
    settings: TrainSettings,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    teacher_weight: float = 1.0,
    **train_kwargs: Any,
) -> TrainResult:
    """Train ``student`` on ``teacher``'s scores (knowledge distillation) with ``train_model``.

    Each training batch's label becomes ``teacher_weight * sigmoid(teacher logit) +
    (1 - teacher_weight) * label``: BCE against the teacher's probabilities (soft targets),
    optionally mixed with the sampled 0/1 labels. The teacher scores each batch in eval mode on
    its own device. ``train_kwargs`` go to ``train_model`` (``checkpoint_dir``, ``on_epoch``).
    """
    if not 0.0 <= teacher_weight <= 1.0:
        raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight}")

    def soft_batches(epoch: int) -> Iterator[dict[str, np.ndarray]]:
        for batch in make_train_batches(epoch):
            users = np.asarray(torch.as_tensor(batch["user_idx"]).cpu())
            items = np.asarray(torch.as_tensor(batch["item_idx"]).cpu())
            labels = np.asarray(torch.as_tensor(batch["label"]).cpu(), dtype=np.float32)
            teacher_p = 1.0 / (1.0 + np.exp(-score_pairs(teacher, users, items)))
            soft = teacher_weight * teacher_p + (1.0 - teacher_weight) * labels
            yield {"user_idx": users, "item_idx": items, "label": soft.astype(np.float32)}

    return train_model(student, soft_batches, settings, validate=validate, **train_kwargs)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the model's size on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def inference_throughput(
    model: nn.Module,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    batch_size: int = 65536,
    repeats: int = 3,
) -> dict[str, float]:
    """Scoring speed of ``score_pairs`` on the model's device: one warm-up batch, then
    ``repeats`` full passes over the pairs; ``samples_per_s`` from the median pass (seconds)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    score_pairs(model, user_idx[:batch_size], item_idx[:batch_size], batch_size=batch_size)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        score_pairs(model, user_idx, item_idx, batch_size=batch_size)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"samples_per_s": len(user_idx) / median, "seconds": median}


def compare_variants(
    variants: Mapping[str, nn.Module],
    validate: Callable[[nn.Module], dict[str, float]],
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    metric: str = "ndcg@10",
    reference: str = "fp32",
    batch_size: int = 65536,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """One row per variant: ``variant``, ``device``, ``size_bytes``, ``samples_per_s`` (scoring
    the given pairs; the variants take turns, one pass each per round, so load changes on a
    shared machine hit them alike; median of ``repeats`` rounds), ``metric`` value, and the
    ratios ``size_ratio``, ``speedup`` and ``relative_metric`` (variant / ``reference``, the
    fp32 teacher's row)."""
    if reference not in variants:
        raise ValueError(f"reference variant {reference!r} missing; got {sorted(variants)}")
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for model in variants.values():
        score_pairs(model, user_idx[:batch_size], item_idx[:batch_size], batch_size=batch_size)
    for _ in range(repeats):
        for name, model in variants.items():
            start = time.perf_counter()
            score_pairs(model, user_idx, item_idx, batch_size=batch_size)
            seconds[name].append(time.perf_counter() - start)
    rows = [
        {
            "variant": name,
            "device": str(model_device(model)),
            "size_bytes": model_size_bytes(model),
            "samples_per_s": len(user_idx) / statistics.median(seconds[name]),
            metric: validate(model)[metric],
        }
        for name, model in variants.items()
    ]
    base = next(row for row in rows if row["variant"] == reference)
    for row in rows:
        row["size_ratio"] = row["size_bytes"] / base["size_bytes"]
        row["speedup"] = row["samples_per_s"] / base["samples_per_s"]
        row["relative_metric"] = row[metric] / base[metric] if base[metric] else float("nan")
    return rows
