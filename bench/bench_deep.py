"""Benchmark: deep recommenders on CPU (or GPU) from an export built with pandas, no Spark.

Builds the torch-only export format (see ``recspark.deep.standalone``) from MovieLens
``ratings.csv``: dense user/item indexes, a 75/25 random split per user (seed), every train
pair a positive plus ``--negatives`` items per positive drawn uniformly from the items the user
has not rated, genre multi-hot item features (``movies.csv``) for the two-tower model. Then,
per model, runs ``standalone bench``: training samples/s (median over epochs, loader
included), loader vs training-step rate, inference samples/s of the trained model, and with
the compression table (size on disk, inference throughput, NDCG@10 relative to the fp32
teacher: fp16, bf16, int8 dynamic, 50 % magnitude pruning, a distilled half-width student).
The reference in the same run is popularity (train counts) on the same split and protocol.

    PYTHONPATH=. .venv/bin/python bench/bench_deep.py --output /tmp/deep.md

Prints a markdown section and writes it to ``--output``; ``--json`` keeps the raw results.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recspark.deep import standalone
from recspark.deep.ranking import full_catalog_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
MOVIELENS_DIR = REPO_ROOT / "data" / "ml-latest-small"


def write_export(
    ratings_csv: Path, movies_csv: Path, out: Path, negatives: int, seed: int
) -> dict[str, Any]:
    """Write the export format to ``out`` from MovieLens files; returns its sizes."""
    rng = np.random.default_rng(seed)
    ratings = pd.read_csv(ratings_csv, usecols=["userId", "movieId"]).drop_duplicates()
    users = np.sort(ratings["userId"].unique())
    items = np.sort(ratings["movieId"].unique())
    user_idx = np.searchsorted(users, ratings["userId"].to_numpy())
    item_idx = np.searchsorted(items, ratings["movieId"].to_numpy())
    # 75/25 per user: rank each user's pairs by a random key, hold out the last quarter.
    key = rng.random(len(user_idx))
    order = np.lexsort((key, user_idx))
    user_sorted = user_idx[order]
    starts = np.searchsorted(user_sorted, user_sorted, side="left")
    counts = np.bincount(user_sorted)[user_sorted]
    position = np.arange(len(order)) - starts
    held_out = np.zeros(len(order), dtype=bool)
    held_out[order] = position >= np.round(counts * 0.75)
    train_u, train_i = user_idx[~held_out], item_idx[~held_out]
    val_u, val_i = user_idx[held_out], item_idx[held_out]
    # Negatives: uniform items the user has not rated (rejection sampling against all pairs).
    n_items = len(items)
    rated = set((user_idx * n_items + item_idx).tolist())
    neg_u = np.repeat(train_u, negatives)
    neg_i = rng.integers(0, n_items, len(neg_u))
    clash = np.fromiter((u * n_items + i in rated for u, i in zip(neg_u, neg_i)), bool, len(neg_u))
    while clash.any():
        neg_i[clash] = rng.integers(0, n_items, int(clash.sum()))
        clash[clash] = np.fromiter(
            (u * n_items + i in rated for u, i in zip(neg_u[clash], neg_i[clash])), bool
        )
    train = {
        "user_idx": np.concatenate([train_u, neg_u]).astype(np.int64),
        "item_idx": np.concatenate([train_i, neg_i]).astype(np.int64),
        "label": np.concatenate([np.ones(len(train_u)), np.zeros(len(neg_u))]).astype(np.float32),
    }
    splits = {
        "train": train,
        "validation": {"user_idx": val_u.astype(np.int64), "item_idx": val_i.astype(np.int64)},
        "seen": {"user_idx": train_u.astype(np.int64), "item_idx": train_i.astype(np.int64)},
    }
    for name, columns in splits.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), out / name / "part-0.parquet")
    movies = pd.read_csv(movies_csv).set_index("movieId").reindex(items)
    genres = movies["genres"].fillna("").str.get_dummies("|")
    np.save(out / "item_features.npy", genres.to_numpy(np.float32))
    meta = {
        "num_users": len(users),
        "num_items": n_items,
        "item_features_file": "item_features.npy",
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return {**meta, "train_rows": len(train["label"]), "positives": len(train_u),
            "validation_pairs": len(val_u), "genres": genres.shape[1]}


class Popularity(torch.nn.Module):
    """Reference: every user gets the items ranked by train positives."""

    def __init__(self, counts: np.ndarray):
        super().__init__()
        self.register_buffer("counts", torch.as_tensor(counts, dtype=torch.float32))

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        return self.counts[item_idx]


def popularity_ndcg(export_dir: Path, k: int) -> float:
    export = standalone.Export.read(export_dir)
    counts = np.bincount(export.seen["item_idx"], minlength=export.num_items)
    validate = full_catalog_validator(
        export.pairs("validation"), export.pairs("seen"), export.num_items, k=k
    )
    return validate(Popularity(counts))[f"ndcg@{k}"]


def markdown(args, data, popularity, results) -> str:
    command = "PYTHONPATH=. .venv/bin/python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]]
    )
    k = args.k
    first = results[0]
    lines = [
        "## Deep models: training, inference and compression (torch, no Spark)",
        "",
        f"Command: `{command}`",
        "",
        f"Data: MovieLens latest-small, {data['num_users']:,} users x {data['num_items']:,} "
        f"items; 75/25 random split per user (seed {args.seed}); {data['positives']:,} train "
        f"positives + {args.negatives} uniform unrated negatives each = {data['train_rows']:,} "
        f"training rows; {data['validation_pairs']:,} held-out pairs; NDCG@{k} over the full "
        f"catalogue with train items masked. Two-tower item features: {data['genres']} genre "
        "flags.",
        f"Device: {first['device']}, torch {first['torch']}. Settings: batch {first['batch_size']},"
        f" Adam lr {args.learning_rate}, up to {args.epochs} epochs, patience {args.patience}.",
        "",
        f"| model | NDCG@{k} | vs popularity ({popularity:.4f}) | best epoch | train samples/s "
        "| loader samples/s | step samples/s | loader / step | inference samples/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lv = r["loader_vs_step"]
        lines.append(
            f"| {r['model']} | {r[f'ndcg@{k}']:.4f} | {r[f'ndcg@{k}'] / popularity:.2f}x | "
            f"{r['best_epoch']} | {r['train_samples_per_s']:,.0f} | "
            f"{lv['loader_samples_per_s']:,.0f} | {lv['step_samples_per_s']:,.0f} | "
            f"{lv['loader_to_step']:.1f}x | {r['inference']['samples_per_s']:,.0f} |"
        )
    for r in results:
        lines += [
            "",
            f"Compression of {r['model']} ({r['inference']['pairs']:,} (user, item) pairs "
            f"scored in batches of {r['inference']['batch_size']:,}, median of {args.repeats}; "
            f"student: {r['student_params']}):",
            "",
            f"| variant | device | size on disk | size ratio | inference samples/s | speed-up "
            f"| NDCG@{k} | relative NDCG |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in r["compression"]:
            lines.append(
                f"| {row['variant']} | {row['device']} | {row['size_bytes'] / 1e6:.2f} MB | "
                f"{row['size_ratio']:.2f} | {row['samples_per_s']:,.0f} | {row['speedup']:.2f}x "
                f"| {row[f'ndcg@{k}']:.4f} | {row['relative_metric']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(MOVIELENS_DIR))
    parser.add_argument("--export-dir", help="keep the export here (default: a temp dir)")
    parser.add_argument("--models", nargs="+", default=["neumf", "two_tower"])
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument("--inference-pairs", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", help="write the markdown section here")
    parser.add_argument("--json", help="write the raw results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as scratch:
        export_dir = Path(args.export_dir or scratch)
        data_dir = Path(args.data_dir)
        data = write_export(
            data_dir / "ratings.csv", data_dir / "movies.csv", export_dir, args.negatives, args.seed
        )
        popularity = popularity_ndcg(export_dir, args.k)
        results = []
        for model in args.models:
            standalone_args = [
                "bench", "--shards", str(export_dir), "--model", model, "--compression",
                "--epochs", str(args.epochs), "--patience", str(args.patience),
                "--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate),
                "--seed", str(args.seed), "--k", str(args.k), "--device", args.device,
                "--inference-pairs", str(args.inference_pairs), "--repeats", str(args.repeats),
            ]
            if args.cpu_threads:
                standalone_args += ["--cpu-threads", str(args.cpu_threads)]
            results.append(standalone.main(standalone_args))
    report = markdown(args, data, popularity, results)
    print(report)
    if args.output:
        Path(args.output).write_text(report)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
