"""Training examples for the deep recommenders, built in Spark (DataFrame -> DataFrame).

Positives are the distinct (user, item) pairs given; negatives are sampled per user by
:func:`recspark.featurize.negatives.with_negatives` (uniform or popularity-aware, seeded per
user, so identical on re-runs and for any partitioning).
"""
from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.featurize.negatives import with_negatives

EXAMPLE_COLUMNS = ("user_idx", "item_idx", "label")


def training_examples(
    positives: DataFrame, item_index: DataFrame, negatives_ratio: int, seed: int, popularity_alpha: float = 0.0
) -> DataFrame:
    """``user_idx`` long, ``item_idx`` long, ``label`` float (1 positive, 0 sampled negative).

    ``positives``: (user_idx, item_idx) pairs; ``item_index``: (item_idx) the negatives are drawn
    from; ``negatives_ratio`` negatives per positive with probability proportional to
    ``popularity ** popularity_alpha``. Rows are in a seeded pseudo-random order (sorted by a
    hash of the row and ``seed``), so the Parquet files a converter writes mix users and labels.
    """
    missing = [c for c in ("user_idx", "item_idx") if c not in positives.columns]
    if missing:
        raise ValueError(f"positives lacks column(s) {missing}; it has {positives.columns}")
    labelled = with_negatives(positives, item_index, negatives_ratio, seed, popularity_alpha)
    return labelled.select(
        F.col("user_idx").cast("long"), F.col("item_idx").cast("long"), F.col("label").cast("float")
    ).orderBy(F.xxhash64("user_idx", "item_idx", "label", F.lit(seed)), *EXAMPLE_COLUMNS)


def pairs_array(pairs: DataFrame) -> np.ndarray:
    """The distinct (user_idx, item_idx) pairs of ``pairs`` as an int64 ``[n, 2]`` array on the
    driver (sorted), e.g. validation and seen pairs for the full-catalogue validator."""
    frame = pairs.select(F.col("user_idx").cast("long"), F.col("item_idx").cast("long")).distinct().toPandas()
    array = frame.to_numpy(dtype=np.int64).reshape(-1, 2)
    return array[np.lexsort((array[:, 1], array[:, 0]))]


def item_feature_matrix(item_embeddings: DataFrame, num_items: int) -> np.ndarray:
    """float32 ``[num_items, d]`` from an ``item_embeddings`` table (item_idx, embedding
    array<float>); items without an embedding get a zero row. Collected to the driver."""
    rows = item_embeddings.select(F.col("item_idx").cast("long"), "embedding").collect()
    if not rows:
        raise ValueError("item_embeddings is empty")
    dims = {len(r.embedding) for r in rows}
    if len(dims) != 1:
        raise ValueError(f"item_embeddings has embeddings of different lengths: {sorted(dims)}")
    matrix = np.zeros((num_items, dims.pop()), dtype=np.float32)
    for row in rows:
        if not 0 <= row.item_idx < num_items:
            raise ValueError(f"item_embeddings item_idx {row.item_idx} out of range [0, {num_items})")
        matrix[row.item_idx] = row.embedding
    return matrix
