"""Planted-preference data for the deep-model tests (imported by tests/test_deep_*.py).

40 users in 4 groups; group g likes items 10g..10g+9 of 40. Each user trains on 7 of the group's
items and holds out the other 3 (validation), so a model that learned the groups ranks exactly
the 3 held-out items first once the 7 seen ones are masked.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

NUM_USERS, NUM_ITEMS, GROUP_SIZE, HELD_OUT = 40, 40, 10, 3


def planted_pairs() -> tuple[np.ndarray, np.ndarray]:
    """(train positives [280, 2], validation positives [120, 2]) as (user_idx, item_idx)."""
    train, val = [], []
    for user in range(NUM_USERS):
        group_items = np.arange(GROUP_SIZE) + (user % 4) * GROUP_SIZE
        held = set(group_items[(user + np.arange(HELD_OUT)) % GROUP_SIZE])
        for item in group_items:
            (val if item in held else train).append((user, item))
    return np.array(train, dtype=np.int64), np.array(val, dtype=np.int64)


def planted_batches(train: np.ndarray, negatives: int = 3, batch_size: int = 128):
    """``make_train_batches(epoch)``: train positives plus ``negatives`` uniformly sampled items
    per positive (label 0, items outside the group), shuffled; deterministic per epoch."""

    def make(epoch: int) -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng(epoch)
        users = np.repeat(train[:, 0], negatives)
        offsets = rng.integers(GROUP_SIZE, NUM_ITEMS, len(users))
        neg_items = ((users % 4) * GROUP_SIZE + offsets) % NUM_ITEMS
        all_users = np.concatenate([train[:, 0], users])
        all_items = np.concatenate([train[:, 1], neg_items])
        labels = np.concatenate([np.ones(len(train)), np.zeros(len(users))]).astype(np.float32)
        order = rng.permutation(len(all_users))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield {"user_idx": all_users[rows], "item_idx": all_items[rows], "label": labels[rows]}

    return make


def fresh_model(name: str, seed: int = 0):
    """A freshly seeded ``name`` model (embedding_dim 8) over the planted users and items."""
    from recspark.deep.models import build_model
    from recspark.deep.training import set_seeds

    set_seeds(seed)
    return build_model(name, NUM_USERS, NUM_ITEMS, embedding_dim=8)
