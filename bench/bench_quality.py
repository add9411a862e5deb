"""Quality benchmark: recspark's split of MovieLens, peers (implicit, cornac) and recspark lists
scored side by side with recspark's own ranking metrics at k = 10.

Per protocol (``user``: per-user stratified 75/25 seed 42; ``item``: per-item stratified 75/25
seed 42, like Microsoft Recommenders' MovieLens benchmark), in Spark:

1. ``random_stratified_split`` of the ratings (ids as strings, like the pipeline's silver table,
   so a warehouse built with the same split settings has the same test pairs);
2. a validation carve of train (same stratification, ``--validation-ratio``, seed 43) for tuning;
3. the three splits exported as ``OUT/<protocol>/split.parquet`` (user_idx, item_idx = the
   MovieLens ids as ints, rating, event_ts, split);
4. each peer runs as a subprocess in its bench-only venv (``bench/setup_peers.sh``) on that file
   (``bench/quality_peers.py``: tuned on validation, refit on train + validation, top-10 for the
   test users without seen items);
5. every list is scored against the test pairs with :func:`recspark.evaluation.ranking_metrics`.

recspark lists: ``--recspark-candidates WAREHOUSE/candidates`` reads a warehouse's candidates
Delta table with polars and maps its indexes to MovieLens ids through the ``user_index`` and
``item_index`` tables beside it; it is scored under ``--recspark-protocol`` only (the protocol
the warehouse was built with). ``--lists NAME=PATH`` adds any Parquet list (user_idx, item_idx
as MovieLens ids, rank).

Output: a markdown section between markers in BENCHMARKS.md (``--benchmarks``) and a JSON.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.io.session import SparkSettings
from recspark.featurize.splits import SplitSettings
from recspark.evaluation import ranking_metrics
from recspark.featurize.splits import random_stratified_split
from recspark.io.session import build_spark_session

REPO = Path(__file__).resolve().parent.parent
K = 10
SEED = 42
PROTOCOLS = {"user": "per-user stratified 75/25, seed 42", "item": "per-item stratified 75/25, seed 42"}
PEER_VENV = {"implicit_als": "peers", "implicit_bm25": "peers", "cornac_bpr": "cornac", "cornac_bivae": "cornac"}
BEGIN, END = "<!-- bench_quality:begin -->", "<!-- bench_quality:end -->"
METRICS = ["ndcg@k", "precision@k", "recall@k", "map@k", "hit_rate@k", "user_coverage"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ratings", default=str(REPO / "data" / "ml-latest-small" / "ratings.csv"))
    p.add_argument("--out-dir", default="/tmp/bench_quality")
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    p.add_argument("--validation-ratio", type=float, default=0.1, help="share of train carved for tuning")
    p.add_argument("--peers", nargs="*", default=list(PEER_VENV), choices=list(PEER_VENV))
    p.add_argument("--peer-venvs", default="/work/venvs", help="where bench/setup_peers.sh made the venvs")
    p.add_argument("--recspark-candidates", help="a warehouse's candidates Delta table")
    p.add_argument("--recspark-protocol", default="user", choices=list(PROTOCOLS))
    p.add_argument("--lists", nargs="*", default=[], help="NAME=PATH.parquet lists scored on every protocol")
    p.add_argument("--benchmarks", default=str(REPO / "BENCHMARKS.md"), help="'' to leave it alone")
    p.add_argument("--json", default="/tmp/bench_quality/results.json")
    return p.parse_args(argv)


def ratings_frame(spark: SparkSession, path: str) -> DataFrame:
    """(user_id, item_id strings, rating, event_ts) of a MovieLens ratings.csv."""
    raw = spark.read.csv(path, header=True, schema="userId string, movieId string, rating double, timestamp long")
    return raw.select(
        F.col("userId").alias("user_id"), F.col("movieId").alias("item_id"), "rating",
        F.col("timestamp").cast("timestamp").alias("event_ts"),
    )


def protocol_split(ratings: DataFrame, stratify_by: str, validation_ratio: float) -> DataFrame:
    """(user_idx, item_idx, rating, event_ts, split): the protocol's test share, then a
    validation carve of train with the same stratification and seed + 1."""
    first = random_stratified_split(ratings, SplitSettings(stratify_by=stratify_by, test_ratio=0.25, seed=SEED))
    train = first.where(F.col("split") == "train").drop("split")
    carve = random_stratified_split(train, SplitSettings(stratify_by=stratify_by, test_ratio=validation_ratio,
                                                       seed=SEED + 1))
    carve = carve.withColumn("split", F.when(F.col("split") == "test", "validation").otherwise("train"))
    both = first.where(F.col("split") == "test").unionByName(carve)
    return both.select(F.col("user_id").cast("int").alias("user_idx"), F.col("item_id").cast("int").alias("item_idx"),
                       "rating", "event_ts", "split")


def run_peer(name: str, split_path: Path, out_dir: Path, venvs: Path) -> Path | None:
    python = venvs / PEER_VENV[name] / "bin" / "python"
    if not python.exists():
        print(f"{name}: no venv at {python.parent.parent} (run bench/setup_peers.sh); skipped", flush=True)
        return None
    start = time.perf_counter()
    subprocess.run([str(python), str(REPO / "bench" / "quality_peers.py"), str(split_path), str(out_dir), name],
                   check=True, env=os.environ | {"OPENBLAS_NUM_THREADS": "1"})
    print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    return out_dir / f"{name}.parquet"


def recspark_lists(candidates_path: str) -> dict[str, "pl.DataFrame"]:
    """Source -> (user_idx, item_idx as MovieLens ids, score, rank) from a warehouse."""
    warehouse = Path(candidates_path).parent
    users = pl.read_delta(str(warehouse / "user_index")).select(
        pl.col("user_idx"), pl.col("user_id").cast(pl.Int32).alias("user"))
    items = pl.read_delta(str(warehouse / "item_index")).select(
        pl.col("item_idx"), pl.col("item_id").cast(pl.Int32).alias("item"))
    candidates = pl.read_delta(candidates_path).join(users, on="user_idx").join(items, on="item_idx")
    out = {}
    for source in sorted(candidates["source"].unique().to_list()):
        part = candidates.filter(pl.col("source") == source)
        out[f"recspark {source}"] = part.select(pl.col("user").alias("user_idx"), pl.col("item").alias("item_idx"),
                                                "score", pl.col("rank").cast(pl.Int32))
    return out


def recorded_champion(candidates_path: str) -> str | None:
    """The champion rerank recorded in the candidates table's latest commit (None without one)."""
    from deltalake import DeltaTable

    history = DeltaTable(candidates_path).history(1)
    return history[0].get("recspark.champion") if history else None


def score(spark: SparkSession, lists: DataFrame, test: DataFrame) -> dict[str, float]:
    metrics = ranking_metrics(lists.select("user_idx", "item_idx", "rank"), test, K, "user_idx", "item_idx")
    return {m: metrics[m] for m in METRICS} | {"n_users": metrics["n_users"]}


def markdown(results: list[dict], command: str, notes: list[str]) -> str:
    today = dt.date.today().isoformat()
    lines = [
        BEGIN, "## Quality against peer libraries (issue 15)", "",
        f"Measured on {today} on the 2-core development machine (shared with other jobs). Command:", "",
        "```bash", "bash bench/setup_peers.sh   # once: bench-only venvs under /work/venvs", command, "```", "",
        "MovieLens latest-small (100,836 ratings, every rating counts as an interaction). Each protocol's test pairs "
        "are recspark's `random_stratified_split` (ids as strings, like the pipeline); tuning uses a carve of train "
        "(same stratification, seed 43), never the test pairs; final models are refit on train + validation and "
        "recommend 10 unseen items per test user. Every list is scored by `recspark.evaluation.ranking_metrics` "
        "at k = 10.", "",
        "| protocol | model | NDCG@10 | precision@10 | recall@10 | MAP@10 | hit rate@10 | users | tuned on validation |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (r["protocol"], -r["metrics"]["ndcg@k"])):
        m = r["metrics"]
        lines.append(
            f"| {r['protocol']} | {r['model']} | {m['ndcg@k']:.4f} | {m['precision@k']:.4f} | {m['recall@k']:.4f} | "
            f"{m['map@k']:.4f} | {m['hit_rate@k']:.4f} | {int(m['n_users'])} | {r['tuning']} |")
    lines += [""] + [f"* {n}" for n in notes] + ["", END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def tuning_note(info_path: Path) -> str:
    if not info_path.exists():
        return "-"
    chosen = json.loads(info_path.read_text())["chosen"]
    params = ", ".join(f"{k}={v}" for k, v in chosen["params"].items())
    if "validation_ndcg@10" in chosen:
        return f"{params} (val NDCG {chosen['validation_ndcg@10']:.4f})"
    return f"fixed: {params}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out_root = Path(args.out_dir)
    spark = build_spark_session(SparkSettings(master="local[2]", app_name="bench-quality", conf={
        "spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false", "spark.driver.memory": "4g"}))
    ratings = ratings_frame(spark, args.ratings).cache()
    extra = {name: path for name, path in (item.split("=", 1) for item in args.lists)}
    recspark = recspark_lists(args.recspark_candidates) if args.recspark_candidates else {}
    results = []
    for protocol in args.protocols:
        out_dir = out_root / protocol
        split_path = out_dir / "split.parquet"
        split = protocol_split(ratings, protocol, args.validation_ratio)
        split.coalesce(1).write.mode("overwrite").parquet(str(split_path))
        counts = {r["split"]: r["count"] for r in spark.read.parquet(str(split_path)).groupBy("split").count().collect()}
        print(f"{protocol}: {counts}", flush=True)
        test = spark.read.parquet(str(split_path)).where(F.col("split") == "test").select("user_idx", "item_idx")
        lists: dict[str, tuple[DataFrame, str]] = {}
        for peer in args.peers:
            path = run_peer(peer, split_path, out_dir, Path(args.peer_venvs))
            if path is not None:
                lists[peer] = (spark.read.parquet(str(path)), tuning_note(path.with_suffix(".json")))
        for name, path in extra.items():
            lists[name] = (spark.read.parquet(path), "-")
        if protocol == args.recspark_protocol:
            for name, frame in recspark.items():
                lists[name] = (spark.createDataFrame(frame.to_pandas()), "pipeline (validation carve)")
        for name, (frame, tuning) in lists.items():
            metrics = score(spark, frame, test)
            results.append({"protocol": protocol, "model": name, "metrics": metrics, "tuning": tuning})
            print(f"{protocol} {name}: ndcg@10 {metrics['ndcg@k']:.4f}", flush=True)
    spark.stop()
    command = "PYTHONPATH=. .venv/bin/python bench/bench_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    notes = [
        f"Protocols: {', '.join(f'`{p}` = {PROTOCOLS[p]}' for p in args.protocols)}; validation carve "
        f"{args.validation_ratio} of train.",
        "implicit: ALS grid factors {64, 128} x regularization {0.01, 0.1} x alpha {1, 10} x iterations {15, 30}; "
        "BM25 item-item grid K1 {0.6, 1.2} x B {0.5, 0.75} x K {50, 200}; binary interactions.",
        "cornac: Microsoft Recommenders' MovieLens settings, not tuned (BPR k 200, 100 iterations, lr 0.01, "
        "lambda 0.001; BiVAE k 50, encoder [100], tanh, Poisson, 500 epochs, batch 128, lr 0.001, CPU).",
    ]
    if args.recspark_candidates:
        notes.append(
            f"recspark rows (`{args.recspark_protocol}` protocol only): the candidates of a warehouse built by "
            "`recspark run` with the default config on the same data and split (ids as strings, per-user 75/25, "
            "seed 42), cut at rank 10; `ranker` and `hybrid` are the blends rerank trained/tuned on the validation "
            f"carve; the champion chosen on validation and published: "
            f"`{recorded_champion(args.recspark_candidates) or 'none recorded'}`.")
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"command": command, "results": results}, indent=1))
    if args.benchmarks:
        write_section(Path(args.benchmarks), markdown(results, command, notes))
    print(markdown(results, command, notes))


if __name__ == "__main__":
    main()
