"""Benchmark: the content source on the validation carve: centred embeddings, the new items'
popularity estimate and the popularity shrinkage, for warm users and the cold cohorts.

On a warehouse prepared by the pipeline up to embed-items, the fit rows (train minus the
``deep.validation_ratio`` carve, :func:`recspark.featurize.splits.tuning_frames`) are the
history and the carve's pairs the truth; the test split is never read. Per variant (``--center``
x ``--neighbours``, i.e. ``content.new_item_neighbours``, x ``--shrinkage``): content NDCG@10 for
every validation user (the ``content`` candidates) and
:func:`recspark.content.cold_start.cold_start_results` on the carve (cold items: the
``content.cold_item_ratio`` of items made new; cold users: the ``content.cold_user_ratio`` of
users cut to their ``content.cold_user_history`` earliest items).

    PYTHONPATH=. .venv/bin/python bench/bench_content.py --warehouse /tmp/wh --output /tmp/content.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.bench_blend import open_warehouse
from recspark.content.cold_start import cold_start_results
from recspark.content.recommend import ContentRecommender
from recspark.evaluation.ranking import ranking_metrics
from recspark.featurize.splits import split_protocol, tuning_frames

COLUMNS = ["user_idx", "item_idx", "event_ts"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warehouse", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    p.add_argument("--shrinkage", type=float, nargs="+", default=[0.5, 2.0, 5.0, 10.0, 20.0])
    p.add_argument("--center", choices=["yes", "no"], nargs="+", default=["no", "yes"],
                   help="centred embeddings off and/or on")
    p.add_argument("--neighbours", type=int, nargs="+", default=[0],
                   help="content.new_item_neighbours values (0: new items get popularity 0)")
    p.add_argument("--dimensions", type=int, nargs="+", default=[0],
                   help="content.embedding_dimensions values (0: all dimensions)")
    p.add_argument("--output", type=Path, help="markdown table")
    p.add_argument("--json", type=Path, default=Path("/tmp/bench_content.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config, tables = open_warehouse(args.warehouse, args.overrides)
    cc, k = config.content, config.evaluation.k
    split = tables.read("interactions_split")
    _, seed = split_protocol(tables.latest_metadata("interactions_split"))
    fit_rows, validation = tuning_frames(split, config.deep.validation_ratio, seed)
    history, truth = fit_rows.select(*COLUMNS).localCheckpoint(), validation.select(*COLUMNS).localCheckpoint()
    embeddings = tables.read("item_embeddings").select("item_idx", "embedding").localCheckpoint()
    n_items, users = embeddings.count(), truth.select("user_idx").distinct()
    seen = history.select("user_idx", "item_idx")
    results = []
    variants = [(c == "yes", m, s, d or None) for c in args.center for m in args.neighbours for s in args.shrinkage
                for d in args.dimensions]
    for center, neighbours, shrinkage, dimensions in variants:
        start = time.perf_counter()
        model = ContentRecommender(k, shrinkage, cc.profile_half_life_days, center, neighbours,
                                   dimensions).fit(history, embeddings)
        warm = ranking_metrics(model.recommend(users, seen=seen), truth.select("user_idx", "item_idx"), k,
                               "user_idx", "item_idx")["ndcg@k"]
        cold = cold_start_results(
            history, truth, embeddings, k, n_items, cold_item_ratio=cc.cold_item_ratio,
            cold_user_ratio=cc.cold_user_ratio, cold_user_history=cc.cold_user_history, seed=cc.cold_seed,
            popularity_shrinkage=shrinkage, half_life_days=cc.profile_half_life_days, center_embeddings=center,
            new_item_neighbours=neighbours, embedding_dimensions=dimensions,
        )
        row = {"center_embeddings": center, "new_item_neighbours": neighbours, "popularity_shrinkage": shrinkage,
               "embedding_dimensions": dimensions or "all",
               "all_users": warm,
               **{label: values["ndcg@k"] for label, values in cold.items()},
               "seconds": time.perf_counter() - start}
        print(json.dumps(row), flush=True)
        results.append(row)
    labels = ["all_users", "cold_items/content", "cold_users/content", "cold_users/popularity"]
    lines = [f"Validation NDCG@{k} of the content source (history: train minus the validation carve; truth: the carve):",
             "", "| centred embeddings | new_item_neighbours | popularity_shrinkage | embedding_dimensions | "
             + " | ".join(labels) + " | seconds |",
             "|---|---:|---:|---:|" + "---:|" * len(labels) + "---:|"]
    for row in results:
        cells = " | ".join(f"{row.get(label, float('nan')):.4f}" for label in labels)
        lines.append(f"| {'yes' if row['center_embeddings'] else 'no'} | {row['new_item_neighbours']} | "
                     f"{row['popularity_shrinkage']:g} | {row['embedding_dimensions']} | {cells} | "
                     f"{row['seconds']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
