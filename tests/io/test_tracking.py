"""MLflow tracking: nested trial runs, Spark model logging and the champion alias rule."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from recspark.io.tracking import MlflowSettings
from recspark.recommenders.als import ALSRecommender
from recspark.io.tracking import stage_run


@pytest.fixture(scope="module")
def als_model(spark):
    rows = [(u, i, 1.0) for u in range(4) for i in range(3) if (u + i) % 2 == 0]
    frame = spark.createDataFrame(rows, "user_idx int, item_idx int, confidence double")
    return ALSRecommender(rank=2, max_iter=2).fit(frame).als_model


@pytest.mark.unit
def test_alias_moves_only_when_the_new_model_is_better(als_model, tmp_path):
    config = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="tracking-test")
    outcomes, uri = [], None
    for value in (0.5, 0.4, 0.6):
        with stage_run(config, "train-als", "2024-01-01", "local-id") as tracker:
            # One logged model registered three times: each registration is a new version.
            uri = uri or tracker.log_spark_model(als_model, "als_model")
            outcomes.append(tracker.register_if_better(uri, "als-test", "champion", "validation_ndcg_at_10", value))
    assert outcomes == [True, False, True]
    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri)
    champion = client.get_model_version_by_alias("als-test", "champion")
    assert int(champion.version) == 3
    assert champion.tags["recspark.selection_value"] == "0.6"
    assert len(client.search_model_versions("name='als-test'")) == 3


@pytest.mark.unit
def test_child_runs_are_nested_under_the_stage_run(tmp_path):
    config = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="nested-test")
    with stage_run(config, "train-als", "2024-01-01", "local-id") as tracker:
        tracker.log_child_run("trial-0", {"rank": 8}, {"ndcg_at_10": 0.25})
        parent = mlflow.active_run().info.run_id
    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name("nested-test")
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert [(c.data.params["rank"], c.data.metrics["ndcg_at_10"]) for c in children] == [("8", 0.25)]
    stage = client.get_run(parent)
    assert stage.data.tags["recspark.run_id"] == "local-id" and "wall_time_s" in stage.data.metrics


@pytest.mark.unit
def test_disabled_tracking_logs_nothing_and_never_promotes(als_model, tmp_path):
    with stage_run(MlflowSettings(enabled=False), "train-als", "2024-01-01", "local-id") as tracker:
        uri = tracker.log_spark_model(als_model, "als_model")
        assert uri is None
        assert tracker.register_if_better(uri, "als-test", "champion", "m", 1.0) is False
    assert not (tmp_path / "mlflow.db").exists()


STAGE_THAT_HANGS = """
import sys, time
from recspark.io.tracking import MlflowSettings
from recspark.io.tracking import stage_run

config = MlflowSettings(tracking_uri=sys.argv[1], experiment="kill-test")
with stage_run(config, "train-als", "2024-01-01", "run-" + sys.argv[2]):
    print("running", flush=True)
    time.sleep(120)
"""


def start_hanging_stage(tracking_uri: str, tag: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-c", STAGE_THAT_HANGS, tracking_uri, tag], env=env,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "running"
    return process


def runs_by_local_id(tracking_uri: str) -> dict[str, str]:
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("kill-test")
    return {r.data.tags["recspark.run_id"]: r.info.status for r in client.search_runs([experiment.experiment_id])}


@pytest.mark.integration
def test_runs_of_killed_stages_end_as_killed(tmp_path):
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    killed = start_hanging_stage(tracking_uri, "kill9")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert runs_by_local_id(tracking_uri) == {"run-kill9": "RUNNING"}

    terminated = start_hanging_stage(tracking_uri, "term")  # its start marks the kill -9 run KILLED
    terminated.send_signal(signal.SIGTERM)
    assert terminated.wait(timeout=60) == 143
    assert runs_by_local_id(tracking_uri) == {"run-kill9": "KILLED", "run-term": "KILLED"}
