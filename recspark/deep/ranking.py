"""Full-catalogue ranking metrics and batched pair scoring for the deep models (torch, no Spark).

``full_catalog_validator`` scores every item for every validation user, masks the items the user
already has (``seen_pairs``), and computes NDCG@k and recall@k with the definitions of
``recspark.evaluation.ranking`` (binary relevance, ``1 / log2(position + 1)`` discount, IDCG over
``min(|R|, k)`` hits, recall = hits / |R|), averaged over the users with validation pairs. A
validation item that is also seen is masked and so can never be hit; the splits of featurize
never produce such pairs.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

# Largest (user, item) block scored at once by the validator: bounds NeuMF's activations.
MAX_PAIRS_PER_BLOCK = 1 << 20


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without either)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_pairs(name: str, pairs: np.ndarray, num_items: int) -> np.ndarray:
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"{name} must have shape [n, 2] (user_idx, item_idx), got {pairs.shape}")
    if pairs.size and not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indexes, got dtype {pairs.dtype}")
    pairs = pairs.astype(np.int64, copy=False)
    if pairs.size:
        if pairs.min() < 0:
            raise ValueError(f"{name} holds a negative index {int(pairs.min())}")
        if pairs[:, 1].max() >= num_items:
            raise ValueError(
                f"{name} item_idx value {int(pairs[:, 1].max())} out of range [0, {num_items})"
            )
    return pairs


def _rows_by_user(pairs: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of known ``users`` as (row in ``users``, item), sorted by row."""
    rows = np.searchsorted(users, pairs[:, 0])
    rows = np.minimum(rows, len(users) - 1)
    known = users[rows] == pairs[:, 0]
    rows, items = rows[known], pairs[known, 1]
    order = np.argsort(rows, kind="stable")
    return rows[order], items[order]


def score_all_items(model: nn.Module, user_idx: torch.Tensor, num_items: int) -> torch.Tensor:
    """Scores ``[B, num_items]``: ``model.score_all_items`` when the model has it, else ``forward``
    on every (user, item) pair."""
    if hasattr(model, "score_all_items"):
        return model.score_all_items(user_idx).float()
    items = torch.arange(num_items, device=user_idx.device)
    users = user_idx.repeat_interleave(num_items)
    return model(users, items.repeat(user_idx.numel())).float().view(-1, num_items)


def full_catalog_validator(
    val_pairs: np.ndarray,
    seen_pairs: np.ndarray,
    num_items: int,
    k: int = 10,
    batch_users: int = 256,
) -> Callable[[nn.Module], dict[str, float]]:
    """A ``validate(model) -> {"ndcg@k", "recall@k"}`` over the full catalogue.

    ``val_pairs`` ``[n, 2]`` (user_idx, item_idx): held-out positives (the relevant items).
    ``seen_pairs`` ``[m, 2]``: items each user already has, excluded from the ranking.
    Users are scored ``batch_users`` at a time (fewer when ``batch_users * num_items`` exceeds
    ``MAX_PAIRS_PER_BLOCK``), in eval mode without gradients, on the model's device.
    """
    if k < 1 or batch_users < 1 or num_items < 1:
        raise ValueError(
            f"k, batch_users and num_items must be >= 1, got {k}, {batch_users}, {num_items}"
        )
    val_pairs = _check_pairs("val_pairs", val_pairs, num_items)
    seen_pairs = _check_pairs("seen_pairs", seen_pairs, num_items)
    if len(val_pairs) == 0:
        raise ValueError("val_pairs is empty: nothing to validate against")
    users = np.unique(val_pairs[:, 0])
    val_rows, val_items = _rows_by_user(np.unique(val_pairs, axis=0), users)
    seen_rows, seen_items = _rows_by_user(seen_pairs, users)
    n_relevant = np.bincount(val_rows, minlength=len(users))
    block = max(1, min(batch_users, MAX_PAIRS_PER_BLOCK // num_items))
    top_k = min(k, num_items)
    discounts = 1.0 / torch.log2(torch.arange(2, top_k + 2, dtype=torch.float64))
    ideal = torch.cumsum(discounts, 0)

    def validate(model: nn.Module) -> dict[str, float]:
        device = model_device(model)
        was_training = model.training
        model.eval()
        ndcg_sum, recall_sum = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, len(users), block):
                stop = min(start + block, len(users))
                user_tensor = torch.as_tensor(users[start:stop], device=device)
                scores = score_all_items(model, user_tensor, num_items)
                lo, hi = np.searchsorted(seen_rows, [start, stop])
                scores[
                    torch.as_tensor(seen_rows[lo:hi] - start, device=device),
                    torch.as_tensor(seen_items[lo:hi], device=device),
                ] = -torch.inf
                relevant = torch.zeros(stop - start, num_items, dtype=torch.bool, device=device)
                lo, hi = np.searchsorted(val_rows, [start, stop])
                relevant[
                    torch.as_tensor(val_rows[lo:hi] - start, device=device),
                    torch.as_tensor(val_items[lo:hi], device=device),
                ] = True
                top = torch.topk(scores, top_k, dim=1).indices
                hits = relevant.gather(1, top).double().cpu()
                counts = torch.as_tensor(n_relevant[start:stop], dtype=torch.float64)
                idcg = ideal[(counts.clamp(max=top_k) - 1).long()]
                ndcg_sum += float(((hits * discounts).sum(1) / idcg).sum())
                recall_sum += float((hits.sum(1) / counts).sum())
        model.train(was_training)
        return {f"ndcg@{k}": ndcg_sum / len(users), f"recall@{k}": recall_sum / len(users)}

    return validate


def score_pairs(
    model: nn.Module,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    batch_size: int = 65536,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Logits (float32 ``[n]``) of ``model`` for the pairs ``(user_idx[i], item_idx[i])``.

    Eval mode, no gradients, ``batch_size`` pairs per forward pass. ``device``: where to score;
    the model is moved there in place (default: where the model already is).
    """
    user_idx, item_idx = np.asarray(user_idx), np.asarray(item_idx)
    if user_idx.ndim != 1 or user_idx.shape != item_idx.shape:
        raise ValueError(
            f"user_idx and item_idx must be 1-D of equal length, got {user_idx.shape} and "
            f"{item_idx.shape}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        model.to(device)
    target = model_device(model)
    was_training = model.training
    model.eval()
    scores = np.empty(len(user_idx), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(user_idx), batch_size):
            stop = start + batch_size
            users = torch.as_tensor(user_idx[start:stop]).to(target, torch.long)
            items = torch.as_tensor(item_idx[start:stop]).to(target, torch.long)
            scores[start:stop] = model(users, items).float().cpu().numpy()
    model.train(was_training)
    return scores
