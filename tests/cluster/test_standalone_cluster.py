"""A real Spark standalone cluster: a master and one worker started from the pip pyspark's
``sbin/spark-daemon.sh`` on 127.0.0.1, jobs submitted with ``spark-submit --master spark://...``,
results compared with the same jobs in local mode, daemons stopped afterwards.

The cluster runs featurize and train-als (jobs/submit.py featurize, jobs/submit.py train-als) on the bundled
MovieLens cut to its first 60 users, reading the ingested tables a local run wrote; the local run
continues from a copy of the same warehouse. ``recspark serve`` then runs as an application of the
same cluster and answers a BI query (PyHive) with the tables' numbers.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from chispa import assert_df_equality

import pyspark
from movielens_subset import write_movielens_subset
from recspark.cli import main
from recspark.config import load_config
from recspark.io.delta import DeltaTables
from tiny_spark import JVM_OPTIONS, TINY_DATA_CONF

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).parent
RUN_DATE = "2024-06-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_log_line(log_dir: Path, daemon: str, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for log in log_dir.glob(f"*{daemon}*.out"):
            if text in log.read_text(errors="replace"):
                return
        time.sleep(0.5)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in log_dir.glob("*.out"))
    raise AssertionError(f"{daemon} did not log {text!r} within {timeout_s}s:\n{logs}")


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    """Start master + worker (2 cores, 2 GiB) on free loopback ports; yield (master URL, the
    master's JSON status URL, env)."""
    state = tmp_path_factory.mktemp("spark_standalone")
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOG_DIR": str(state / "logs"),
        "SPARK_PID_DIR": str(state / "pids"),
        "SPARK_WORKER_DIR": str(state / "work"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        # quicker JVM start for short jobs (tests/tiny_spark.py)
        "SPARK_SUBMIT_OPTS": JVM_OPTIONS,
        "SPARK_DAEMON_JAVA_OPTS": JVM_OPTIONS,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    daemon = SPARK_HOME / "sbin" / "spark-daemon.sh"
    master_port, master_ui, worker_ui = free_port(), free_port(), free_port()
    master_url = f"spark://127.0.0.1:{master_port}"
    master = "org.apache.spark.deploy.master.Master"
    worker = "org.apache.spark.deploy.worker.Worker"
    subprocess.run(
        ["bash", daemon, "start", master, "1", "--host", "127.0.0.1", "--port", str(master_port),
         "--webui-port", str(master_ui)],
        env=env, check=True, capture_output=True,
    )
    try:
        wait_for_log_line(state / "logs", "Master", "I have been elected leader")
        subprocess.run(
            ["bash", daemon, "start", worker, "1", "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
             "--webui-port", str(worker_ui), master_url],
            env=env, check=True, capture_output=True,
        )
        wait_for_log_line(state / "logs", "Worker", "Successfully registered with master")
        yield master_url, f"http://127.0.0.1:{master_ui}/json/", env
    finally:
        for cls in (worker, master):
            subprocess.run(["bash", daemon, "stop", cls, "1"], env=env, capture_output=True)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, movielens_dir, spark):
    """MovieLens' first 60 users ingested locally; returns (root, config path)."""
    root = tmp_path_factory.mktemp("cluster_vs_local")
    data = root / "data"
    write_movielens_subset(movielens_dir, data, max_user_id=60)
    config = {
        "warehouse": str(root / "warehouse"),
        "spark": {"master": None, "conf": dict(TINY_DATA_CONF)},
        "mlflow": {"enabled": False},
        "ingest": {"preset": "ml-latest-small", "data_dir": str(data)},
        "als": {"max_iter": 5, "register_model": False,
                "grid": {"implicit_prefs": [True], "rank": [8], "reg_param": [0.1], "alpha": [1.0]}},
    }
    path = root / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["--config", str(path), "--run-date", RUN_DATE, "ingest"]) == 0
    return root, path


def submit(master_url: str, env: dict, stage: str, config: Path) -> None:
    done = subprocess.run(
        [str(SPARK_HOME / "bin" / "spark-submit"), "--master", master_url,
         "--conf", "spark.executor.memory=1g", "--conf", f"spark.pyspark.python={sys.executable}",
         str(REPO / "jobs" / "submit.py"), "--config", str(config), "--run-date", RUN_DATE, stage],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]


def test_cluster_jobs_give_the_local_results(cluster_env, ingested, spark):
    master_url, status_url, env = cluster_env
    root, cluster_config = ingested
    local_config = root / "local.yaml"
    settings = yaml.safe_load(cluster_config.read_text())
    shutil.copytree(root / "warehouse", root / "local_warehouse")
    settings["warehouse"] = str(root / "local_warehouse")
    local_config.write_text(yaml.safe_dump(settings))

    for stage in ("featurize", "train-als"):
        submit(master_url, env, stage, cluster_config)
    with urllib.request.urlopen(status_url, timeout=10) as response:
        status = json.load(response)
    assert status["aliveworkers"] == 1
    assert [app["name"] for app in status["completedapps"]] == ["recspark", "recspark"]
    for stage in ("featurize", "train-als"):
        assert main(["--config", str(local_config), "--set", "spark.master=local[2]", "--run-date", RUN_DATE, stage]) == 0

    on_cluster = DeltaTables.from_config(spark, load_config(cluster_config))
    local = DeltaTables.from_config(spark, load_config(local_config))
    for name, key in (("item_index", ["item_idx"]), ("interactions_split", ["user_idx", "item_idx", "event_ts"])):
        assert_df_equality(
            on_cluster.read(name).drop("run_id").orderBy(*key), local.read(name).drop("run_id").orderBy(*key),
            ignore_nullable=True,
        )
    cluster_factors = on_cluster.read("item_factors").toPandas().sort_values("item_idx")
    local_factors = local.read("item_factors").toPandas().sort_values("item_idx")
    assert len(cluster_factors) == len(local_factors) > 100
    np.testing.assert_allclose(
        np.stack(cluster_factors["features"]), np.stack(local_factors["features"]), rtol=1e-3, atol=1e-4
    )


def test_serve_answers_bi_queries_from_the_cluster(cluster_env, ingested, spark, tmp_path):
    from pyhive import hive

    master_url, status_url, env = cluster_env
    root, cluster_config = ingested
    settings = yaml.safe_load(cluster_config.read_text())
    settings["spark"]["master"] = master_url
    settings["spark"]["conf"] |= {"spark.executor.memory": "1g", "spark.pyspark.python": sys.executable}
    serve_config = tmp_path / "serve.yaml"
    serve_config.write_text(yaml.safe_dump(settings))
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(Path(sys.executable).parent / "recspark"), "--config", str(serve_config),
                                   "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"serve not listening after 120 s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        cursor = hive.connect("127.0.0.1", port, username="bi").cursor()
        cursor.execute("SELECT count(*) FROM interactions_silver")
        expected = DeltaTables.from_config(spark, load_config(cluster_config)).read("interactions_silver").count()
        assert cursor.fetchall() == [(expected,)]
        with urllib.request.urlopen(status_url, timeout=10) as response:
            assert [app["name"] for app in json.load(response)["activeapps"]] == ["recspark"]
    finally:
        server.terminate()
        server.wait(timeout=60)
