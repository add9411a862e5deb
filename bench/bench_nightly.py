"""The nightly at scale: per-stage wall time and peak memory on synthetic data of growing size.

Usage::

    PYTHONPATH=. .venv/bin/python bench/bench_nightly.py [--sizes 1000000 5000000]
        [--root /tmp/bench_nightly] [--write BENCHMARKS.md]

For each size n (interactions; default 1,000,000) the generator (:mod:`recspark.synthetic`,
``generate`` stage) writes n events of n/100 users x n/200 items (1M: the generator's default
10,000 x 5,000), then every stage runs as its own ``python -m recspark.cli <stage>`` process,
as Airflow runs one spark-submit per stage: generate, ingest, featurize, the weekly tune (once,
before the first night; not part of the nightly total), then the other nightly stages in
registry order with the default config (``conf/local.yaml``; ``spark.master=local[2]``, MLflow
in a SQLite file under ``--root``). Per stage: the process's wall time (Spark start-up
included), the stage's own wall time (``stage_runs``), the peak resident memory of the whole
process tree (Python driver + Spark JVM + Python workers, sampled every 0.5 s) and rows/s
(interactions / process wall time). ``--write`` replaces the section between
``<!-- bench_nightly:start -->`` and ``<!-- bench_nightly:end -->`` of that file (appended when
absent) with the tables, the command and the machine's load average.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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

RUN_DATE = "2025-01-02"  # after the generator's default date range (2024)
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


def run_stage(stage: str, overrides: list[str], log_path: Path) -> tuple[float, float, int]:
    """(wall seconds, peak tree RSS MiB, exit code) of one CLI stage process."""
    command = [sys.executable, "-m", "recspark.cli", *[a for o in overrides for a in ("--set", o)],
               "--run-date", RUN_DATE, stage]
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


def stage_seconds(warehouse: Path) -> dict[str, float]:
    """The stages' own wall time from stage_runs (rows where step == stage)."""
    runs = DeltaTable(str(warehouse / "stage_runs")).to_pandas()
    whole = runs[runs["stage"] == runs["step"]]
    return dict(zip(whole["stage"], whole["wall_time_s"]))


def bench_size(n: int, root: Path) -> list[dict]:
    base = root / f"n{n}"
    warehouse, data = base / "wh", base / "data"
    overrides = [
        f"warehouse={warehouse}", "spark.master=local[2]", f"mlflow.tracking_uri=sqlite:///{base}/mlflow.db",
        f"generate.n_interactions={n}", f"generate.n_users={n // 100}", f"generate.n_items={n // 200}",
        f"generate.output_dir={data}", "ingest.preset=synthetic", f"ingest.data_dir={data}",
    ]
    (base / "logs").mkdir(parents=True, exist_ok=True)
    order = ["generate", NIGHTLY[0], NIGHTLY[1], *WEEKLY, *NIGHTLY[2:]]
    rows = []
    for stage in order:
        seconds, peak, code = run_stage(stage, overrides, base / "logs" / f"{stage}.log")
        kind = "weekly" if stage in WEEKLY else "nightly" if stage in NIGHTLY else "setup"
        rows.append({"n": n, "stage": stage, "kind": kind, "wall_s": seconds, "peak_mib": peak, "exit": code})
        print(f"{n:>10,} {stage:<16} {kind:<8} {seconds:8.1f} s  peak {peak:8.0f} MiB  exit {code}", flush=True)
        if code != 0:
            print(f"  failed: see {base / 'logs' / f'{stage}.log'}", flush=True)
            break
    own = stage_seconds(warehouse)
    for row in rows:
        row["stage_s"] = own.get(row["stage"])
    return rows


def markdown(rows: list[dict], command: str, load: tuple[list[float], list[float]]) -> str:
    sizes = sorted({r["n"] for r in rows})
    lines = [
        "## The nightly at scale (issue 13)", "",
        "```", command, "```", "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on the 2-core, 24 GiB development machine, "
        f"load average {load[0][0]:.1f} at the start and {load[1][0]:.1f} at the end "
        "(the machine was shared with other sessions' jobs: times are upper bounds). One process per stage, as "
        "Airflow runs them: 'wall' includes Spark start-up, 'stage' is the stage's own time (stage_runs), peak "
        "memory is the whole process tree (driver, JVM, Python workers). The weekly tune runs once before the "
        "first night and is not in the nightly total.", "",
        "| interactions | stage | kind | wall (s) | stage (s) | peak memory (MiB) | interactions/s |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        stage_s = f"{r['stage_s']:.1f}" if r.get("stage_s") is not None else "-"
        failed = "" if r["exit"] == 0 else " (failed)"
        lines.append(f"| {r['n']:,} | {r['stage']}{failed} | {r['kind']} | {r['wall_s']:.1f} | {stage_s} | "
                     f"{r['peak_mib']:,.0f} | {r['n'] / r['wall_s']:,.0f} |")
    lines += ["", "| interactions | nightly total (s) | nightly peak memory (MiB) | weekly tune (s) |",
              "| ---: | ---: | ---: | ---: |"]
    for n in sizes:
        nightly = [r for r in rows if r["n"] == n and r["kind"] == "nightly"]
        tune = [r for r in rows if r["n"] == n and r["kind"] == "weekly"]
        complete = len(nightly) == len(NIGHTLY) and all(r["exit"] == 0 for r in nightly)
        total = f"{sum(r['wall_s'] for r in nightly):.0f}" + ("" if complete else " (incomplete)")
        lines.append(f"| {n:,} | {total} | {max((r['peak_mib'] for r in nightly), default=0):,.0f} | "
                     f"{sum(r['wall_s'] for r in tune):.0f} |")
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--root", default="/tmp/bench_nightly")
    parser.add_argument("--write", help="markdown file whose bench_nightly section is replaced")
    args = parser.parse_args(argv)
    root = Path(args.root)
    load_start = list(os.getloadavg())
    rows = [row for n in args.sizes for row in bench_size(n, root)]
    load_end = list(os.getloadavg())
    (root / "results.json").write_text(json.dumps(rows, indent=2))
    command = "PYTHONPATH=. .venv/bin/python bench/bench_nightly.py --sizes " + " ".join(map(str, args.sizes))
    section = markdown(rows, command, (load_start, load_end))
    print(section)
    if args.write:
        write_section(Path(args.write), section)


if __name__ == "__main__":
    main(sys.argv[1:])
