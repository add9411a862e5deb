"""Export of the training data for the torch-only entry point (``recspark.deep.standalone``).

Layout of ``DIR`` (readable with pyarrow or pandas, no Spark or Java needed)::

    DIR/train/*.parquet       user_idx int64, item_idx int64, label float32 (examples with negatives)
    DIR/validation/*.parquet  user_idx int64, item_idx int64: held-out positives
    DIR/seen/*.parquet        user_idx int64, item_idx int64: training positives, masked when ranking
    DIR/meta.json             {"num_users", "num_items", "item_features_file" (optional)}
    DIR/item_features.npy     float32 [num_items, d], when item features exist
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

ITEM_FEATURES_FILE = "item_features.npy"


def _pairs(df: DataFrame) -> DataFrame:
    return df.select(F.col("user_idx").cast("long"), F.col("item_idx").cast("long")).distinct()


def export_training_data(
    export_dir: str,
    examples: DataFrame,
    validation: DataFrame,
    seen: DataFrame,
    num_users: int,
    num_items: int,
    item_features: np.ndarray | None = None,
) -> Path:
    """Write the layout above to the local folder ``export_dir`` (replacing what is there) and
    return its path. ``examples``: user_idx, item_idx, label; ``validation`` / ``seen``: pairs."""
    if "://" in export_dir and not export_dir.startswith("file://"):
        raise ValueError(f"deep.export_dir must be a local folder, got {export_dir!r}")
    root = Path(export_dir.removeprefix("file://")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    train = examples.select(
        F.col("user_idx").cast("long"), F.col("item_idx").cast("long"), F.col("label").cast("float")
    )
    for name, frame in (("train", train), ("validation", _pairs(validation)), ("seen", _pairs(seen))):
        frame.write.mode("overwrite").parquet("file://" + str(root / name))
    meta = {"num_users": int(num_users), "num_items": int(num_items)}
    features_path = root / ITEM_FEATURES_FILE
    if item_features is not None:
        np.save(features_path, np.asarray(item_features, dtype=np.float32))
        meta["item_features_file"] = ITEM_FEATURES_FILE
    elif features_path.exists():
        os.remove(features_path)
    (root / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return root
