"""Benchmark: which candidate sources the blends should use, on the validation carve only.

On a warehouse prepared by the pipeline up to the candidates stage (``recspark run`` or the
stages ingest .. candidates; the ALS source's refit reads the params in ``user_factors``' commit),
exactly as the rerank stage does it:

1. :func:`recspark.ranker.blend.validation_inputs`: fit rows and validation pairs (the
   ``deep.validation_ratio`` carve of train; test pairs never among them);
2. every source of ``--sources`` refit on the fit rows and asked for ``candidates.n`` items per
   user with the fit rows as seen history (wall time per source);
3. per source set of ``--variants``: the grid hybrid (``deep.hybrid_weight_grid`` tuned on all
   validation users) and the LightGBM lambdarank ranker (trained on the validation labels);
4. every list (single sources, hybrid, ranker) scored by mean NDCG@k over the same users: the
   validation users the ranker of the largest variant held out of training.

    PYTHONPATH=. .venv/bin/python bench/bench_blend.py --warehouse /tmp/wh --output /tmp/blend.md

Numbers are validation numbers (the choice), never test numbers.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config, load_config
from recspark.deep.scoring import blend, normalised_scores, tune_blend_weights
from recspark.featurize.splits import split_protocol
from recspark.io.delta import DeltaTables
from recspark.io.session import build_spark_session
from recspark.pipeline.registry import stage
from recspark.pipeline.stage import StageTables
from recspark.ranker.blend import ValidationInputs, validation_inputs, validation_ndcg
from recspark.ranker.features import FeatureSet, ranker_features
from recspark.ranker.lambdarank import LearnedRanker
from recspark.sources import SourceInputs, as_candidates, get_source

BASE = ["als", "item_item", "popularity", "content"]
VARIANTS = {"base": BASE, "base+ease": [*BASE, "ease"], "base+user_knn": [*BASE, "user_knn"],
            "base+ease+user_knn": [*BASE, "ease", "user_knn"]}
HISTORY_COLUMNS = ["user_idx", "item_idx", "event_ts", "split"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warehouse", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--output", type=Path, help="markdown table")
    p.add_argument("--json", type=Path, default=Path("/tmp/bench_blend.json"))
    return p.parse_args(argv)


@dataclass
class ValidationLists:
    """What rerank's validation protocol builds on a warehouse: its inputs (fit rows, validation
    pairs, labels), every source's validation-time candidates, the fit rows as history, the item
    embeddings (None without the table) and each source's refit + recommend seconds."""

    inputs: ValidationInputs
    lists: DataFrame
    history: DataFrame
    embeddings: DataFrame | None
    refit_seconds: dict[str, float]


def open_warehouse(warehouse: str, overrides: list[str], stage_name: str = "rerank") -> tuple[Config, StageTables]:
    """The config and the ``stage_name`` stage's declared tables of ``warehouse`` (a local[2] session)."""
    config = load_config(None, [f"warehouse={warehouse}", "spark.master=local[2]", *overrides])
    spark = build_spark_session(config.spark)
    spark.sparkContext.setCheckpointDir(config.checkpoint_dir())
    declared = stage(stage_name)
    return config, StageTables(DeltaTables.from_config(spark, config), declared.name, declared.reads, ())


def validation_lists(config: Config, tables: StageTables, sources: list[str]) -> ValidationLists:
    """Every source of ``sources`` refit on the fit rows and asked for ``candidates.n`` items per
    user with the fit rows as seen history, as rerank does."""
    split = tables.read("interactions_split")
    _, seed = split_protocol(tables.latest_metadata("interactions_split"))
    inputs = validation_inputs(split, config.deep.validation_ratio, seed)
    fit_rows = inputs.fit_rows.cache()
    users = tables.read("user_index").select("user_idx")
    seen = fit_rows.select("user_idx", "item_idx")
    refit_seconds, parts = {}, []
    for name in sources:
        start = time.perf_counter()
        model = get_source(name).refit(fit_rows, SourceInputs(config, tables))
        part = as_candidates(model.recommend(users, config.candidates.n, seen), name).localCheckpoint()
        part.count()
        refit_seconds[name] = time.perf_counter() - start
        print(f"refit {name}: {refit_seconds[name]:.1f} s", flush=True)
        parts.append(part)
    embeddings = tables.read("item_embeddings") if tables.exists("item_embeddings") else None
    return ValidationLists(inputs, reduce(DataFrame.unionByName, parts).cache(), fit_rows.select(*HISTORY_COLUMNS),
                           embeddings, refit_seconds)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config, tables = open_warehouse(args.warehouse, args.overrides)
    spark = SparkSession.getActiveSession()
    n, k = config.candidates.n, config.evaluation.k
    sources = sorted({s for name in args.variants for s in VARIANTS[name]}, key=lambda s: [*BASE, "ease", "user_knn"].index(s))
    built = validation_lists(config, tables, sources)
    inputs, refit_lists, embeddings, history = built.inputs, built.lists, built.embeddings, built.history
    refit_seconds = built.refit_seconds
    results, lists = {}, {}
    for variant in sorted(args.variants, key=lambda v: -len(VARIANTS[v])):
        chosen = VARIANTS[variant]
        start = time.perf_counter()
        scores = normalised_scores(refit_lists, chosen)
        tuning = tune_blend_weights(scores, inputs.validation, chosen, config.deep.hybrid_weight_grid, k)
        hybrid_s = time.perf_counter() - start
        start = time.perf_counter()
        features = FeatureSet(tuple(chosen), n, content=embeddings is not None)
        training = ranker_features(refit_lists, history, features, item_embeddings=embeddings).localCheckpoint()
        ranker = LearnedRanker(config.ranker).fit(training, inputs.labels, features.columns)
        ranker_s = time.perf_counter() - start
        lists[variant] = reduce(DataFrame.unionByName, [
            as_candidates(blend(scores, tuning.weights, k), f"hybrid[{variant}]").localCheckpoint(),
            as_candidates(ranker.rank(training, k), f"ranker[{variant}]").localCheckpoint(),
        ])
        results[variant] = {"sources": chosen, "hybrid_weights": tuning.weights,
                            "hybrid_validation_ndcg_all_users": tuning.validation_ndcg, "hybrid_s": hybrid_s,
                            "ranker_s": ranker_s, "ranker_best_iteration": ranker.best_iteration,
                            "ranker_eval_users": ranker.eval_users,
                            "ranker_importances": dict(list(ranker.feature_importances().items())[:8])}
        print(variant, json.dumps({k_: v for k_, v in results[variant].items() if k_ != "ranker_eval_users"}), flush=True)
    selection = results[max(args.variants, key=lambda v: len(VARIANTS[v]))]["ranker_eval_users"]
    every = reduce(DataFrame.unionByName, [refit_lists, *lists.values()])
    ndcg = validation_ndcg(every, inputs.validation, k, selection)
    spark.stop()
    lines = [
        f"Validation NDCG@{k} over {len(selection)} held-out validation users (the ranker's early-stopping users; "
        "no list was trained on them, the hybrid's weights were tuned on all validation users):", "",
        "| sources | grid hybrid | ranker | hybrid weights | ranker top features (gain) | hybrid s | ranker fit s |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    for variant in args.variants:
        r = results[variant]
        top = ", ".join(list(r["ranker_importances"])[:4])
        weights = ", ".join(f"{s} {w:g}" for s, w in r["hybrid_weights"].items())
        lines.append(f"| {' + '.join(r['sources'])} | {ndcg[f'hybrid[{variant}]']:.4f} | {ndcg[f'ranker[{variant}]']:.4f} "
                     f"| {weights} | {top} | {r['hybrid_s']:.0f} | {r['ranker_s']:.0f} |")
    lines += ["", "| single source | validation NDCG@10 | refit + recommend s |", "|---|---:|---:|"]
    for name in sources:
        lines.append(f"| {name} | {ndcg[name]:.4f} | {refit_seconds[name]:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    args.json.write_text(json.dumps({"results": results, "ndcg": ndcg, "refit_seconds": refit_seconds}, indent=1))


if __name__ == "__main__":
    main()
