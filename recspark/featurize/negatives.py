"""Negative sampling for implicit-feedback training (e.g. NCF / BPR-style models)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

LABELLED_SCHEMA = "user_idx int, item_idx int, label int"
# Below this share of sampling mass left after removing a user's positives, rejection sampling
# would waste most draws; such users sample from the renormalised distribution instead.
MIN_REJECTION_ACCEPT_RATE = 0.2


def item_sampling_table(
    positives: DataFrame, item_index: DataFrame, popularity_alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Items and their sampling probabilities, collected to the driver (size n_items).

    Popularity is the number of distinct positive users of an item in ``positives``; the
    probability is proportional to ``popularity ** popularity_alpha`` (``0 ** 0 = 1``, so alpha 0
    is uniform over every indexed item; with alpha > 0 items without positives are never
    drawn). Returns ``(item_idx, probability)`` sorted by item_idx.
    """
    popularity = positives.select("user_idx", "item_idx").distinct().groupBy("item_idx").count()
    rows = (
        item_index.select(F.col("item_idx").cast("int").alias("item_idx"))
        .distinct()
        .join(popularity, on="item_idx", how="left")
        .fillna(0, subset=["count"])
        .orderBy("item_idx")
        .collect()
    )
    item_ids = np.array([row.item_idx for row in rows], dtype=np.int32)
    weights = np.array([row["count"] for row in rows], dtype=np.float64) ** popularity_alpha
    total = weights.sum()
    if total <= 0:
        raise ValueError("no item can be sampled as a negative: every item has zero popularity")
    return item_ids, weights / total


def _sample_user(
    positive_items: np.ndarray,
    n_negatives: int,
    item_ids: np.ndarray,
    probabilities: np.ndarray,
    cdf: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n_negatives`` item ids drawn with replacement, never one of ``positive_items``."""
    positive_positions = np.searchsorted(item_ids, positive_items)
    positive_positions = positive_positions[
        (positive_positions < len(item_ids))
        & (item_ids[np.minimum(positive_positions, len(item_ids) - 1)] == positive_items)
    ]
    accept_rate = 1.0 - probabilities[positive_positions].sum()
    if accept_rate <= 1e-12:
        return np.empty(0, dtype=np.int32)
    if accept_rate < MIN_REJECTION_ACCEPT_RATE:
        restricted = probabilities.copy()
        restricted[positive_positions] = 0.0
        return rng.choice(item_ids, size=n_negatives, p=restricted / restricted.sum())
    drawn: list[np.ndarray] = []
    n_drawn = 0
    while n_drawn < n_negatives:
        batch = int(np.ceil((n_negatives - n_drawn) / accept_rate * 1.1)) + 8
        positions = np.searchsorted(cdf, rng.random(batch), side="right")
        kept = positions[~np.isin(positions, positive_positions)]
        drawn.append(kept)
        n_drawn += len(kept)
    return item_ids[np.concatenate(drawn)[:n_negatives]]


def sample_negatives(
    positives: DataFrame,
    item_index: DataFrame,
    ratio: int,
    seed: int,
    popularity_alpha: float = 0.0,
) -> DataFrame:
    """``ratio`` negatives per positive: rows (``user_idx``, ``item_idx``, ``label`` = 0).

    ``positives`` holds (``user_idx``, ``item_idx``) pairs (deduplicated first); ``item_index``
    (``item_idx``) is the sampling universe. For a user with p distinct positives, ``ratio * p``
    items are drawn with replacement (a negative may repeat, as in NCF's sampler) from the
    items that are not the user's positives, uniformly when ``popularity_alpha == 0`` else
    proportionally to ``popularity ** popularity_alpha`` (see :func:`item_sampling_table`). A
    user whose positives cover every item with non-zero probability gets no negatives.

    Scales by grouping per user (``applyInPandas``) with the n_items sampling table shipped to
    the workers; each user's draws use ``numpy.random.default_rng([seed, user_idx])``, so the
    result is identical on re-runs and for any partitioning.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
        raise ValueError(f"ratio must be an integer >= 1, got {ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if popularity_alpha < 0:
        raise ValueError(f"popularity_alpha must be >= 0, got {popularity_alpha}")
    item_ids, probabilities = item_sampling_table(positives, item_index, popularity_alpha)
    cdf = np.cumsum(probabilities)
    cdf[-1] = 1.0

    def sample_group(user_positives: pd.DataFrame) -> pd.DataFrame:
        user = int(user_positives["user_idx"].iloc[0])
        positive_items = np.unique(user_positives["item_idx"].to_numpy(dtype=np.int32))
        rng = np.random.default_rng([seed, user])
        negatives = _sample_user(
            positive_items, ratio * len(positive_items), item_ids, probabilities, cdf, rng
        )
        return pd.DataFrame(
            {
                "user_idx": np.full(len(negatives), user, dtype=np.int32),
                "item_idx": negatives.astype(np.int32),
                "label": np.zeros(len(negatives), dtype=np.int32),
            }
        )

    pairs = positives.select(
        F.col("user_idx").cast("int").alias("user_idx"),
        F.col("item_idx").cast("int").alias("item_idx"),
    ).distinct()
    return pairs.groupBy("user_idx").applyInPandas(sample_group, schema=LABELLED_SCHEMA)


def with_negatives(
    positives: DataFrame,
    item_index: DataFrame,
    ratio: int,
    seed: int,
    popularity_alpha: float = 0.0,
) -> DataFrame:
    """The distinct positive pairs with ``label`` = 1 followed by :func:`sample_negatives`."""
    labelled_positives = positives.select(
        F.col("user_idx").cast("int").alias("user_idx"),
        F.col("item_idx").cast("int").alias("item_idx"),
        F.lit(1).alias("label"),
    ).distinct()
    return labelled_positives.unionByName(
        sample_negatives(positives, item_index, ratio, seed, popularity_alpha)
    )
