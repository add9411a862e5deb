"""Benchmark: what the caps that keep the stages linear at 5M cost in quality and save in time.

On a warehouse the nightly has filled (e.g. ``bench/bench_nightly.py``'s 1M or 5M one), side by
side in the same run, on the same users:

1. ``user_knn.max_users_per_item`` (the default, 500, against no cap): user-KNN fitted on the
   fit rows of the rerank stage's validation carve (``deep.validation_ratio`` of train, never
   test), validation NDCG@k of its top ``k`` and the fit + recommend seconds;
2. ``ease.tuning_max_users`` (``--ease-users`` against every validation user): the weekly EASE
   search (``ease.grid``, its own ``ease.tuning_ratio`` carve), each point's validation NDCG@k,
   the point each run chooses, and its seconds;
3. ``evaluation.vector_metrics_max_users`` (the default, 5,000, against every user): diversity
   and serendipity of every source of the newest candidates, as the evaluate stage computes them
   (test users, genres as item vectors). These are reported metrics, never a choice.

    PYTHONPATH=. .venv/bin/python bench/bench_scale_caps.py --warehouse /tmp/bn1/n1000000/wh \
        --ease-users 2500 --output /tmp/scale_caps.md

The machine's other load is not controlled: say in BENCHMARKS.md when it was shared.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from bench.bench_blend import open_warehouse
from recspark.config import Config
from recspark.evaluation import ranking_metrics
from recspark.evaluation.suite import evaluate_recommendations_by
from recspark.featurize.splits import split_protocol
from recspark.pipeline.stage import StageTables
from recspark.ranker.blend import validation_inputs
from recspark.recommenders.ease_tuning import search_ease_on_split
from recspark.recommenders.user_knn import UserKnn

PARTS = ("user_knn", "ease_search", "vector_metrics")
VECTOR_METRICS = ("diversity", "serendipity", "serendipity_relevant")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warehouse", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--ease-users", type=int, help="the sampled EASE search's user cap (default: ease.tuning_max_users)")
    p.add_argument("--output", type=Path, help="markdown section")
    p.add_argument("--json", type=Path, default=Path("/tmp/bench_scale_caps.json"))
    return p.parse_args(argv)


def user_knn_cap(config: Config, tables: StageTables) -> list[dict]:
    """Validation NDCG@k and seconds of user-KNN with the configured ``max_users_per_item`` and
    without a cap."""
    split = tables.read("interactions_split")
    _, seed = split_protocol(tables.latest_metadata("interactions_split"))
    inputs = validation_inputs(split, config.deep.validation_ratio, seed)
    fit_rows = inputs.fit_rows.select("user_idx", "item_idx").cache()
    users = inputs.validation.select("user_idx").distinct().cache()
    k, rows = config.evaluation.k, []
    for cap in (config.user_knn.max_users_per_item, None):
        began = time.perf_counter()
        model = UserKnn(dataclasses.replace(config.user_knn, max_users_per_item=cap)).fit(fit_rows)
        lists = model.recommend(users, k, seen=fit_rows).cache()
        lists.count()
        seconds = time.perf_counter() - began
        metrics = ranking_metrics(lists, inputs.validation, k, "user_idx", "item_idx", "rank")
        rows.append({"max_users_per_item": cap, f"validation_ndcg@{k}": metrics["ndcg@k"] * metrics["user_coverage"],
                     "seconds": seconds})
        print("user_knn", rows[-1], flush=True)
        lists.unpersist()
    return rows


def ease_search_cap(config: Config, tables: StageTables, sampled_users: int) -> list[dict]:
    """The EASE search's trials on a ``sampled_users`` sample and on every validation user."""
    split = tables.read("interactions_split")
    _, seed = split_protocol(tables.latest_metadata("interactions_split"))
    runs = []
    for cap in (sampled_users, None):
        settings = dataclasses.replace(config.ease, tuning_max_users=cap)
        began = time.perf_counter()
        search = search_ease_on_split(split, settings, config.evaluation.k, seed)
        runs.append({"tuning_max_users": cap, "seconds": time.perf_counter() - began, "best": search.best.params,
                     "trials": [{"params": t.params, "ndcg": t.ndcg} for t in search.trials]})
        print("ease_search", runs[-1], flush=True)
    return runs


def vector_metrics_cap(config: Config, tables: StageTables) -> dict[str, dict]:
    """Each source's diversity and serendipity on the configured user sample and on every user."""
    split = tables.read("interactions_split")
    truth = split.where(F.col("split") == "test").select("user_idx", "item_idx", "rating").cache()
    history = split.where(F.col("split") != "test").select("user_idx", "item_idx").cache()
    candidates = tables.read("candidates")
    newest = candidates.agg(F.max("run_date")).first()[0]
    candidates = candidates.where(F.col("run_date") == newest).cache()
    genres = tables.read("item_features").select(
        "item_idx", F.col("genre_multi_hot").cast("array<double>").alias("features"))
    n_items = tables.read("item_index").count()
    cap, results = config.evaluation.vector_metrics_max_users, {}
    for label, users in (("sampled", cap), ("all", None)):
        began = time.perf_counter()
        by_source = evaluate_recommendations_by(candidates, "source", truth, history, config.evaluation.k, n_items,
                                                genres, vector_metrics_max_users=users, seed=config.evaluation.seed)
        results[label] = {"max_users": users, "seconds": time.perf_counter() - began,
                          "sources": {s: {m: v[m] for m in VECTOR_METRICS} for s, v in by_source.items()}}
        print("vector_metrics", label, json.dumps(results[label]), flush=True)
    return results


def markdown(results: dict, k: int, command: str) -> str:
    lines = [f"Command: `{command}`", ""]
    if "user_knn" in results:
        lines += ["| user_knn.max_users_per_item | validation NDCG@%d | fit + recommend s |" % k, "|---|---:|---:|"]
        for row in results["user_knn"]:
            lines.append(f"| {row['max_users_per_item'] or 'no cap'} | {row[f'validation_ndcg@{k}']:.4f} "
                         f"| {row['seconds']:.0f} |")
        lines.append("")
    if "ease_search" in results:
        sampled, every = results["ease_search"]
        lines += [f"| EASE point | validation NDCG@{k}, {sampled['tuning_max_users']:,} users | every validation user |",
                  "|---|---:|---:|"]
        for a, b in zip(sampled["trials"], every["trials"]):
            point = ", ".join(f"{key} {value:g}" for key, value in a["params"].items())
            lines.append(f"| {point} | {a['ndcg']:.4f} | {b['ndcg']:.4f} |")
        lines += [f"| **chosen** | {sampled['best']} | {every['best']} |",
                  f"| **search s** | {sampled['seconds']:.0f} | {every['seconds']:.0f} |", ""]
    if "vector_metrics" in results:
        sampled, every = results["vector_metrics"]["sampled"], results["vector_metrics"]["all"]
        lines += [f"| source | {' | '.join(f'{m}@{k}' for m in VECTOR_METRICS)} |", "|---|" + "---:|" * len(VECTOR_METRICS),
                  f"| (each cell: {sampled['max_users']:,}-user sample / every user) |" + " |" * len(VECTOR_METRICS)]
        for source in sorted(every["sources"]):
            s, a = sampled["sources"][source], every["sources"][source]
            lines.append(f"| {source} | " + " | ".join(f"{s[m]:.4f} / {a[m]:.4f}" for m in VECTOR_METRICS) + " |")
        gap = max(abs(sampled["sources"][s][m] - every["sources"][s][m]) for s in every["sources"] for m in VECTOR_METRICS)
        lines += ["", f"Largest gap {gap:.4f}; evaluate {sampled['seconds']:.0f} s sampled, {every['seconds']:.0f} s "
                  "every user (all metrics of every source).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config, tables = open_warehouse(args.warehouse, args.overrides)
    results: dict = {}
    if "user_knn" in args.parts:
        results["user_knn"] = user_knn_cap(config, tables)
    if "ease_search" in args.parts:
        results["ease_search"] = ease_search_cap(config, tables, args.ease_users or config.ease.tuning_max_users)
    if "vector_metrics" in args.parts:
        results["vector_metrics"] = vector_metrics_cap(config, open_warehouse(args.warehouse, args.overrides,
                                                                              "evaluate")[1])
    command = "PYTHONPATH=. .venv/bin/python bench/bench_scale_caps.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = markdown(results, config.evaluation.k, command)
    print(text)
    if args.output:
        args.output.write_text(text)
    args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
