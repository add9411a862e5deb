"""The nightly at scale: per-stage wall time and peak memory on synthetic data of growing size.

Usage::

    PYTHONPATH=. .venv/bin/python bench/bench_nightly.py [--sizes 1000000 5000000]
        [--root /tmp/bench_nightly] [--write BENCHMARKS.md]

For each size n (interactions; default 1,000,000) the generator (:mod:`recspark.synthetic`,
``generate`` stage) writes n events of n/100 users x n/200 items (1M: the generator's default
10,000 x 5,000), then every stage runs as its own ``python -m recspark.cli <stage>`` process,
as Airflow runs one spark-submit per stage, over two nights:

1. ``night 1``: every nightly stage in registry order on a fresh warehouse (train-als and rerank
   search and fit on validation in their stages: nothing is tuned yet);
2. ``weekly``: the tune (ALS params and the blends, recorded in ``tuned_params``);
3. the increment: ``generate`` writes 1% more events of the same users, items and tastes
   (``generate.first_event`` = n) and its CSV files are added beside the first ones;
4. ``night 2``: every nightly stage again, the next day: ingest reads only the new files
   (``ingest.incremental=true`` on both nights),
   train-als refits with the tuned params, rerank applies the tuned blends. This is the
   steady-state night the totals, slopes and plot report.

All with the default config (``conf/local.yaml``; ``spark.master=local[2]``, MLflow
in a SQLite file under ``--root``). Per stage: the process's wall time (Spark start-up
included), the stage's own wall time (``stage_runs``), the peak resident memory of the whole
process tree (Python driver + Spark JVM + Python workers, sampled every 0.5 s) and rows/s
(interactions / process wall time). With two or more sizes it adds each stage's log-log slope
(least-squares fit of log wall time on log interactions; 1 = linear) and draws them
(``--plot``, PNG). ``--write`` replaces the section between
``<!-- bench_nightly:start -->`` and ``<!-- bench_nightly:end -->`` of that file (appended when
absent) with the tables, the command and the machine's load average. Every finished step is
recorded in ``<root>/n<size>/steps.json``; ``--resume`` keeps those (up to the first failed one)
and runs the steps not yet finished on the same warehouse, so a long run survives an interruption or
a fix to a failed stage (the table then mixes the steps' commits: say so beside it).
``--first-night-until STAGE`` ends night 1 after that nightly stage (e.g. ``candidates``): the
weekly tune then fits the blends on night 1's candidates, and night 2 is the same steady night.
Night 1's rerank fits the blends in-stage exactly as the tune does (at 5M: 1,251 s) and evaluate
and publish run once more on night 2, so the option only skips a one-off cold-start cost that
night 2 does not pay; at 20M it saves over an hour. The tables then have no night-1 rows for the
skipped stages.
``--rerun-night-2 STAGE...`` runs those night-2 stages once more on the finished warehouse, from
this checkout (rows of kind ``night 2 rerun``): stage changes made after a long run are measured
on the same data and state without repeating the nights (every stage after ingest can rerun a
date; their outputs replace that date's).
``--combine`` adds earlier runs' ``results.json`` rows to the tables, slopes and plot without
rerunning them (``--sizes`` with no value runs nothing), e.g. a 5M run beside the 1M run of the
same day.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from recspark.pipeline.registry import NIGHTLY, WEEKLY  # noqa: E402

FIRST_NIGHT, NEXT_NIGHT = "2025-01-02", "2025-01-03"  # after the generator's default date range (2024)
INCREMENT = 0.01  # night 2's new events, as a share of n
NIGHT_1, WEEKLY_KIND, NIGHT_2, NIGHT_2_RERUN = "night 1", "weekly", "night 2 (+1%)", "night 2 rerun"
START, END = "<!-- bench_nightly:start -->", "<!-- bench_nightly:end -->"


def peak_tree_rss_mib(process: subprocess.Popen, stop: threading.Event, peak: list[float]) -> None:
    """Sample the RSS of ``process`` and its descendants every 0.5 s into ``peak[0]`` (MiB)."""
    root = psutil.Process(process.pid)
    while not stop.is_set():
        try:
            members = [root, *root.children(recursive=True)]
            total = sum(p.memory_info().rss for p in members if p.is_running())
            peak[0] = max(peak[0], total / 2**20)
        except psutil.Error:
            pass
        stop.wait(0.5)


def run_stage(stage: str, overrides: list[str], run_date: str, log_path: Path) -> tuple[float, float, int]:
    """(wall seconds, peak tree RSS MiB, exit code) of one CLI stage process."""
    command = [sys.executable, "-m", "recspark.cli", *[a for o in overrides for a in ("--set", o)],
               "--run-date", run_date, stage]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log_path, "w") as log:
        began = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        stop, peak = threading.Event(), [0.0]
        sampler = threading.Thread(target=peak_tree_rss_mib, args=(process, stop, peak), daemon=True)
        sampler.start()
        code = process.wait()
        stop.set()
        sampler.join()
    return time.perf_counter() - began, peak[0], code


def stage_seconds(warehouse: Path) -> dict[tuple[str, str], float]:
    """(run date ISO, stage) -> the stage's own wall time from stage_runs (rows where step ==
    stage; the last run of that date)."""
    runs = DeltaTable(str(warehouse / "stage_runs")).to_pandas().sort_values("finished_at")
    whole = runs[runs["stage"] == runs["step"]]
    return {(str(date), stage): seconds for date, stage, seconds in
            zip(whole["run_date"], whole["stage"], whole["wall_time_s"])}


def bench_size(n: int, root: Path, resume: bool = False, first_night_until: str | None = None,
               rerun: tuple[str, ...] = ()) -> list[dict]:
    base = root / f"n{n}"
    warehouse, data = base / "wh", base / "data"
    overrides = [
        f"warehouse={warehouse}", "spark.master=local[2]", f"mlflow.tracking_uri=sqlite:///{base}/mlflow.db",
        f"generate.n_interactions={n}", f"generate.n_users={n // 100}", f"generate.n_items={n // 200}",
        f"generate.output_dir={data}", "ingest.preset=synthetic", f"ingest.data_dir={data}", "ingest.incremental=true",
    ]
    (base / "logs").mkdir(parents=True, exist_ok=True)
    increment = [*overrides, f"generate.n_interactions={int(n * INCREMENT)}", f"generate.first_event={n}",
                 f"generate.output_dir={base / 'increment'}"]
    night_1 = NIGHTLY[: NIGHTLY.index(first_night_until) + 1] if first_night_until else NIGHTLY
    steps = [("generate", "setup", FIRST_NIGHT, overrides), *[(s, NIGHT_1, FIRST_NIGHT, overrides) for s in night_1],
             *[(s, WEEKLY_KIND, FIRST_NIGHT, overrides) for s in WEEKLY], ("generate", "setup", NEXT_NIGHT, increment),
             *[(s, NIGHT_2, NEXT_NIGHT, overrides) for s in NIGHTLY], *[(s, NIGHT_2_RERUN, NEXT_NIGHT, overrides)
                                                                        for s in rerun]]
    progress = base / "steps.json"
    rows = json.loads(progress.read_text()) if resume and progress.exists() else []
    rows = rows[: next((i for i, r in enumerate(rows) if r["exit"] != 0), len(rows))]
    if rows:
        print(f"{n:>10,} resuming after {len(rows)} finished steps ({progress})", flush=True)
    finished = {(r["stage"], r["kind"], r["run_date"]) for r in rows}
    for stage, kind, run_date, stage_overrides in [s for s in steps if s[:3] not in finished]:
        log_path = base / "logs" / f"{run_date}-{stage}{'-rerun' if kind == NIGHT_2_RERUN else ''}.log"
        seconds, peak, code = run_stage(stage, stage_overrides, run_date, log_path)
        own = stage_seconds(warehouse) if (warehouse / "stage_runs").exists() else {}
        rows.append({"n": n, "stage": stage, "kind": kind, "run_date": run_date, "wall_s": seconds, "peak_mib": peak,
                     "exit": code, "stage_s": own.get((run_date, stage)) if code == 0 else None})
        progress.write_text(json.dumps(rows, indent=2))
        print(f"{n:>10,} {stage:<16} {kind:<14} {seconds:8.1f} s  peak {peak:8.0f} MiB  exit {code}", flush=True)
        if code != 0:
            print(f"  failed: see {log_path}", flush=True)
            break
        if stage == "generate" and run_date == NEXT_NIGHT:  # the increment's files join the first ones
            for path in sorted((base / "increment" / "interactions").glob("*.csv")):
                shutil.copy(path, data / "interactions" / f"increment-{path.name}")
    own = stage_seconds(warehouse)
    for row in rows:  # steps recorded before each row carried its own stage time
        row.setdefault("stage_s", own.get((row["run_date"], row["stage"])))
    if all(r["exit"] == 0 for r in rows):
        reference = single_node_reference(warehouse, n)
        print(f"{n:>10,} single-node reference: {reference}", flush=True)
        rows.append({"n": n, "stage": "single-node reference", "kind": "reference", "wall_s": reference["total_s"],
                     "peak_mib": 0.0, "exit": 0, "stage_s": None, "reference": reference})
    return rows


def single_node_reference(warehouse: Path, n: int, k: int = 10) -> dict:
    """The training step on one node without Spark: the night's train pairs read from the Delta
    table with delta-rs into pandas, a scipy CSR of ``1 + alpha * confidence``, ``implicit``'s
    ALS with the params and regularisation that train-als recorded in the factors' commit
    metadata, then top-``k`` unseen items for every user (``recommend`` with the seen filter)."""
    import numpy as np
    import polars as pl
    import scipy.sparse as sparse
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    meta = DeltaTable(str(warehouse / "item_factors")).history(1)[0]
    params = {key.removeprefix("recspark.als."): value for key, value in meta.items() if key.startswith("recspark.als.")}
    began = time.perf_counter()
    split = pl.read_delta(str(warehouse / "interactions_split"), columns=["user_idx", "item_idx", "confidence", "split"])
    train = split.filter((pl.col("split") != "test") & pl.col("confidence").is_not_null()).to_pandas()
    values = (1.0 + float(params["alpha"]) * train["confidence"].to_numpy(np.float64)).astype(np.float32)
    matrix = sparse.csr_matrix((values, (train["user_idx"].to_numpy(), train["item_idx"].to_numpy())))
    loaded = time.perf_counter()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=int(params["rank"]), alpha=1.0, iterations=int(params["max_iter"]),
                                        regularization=float(params.get("implicit_regularization", params["reg_param"])),
                                        random_state=int(params["seed"]))
        model.fit(matrix, show_progress=False)
        fitted = time.perf_counter()
        users = np.unique(train["user_idx"].to_numpy())
        model.recommend(users, matrix[users], N=k, filter_already_liked_items=True)
    done = time.perf_counter()
    return {"n": n, "pairs": int(matrix.nnz), "load_s": loaded - began, "fit_s": fitted - loaded,
            "recommend_s": done - fitted, "total_s": done - began, "engine": params.get("engine", "?")}


def log_log_slopes(rows: list[dict]) -> dict[str, float]:
    """Per stage with a successful run at two or more sizes: the least-squares slope of
    log(wall s) on log(interactions)."""
    import numpy as np

    slopes = {}
    for stage in dict.fromkeys(r["stage"] for r in rows):
        points = [(r["n"], r["wall_s"]) for r in rows if r["stage"] == stage and r["exit"] == 0]
        if len({n for n, _ in points}) >= 2:
            x, y = np.log([n for n, _ in points]), np.log([w for _, w in points])
            slopes[stage] = float(np.polyfit(x, y, 1)[0])
    return slopes


def plot_scaling(rows: list[dict], path: Path) -> None:
    """Log-log plot of every stage's wall time against interactions, with the linear guide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for stage in dict.fromkeys(r["stage"] for r in rows):
        points = sorted((r["n"], r["wall_s"]) for r in rows if r["stage"] == stage and r["exit"] == 0)
        axes.plot([n for n, _ in points], [w for _, w in points], marker="o", label=stage)
    sizes = sorted({r["n"] for r in rows})
    axes.plot(sizes, [10.0 * n / sizes[0] for n in sizes], "k--", linewidth=1, label="linear (slope 1)")
    axes.set(xscale="log", yscale="log", xlabel="interactions", ylabel="wall time per stage (s)",
             title="recspark nightly: stage wall time vs interactions (2 cores)")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(rows: list[dict], command: str, load: tuple[list[float], list[float]], plot: str | None = None) -> str:
    sizes = sorted({r["n"] for r in rows})
    lines = [
        "## The nightly at scale (issue 13)", "",
        "```", command, "```", "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on the 2-core, 24 GiB development machine, "
        f"load average {load[0][0]:.1f} at the start and {load[1][0]:.1f} at the end "
        + ("(above the 2 cores: the machine was shared with other jobs, times are upper bounds). "
           if max(load[0][0], load[1][0]) > 2.5 else "(quiet machine). ")
        + "One process per stage, as "
        "Airflow runs them: 'wall' includes Spark start-up, 'stage' is the stage's own time (stage_runs), peak "
        "memory is the whole process tree (driver, JVM, Python workers). Night 1 runs on a fresh warehouse (its "
        "stages search and fit on validation themselves), the weekly tune follows it, and night 2 is the next "
        "day with 1% new events (new files only, tuned params and blends applied): the steady-state night.", "",
        "| interactions | stage | kind | wall (s) | stage (s) | peak memory (MiB) | interactions/s |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    references = [r["reference"] for r in rows if r["kind"] == "reference"]
    rows = [r for r in rows if r["kind"] != "reference"]
    for r in rows:
        stage_s = f"{r['stage_s']:.1f}" if r.get("stage_s") is not None else "-"
        failed = "" if r["exit"] == 0 else " (failed)"
        lines.append(f"| {r['n']:,} | {r['stage']}{failed} | {r['kind']} | {r['wall_s']:.1f} | {stage_s} | "
                     f"{r['peak_mib']:,.0f} | {r['n'] / r['wall_s']:,.0f} |")
    kinds = (NIGHT_1, WEEKLY_KIND, NIGHT_2)
    lines += ["", "| interactions | " + " | ".join(f"{kind} total (s)" for kind in kinds)
              + f" | {NIGHT_2} peak memory (MiB) |", "| ---: |" + " ---: |" * (len(kinds) + 1)]
    for n in sizes:
        cells = []
        for kind in kinds:
            runs = [r for r in rows if r["n"] == n and r["kind"] == kind]
            expected = len(WEEKLY) if kind == WEEKLY_KIND else len(NIGHTLY)
            complete = len(runs) == expected and all(r["exit"] == 0 for r in runs)
            cells.append(f"{sum(r['wall_s'] for r in runs):.0f}" + ("" if complete else " (incomplete)"))
        peak = max((r["peak_mib"] for r in rows if r["n"] == n and r["kind"] == NIGHT_2), default=0)
        lines.append(f"| {n:,} | " + " | ".join(cells) + f" | {peak:,.0f} |")
    for n in sizes:
        reruns = {r["stage"]: r for r in rows if r["n"] == n and r["kind"] == NIGHT_2_RERUN and r["exit"] == 0}
        if reruns:
            night = [reruns.get(r["stage"], r) for r in rows if r["n"] == n and r["kind"] == NIGHT_2]
            lines += ["", f"{n:,}: night 2 with {', '.join(reruns)} rerun from this checkout: "
                      f"{sum(r['wall_s'] for r in night):.0f} s (peak {max(r['peak_mib'] for r in night):,.0f} MiB)."]
    if references:
        lines += ["", "Single-node reference for the training step (same night's train pairs and ALS params, no Spark: "
                  "delta-rs -> pandas -> scipy CSR -> `implicit` ALS, then top-10 unseen items for every user), "
                  "beside train-als (fit + factor tables + MLflow) and the candidates stage (every source's top-100):",
                  "", "| interactions | train pairs | load (s) | fit (s) | top-10 all users (s) | reference total (s) | "
                  "train-als stage (s) | train-als engine |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for ref in references:
            stage = next((r.get("stage_s") for r in rows
                          if r["n"] == ref["n"] and r["stage"] == "train-als" and r["kind"] == NIGHT_2), None)
            lines.append(f"| {ref['n']:,} | {ref['pairs']:,} | {ref['load_s']:.1f} | {ref['fit_s']:.1f} | "
                         f"{ref['recommend_s']:.1f} | {ref['total_s']:.1f} | "
                         f"{'-' if stage is None else f'{stage:.1f}'} | {ref['engine']} |")
    slopes = log_log_slopes([r for r in rows if r["kind"] == NIGHT_2])
    if slopes:
        lines += ["", f"| stage | log-log slope of {NIGHT_2} (wall time vs interactions; target <= 1.1) |",
                  "| --- | ---: |"]
        lines += [f"| {stage} | {slope:.2f} |" for stage, slope in slopes.items()]
    if plot:
        lines += ["", f"![stage wall time vs interactions, log-log]({plot})"]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{START}\n{section}{END}\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--root", default="/tmp/bench_nightly")
    parser.add_argument("--write", help="markdown file whose bench_nightly section is replaced")
    parser.add_argument("--plot", help="PNG path for the log-log plot (two or more sizes)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished steps recorded in <root>/n<size>/steps.json and run the rest")
    parser.add_argument("--first-night-until", choices=NIGHTLY, metavar="STAGE",
                        help="end night 1 after this nightly stage; the tune fits the blends on its candidates")
    parser.add_argument("--rerun-night-2", nargs="+", default=[], choices=NIGHTLY[1:], metavar="STAGE",
                        help="after night 2, run these stages again from this checkout (kind 'night 2 rerun')")
    parser.add_argument("--combine", nargs="+", default=[], metavar="RESULTS_JSON",
                        help="earlier runs' results.json: their sizes are tabled and plotted beside this run's "
                             "(a size in a later file or measured now replaces an earlier file's); say in "
                             "BENCHMARKS.md when each was run")
    args = parser.parse_args(argv)
    root = Path(args.root)
    load_start = list(os.getloadavg())
    rows = []
    for path in args.combine:  # a size in a later file, or measured now, replaces an earlier file's
        earlier = json.loads(Path(path).read_text())
        rows = [r for r in rows if r["n"] not in {e["n"] for e in earlier}] + earlier
    rows = [r for r in rows if r["n"] not in args.sizes]
    for n in args.sizes:  # results.json after each size, so a long run's finished sizes survive an interruption
        rows += bench_size(n, root, args.resume, args.first_night_until, tuple(args.rerun_night_2))
        (root / "results.json").write_text(json.dumps(rows, indent=2))
    load_end = list(os.getloadavg())
    command = "PYTHONPATH=. .venv/bin/python bench/bench_nightly.py --sizes " + " ".join(map(str, args.sizes))
    if args.first_night_until:
        command += f" --first-night-until {args.first_night_until}"
    if args.rerun_night_2:
        command += " --rerun-night-2 " + " ".join(args.rerun_night_2)
    if args.combine:
        command += " --combine " + " ".join(args.combine)
    plot = None
    if args.plot and len({r["n"] for r in rows}) >= 2:
        plot_scaling([r for r in rows if r["kind"] == NIGHT_2], Path(args.plot))
        plot = os.path.relpath(args.plot, Path(args.write).parent) if args.write else args.plot
        command += f" --plot {args.plot}"
    section = markdown(rows, command, (load_start, load_end), plot)
    print(section)
    if args.write:
        write_section(Path(args.write), section)


if __name__ == "__main__":
    main(sys.argv[1:])
