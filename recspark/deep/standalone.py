"""Torch-only entry point: train and benchmark the deep models from exported shards, without
Spark, Java or Petastorm (for a GPU machine that has torch but no JVM and no package registry).

    python -m recspark.deep.standalone train --shards DIR [--model neumf] [--epochs 10] ...
    python -m recspark.deep.standalone bench --shards DIR [--model neumf] [--compression] ...
    python -m recspark.deep.standalone to-npy --shards DIR

Export format (written by the train-deep stage): ``DIR/train`` (user_idx int64, item_idx int64,
label float32: positives and sampled negatives), ``DIR/validation`` (user_idx, item_idx:
held-out positives), ``DIR/seen`` (user_idx, item_idx: training positives, masked when
ranking), each as ``*.parquet`` files or, without pyarrow, one ``<column>.npy`` per column
(``to-npy`` converts); ``DIR/meta.json`` ``{"num_users", "num_items", "item_features_file"}``
(optional ``.npy`` ``[num_items, d]``, relative to DIR). Results are printed and, with
``--output``, written as JSON. Under torchrun (``WORLD_SIZE`` > 1) each rank trains on its
``RANK``-th slice of the training rows (nccl on GPU, gloo on CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from recspark.deep.compression import (
    cast_for_inference,
    compare_variants,
    distill,
    inference_throughput,
    prune_magnitude,
    quantize_int8,
)
from recspark.deep.models import build_model
from recspark.deep.ranking import full_catalog_validator
from recspark.deep.settings import MODEL_NAMES, TrainSettings, add_settings_arguments, settings_from_args
from recspark.deep.training import (
    TrainResult,
    autocast_dtype,
    batch_tensors,
    save_checkpoint,
    select_device,
    set_seeds,
    train_model,
)

SPLIT_COLUMNS = {
    "train": ("user_idx", "item_idx", "label"),
    "validation": ("user_idx", "item_idx"),
    "seen": ("user_idx", "item_idx"),
}
COLUMN_DTYPES = {"user_idx": np.int64, "item_idx": np.int64, "label": np.float32}


def read_split(shards: Path, split: str) -> dict[str, np.ndarray]:
    """Columns of ``shards/split`` from its Parquet files (pyarrow) or ``<column>.npy`` files."""
    folder = shards / split
    columns = SPLIT_COLUMNS[split]
    parquet_files = sorted(folder.glob("*.parquet"))
    if parquet_files:
        try:
            import pyarrow.parquet as pq
        except ImportError as error:
            raise RuntimeError(
                f"{folder} holds Parquet files but pyarrow is not installed; convert them with "
                "`python -m recspark.deep.standalone to-npy` where pyarrow is available"
            ) from error
        tables = [pq.read_table(path, columns=list(columns)) for path in parquet_files]
        data = {c: np.concatenate([t.column(c).to_numpy() for t in tables]) for c in columns}
    elif all((folder / f"{c}.npy").exists() for c in columns):
        data = {c: np.load(folder / f"{c}.npy") for c in columns}
    else:
        raise FileNotFoundError(
            f"{folder} has neither *.parquet files nor {', '.join(c + '.npy' for c in columns)}"
        )
    return {c: data[c].astype(COLUMN_DTYPES[c], copy=False) for c in columns}


def read_meta(shards: Path) -> dict[str, Any]:
    """``meta.json`` with ``item_features`` loaded (float32 array or None)."""
    path = shards / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {shards} an export directory?")
    meta = json.loads(path.read_text())
    missing = [key for key in ("num_users", "num_items") if key not in meta]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    features_file = meta.get("item_features_file")
    meta["item_features"] = (
        np.load(shards / features_file).astype(np.float32) if features_file else None
    )
    return meta


def to_npy(shards: Path) -> None:
    """Write ``<column>.npy`` next to each split's Parquet files (needs pyarrow)."""
    for split in SPLIT_COLUMNS:
        for column, values in read_split(shards, split).items():
            np.save(shards / split / f"{column}.npy", values)


class ShardBatches:
    """``make_train_batches(epoch)`` over in-memory training columns: this rank's rows
    (``rank::world_size``), reshuffled each epoch with ``seed + epoch``, ``batch_size`` rows per
    batch (NumPy arrays)."""

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.columns = {name: values[rank::world_size] for name, values in columns.items()}
        self.batch_size, self.seed = batch_size, seed
        self.rows = len(next(iter(self.columns.values())))

    def __call__(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        order = np.random.default_rng(self.seed + epoch).permutation(self.rows)
        for start in range(0, self.rows, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield {name: values[rows] for name, values in self.columns.items()}


def loader_and_step_rates(
    model: torch.nn.Module,
    batches: ShardBatches,
    settings: TrainSettings,
    max_batches: int = 50,
) -> dict[str, float]:
    """Samples/s of the loader alone (batches made and moved to the device) and of training
    steps alone (forward, backward, Adam on batches already on the device), over at most
    ``max_batches`` batches each; ``loader_to_step`` = loader rate / step rate (target >= 5)."""
    device = select_device(settings.device)
    model.to(device).train()
    staged, samples = [], 0
    start = time.perf_counter()
    for batch in batches(0):
        staged.append(batch_tensors(batch, device))
        samples += len(staged[-1][0])
        if len(staged) == max_batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    loader_rate = samples / (time.perf_counter() - start)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    amp_dtype = autocast_dtype(device, settings.mixed_precision)
    timings = []
    for _ in range(2):  # the first pass warms up kernels and allocator
        start = time.perf_counter()
        for users, items, labels in staged:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = loss_fn(model(users, items).float(), labels)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - start)
    step_rate = samples / timings[-1]
    return {
        "loader_samples_per_s": loader_rate,
        "step_samples_per_s": step_rate,
        "loader_to_step": loader_rate / step_rate,
        "batches": len(staged),
    }


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group when ``WORLD_SIZE`` > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(select_device("auto"))
    return (dist.get_rank(), world_size) if dist.is_initialized() else (0, 1)


def describe_device(device: torch.device) -> str:
    """Human-readable device: GPU name, or CPU architecture, core count and torch threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return (
        f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch thread(s)"
    )


@dataclass
class Export:
    """One export directory in memory: columns per split, catalogue sizes, item features."""

    train: dict[str, np.ndarray]
    validation: dict[str, np.ndarray]
    seen: dict[str, np.ndarray]
    num_users: int
    num_items: int
    item_features: torch.Tensor | None

    @classmethod
    def read(cls, shards: Path) -> Export:
        meta = read_meta(shards)
        features = meta["item_features"]
        return cls(
            train=read_split(shards, "train"),
            validation=read_split(shards, "validation"),
            seen=read_split(shards, "seen"),
            num_users=int(meta["num_users"]),
            num_items=int(meta["num_items"]),
            item_features=torch.from_numpy(features) if features is not None else None,
        )

    def pairs(self, split: str) -> np.ndarray:
        """``[n, 2]`` (user_idx, item_idx) of ``validation`` or ``seen``."""
        columns = getattr(self, split)
        return np.stack([columns["user_idx"], columns["item_idx"]], axis=1)

    def build(self, name: str, seed: int, params: dict[str, Any]) -> torch.nn.Module:
        """Model ``name`` with ``params``, initialised after ``set_seeds(seed)``."""
        set_seeds(seed)
        return build_model(
            name, self.num_users, self.num_items, item_features=self.item_features, **params
        )


def student_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Half-width version of a model's size parameters: the distillation student."""
    half = {"embedding_dim": max(2, params.get("embedding_dim", 32) // 2)}
    if name == "neumf":
        layers = params.get("mlp_layers", (64, 32, 16))
        return {**half, "mlp_layers": [max(2, n // 2) for n in layers]}
    return {**half, "hidden_dim": max(2, params.get("hidden_dim", 64) // 2)}


def train_from_shards(
    args: argparse.Namespace, export: Export, rank: int = 0, world_size: int = 1
) -> tuple[TrainResult, dict[str, Any]]:
    """Train ``args.model`` on this rank's slice of ``export``; the result and a summary
    (device, sizes, best epoch and metric, median training samples/s, per-epoch history)."""
    settings = settings_from_args(args)
    params = dict(args.param)
    validate = full_catalog_validator(
        export.pairs("validation"), export.pairs("seen"), export.num_items, k=settings.k
    )
    batches = ShardBatches(export.train, settings.batch_size, settings.seed, rank, world_size)

    def report(record: dict[str, Any]) -> None:
        print(json.dumps({"model": args.model, **record}), flush=True)

    result = train_model(
        export.build(args.model, settings.seed, params),
        batches,
        settings,
        validate=validate,
        checkpoint_dir=args.checkpoint_dir,
        on_epoch=report,
    )
    features = export.item_features
    summary = {
        "model": args.model,
        "params": params,
        "device": describe_device(select_device(settings.device)),
        "torch": torch.__version__,
        "world_size": world_size,
        "train_rows": len(export.train["label"]),
        "validation_rows": len(export.validation["user_idx"]),
        "num_users": export.num_users,
        "num_items": export.num_items,
        "item_features_dim": None if features is None else int(features.shape[1]),
        "batch_size": settings.batch_size,
        "best_epoch": result.best_epoch,
        f"ndcg@{settings.k}": result.best_metric,
        "train_samples_per_s": float(np.median([r["samples_per_s"] for r in result.history])),
        "history": result.history,
    }
    return result, summary


def bench_from_shards(args: argparse.Namespace, export: Export) -> dict[str, Any]:
    """Train (one process), then add loader vs step rates, inference throughput of the trained
    model over all items of the seen users (at most ``--inference-pairs``) and, with
    ``--compression``, the compression table against the trained fp32 model."""
    result, summary = train_from_shards(args, export)
    settings = settings_from_args(args)
    device = select_device(settings.device)
    params = dict(args.param)
    batches = ShardBatches(export.train, settings.batch_size, settings.seed)
    summary["loader_vs_step"] = loader_and_step_rates(
        export.build(args.model, settings.seed, params), batches, settings
    )
    validate = full_catalog_validator(
        export.pairs("validation"), export.pairs("seen"), export.num_items, k=settings.k
    )
    teacher = result.model.to(device)
    users = np.repeat(np.unique(export.seen["user_idx"]), export.num_items)[: args.inference_pairs]
    items = np.arange(len(users)) % export.num_items
    summary["inference"] = {
        "pairs": len(users),
        "batch_size": args.inference_batch_size,
        **inference_throughput(teacher, users, items, args.inference_batch_size, args.repeats),
    }
    if args.compression:
        small = student_params(args.model, params)
        student = distill(
            teacher, export.build(args.model, settings.seed, small), batches, settings,
            validate=validate,
        ).model
        variants = {
            "fp32": teacher,
            "fp16": cast_for_inference(teacher, "fp16"),
            "bf16": cast_for_inference(teacher, "bf16"),
            "int8 dynamic": quantize_int8(teacher),
            "pruned 50%": prune_magnitude(teacher, 0.5),
            "distilled half-width": student.to(device),
        }
        summary["student_params"] = small
        summary["compression"] = compare_variants(
            variants, validate, users, items, metric=f"ndcg@{settings.k}",
            batch_size=args.inference_batch_size, repeats=args.repeats,
        )
    return summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "bench", "to-npy"])
    parser.add_argument("--shards", required=True, help="export directory (see module docstring)")
    parser.add_argument("--model", default="neumf", choices=MODEL_NAMES)
    parser.add_argument(
        "--param", action="append", default=[], type=_key_value, metavar="KEY=JSON",
        help="model constructor parameter, e.g. --param embedding_dim=64 "
        "--param 'mlp_layers=[128,64]'",
    )
    add_settings_arguments(parser)
    parser.add_argument("--checkpoint-dir", help="keep each improving epoch's weights here")
    parser.add_argument("--save", help="train: write the best model (save_checkpoint) here")
    parser.add_argument("--compression", action="store_true", help="bench: compression table")
    parser.add_argument("--inference-pairs", type=int, default=1_000_000)
    parser.add_argument("--inference-batch-size", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", help="write the results as JSON here")
    return parser.parse_args(argv)


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Run one command; returns the summary (None for ``to-npy`` and on ranks other than 0)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "to-npy":
        to_npy(Path(args.shards))
        return None
    export = Export.read(Path(args.shards))
    rank, world_size = init_distributed()
    if args.command == "train":
        result, summary = train_from_shards(args, export, rank, world_size)
        if args.save and rank == 0:
            save_checkpoint(
                result.model, Path(args.save), epoch=result.best_epoch, metric=result.best_metric
            )
    elif world_size > 1:
        raise SystemExit("bench runs in one process; use `train` under torchrun")
    else:
        summary = bench_from_shards(args, export)
    if rank != 0:
        return None
    text = json.dumps(summary, indent=2, default=float)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return summary


if __name__ == "__main__":
    main()
