"""The nightly Airflow DAG, run by Airflow itself from its own virtual environment (.venv-airflow,
``make airflow-setup``): it imports cleanly, its task graph is the pipeline's, and
``airflow dags test`` runs it on tiny data, its first tasks as real spark-submits of jobs/submit.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from movielens_subset import write_movielens_subset
from recspark.config import load_config
from recspark.io.delta import DeltaTables
from recspark.pipeline.registry import NIGHTLY, STAGES, WEEKLY, upstream
from tiny_spark import JVM_OPTIONS, TINY_DATA_CONF

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = REPO / ".venv-airflow" / "bin"
DAG_ID = "recspark_nightly"
TUNE_DAG_ID = "recspark_tune"
LOGICAL_DATE = "2026-11-20"

DESCRIBE_DAG = """
import json
from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder={folder!r})
dag = bag.dags.get({dag_id!r})
print(json.dumps({{
    "import_errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "catchup": dag.catchup if dag else None,
    "max_active_runs": dag.max_active_runs if dag else None,
    "tasks": {{
        t.task_id: {{
            "upstream": sorted(t.upstream_task_ids),
            "application": t.application,
            "application_args": t.application_args,
            "retries": t.retries,
            "timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None,
        }}
        for t in (dag.tasks if dag else [])
    }},
}}))
"""


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    """Environment for Airflow commands: its own home and SQLite metadata DB, the DAG folder of
    this checkout, ``spark_default`` = local[2], and the project's venv first on PATH so the
    operator's ``spark-submit`` is the project's pyspark."""
    if not (AIRFLOW_BIN / "airflow").exists():
        pytest.fail("Airflow's virtual environment is missing: run `make airflow-setup` (make test does)")
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        "AIRFLOW_VAR_RECSPARK_HOME": str(REPO),
        "AIRFLOW_VAR_RECSPARK_PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SPARK_LOCAL_IP": "127.0.0.1",
        # quicker JVM start for short jobs (tests/tiny_spark.py)
        "SPARK_SUBMIT_OPTS": JVM_OPTIONS,
    }
    env.pop("PYTHONPATH", None)
    migrate = subprocess.run([AIRFLOW_BIN / "airflow", "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return env


@pytest.fixture(scope="module")
def dag_description(airflow_env):
    script = DESCRIBE_DAG.format(folder=str(REPO / "airflow_dags"), dag_id=DAG_ID)
    done = subprocess.run([AIRFLOW_BIN / "python", "-c", script], env=airflow_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_weekly_tune_dag_runs_the_weekly_stages_and_does_not_catch_up(airflow_env):
    script = DESCRIBE_DAG.format(folder=str(REPO / "airflow_dags"), dag_id=TUNE_DAG_ID)
    done = subprocess.run([AIRFLOW_BIN / "python", "-c", script], env=airflow_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    tune = json.loads(done.stdout.strip().splitlines()[-1])
    assert tune["import_errors"] == {} and tune["catchup"] is False and tune["max_active_runs"] == 1
    assert sorted(tune["tasks"]) == sorted(WEEKLY) == ["tune"]
    task = tune["tasks"]["tune"]
    assert task["application_args"][-3:] == ["--run-date", "{{ ds }}", "tune"] and task["upstream"] == []
    assert task["timeout_s"] == STAGES["tune"].time_limit.total_seconds()


def test_dag_imports_without_errors(dag_description):
    assert dag_description["import_errors"] == {}
    assert dag_description["tasks"], "the DAG has no tasks"
    assert dag_description["catchup"] is True and dag_description["max_active_runs"] == 1


def test_every_nightly_stage_is_one_spark_submit_task_of_jobs_submit(dag_description):
    tasks = dag_description["tasks"]
    assert sorted(tasks) == sorted(NIGHTLY)
    for task_id, task in tasks.items():
        assert task["application"].endswith("/jobs/submit.py")
        assert task["application_args"][-3:] == ["--run-date", "{{ ds }}", task_id]
        assert task["retries"] == 2
        assert task["timeout_s"] == STAGES[task_id].time_limit.total_seconds()


def test_task_graph_is_the_registry_graph(dag_description):
    graph = {task_id: t["upstream"] for task_id, t in dag_description["tasks"].items()}
    assert graph == {name: sorted(upstream(name)) for name in NIGHTLY}
    assert graph["ingest"] == [] and "train-deep" in graph["rerank"] and "evaluate" in graph["publish"]


# Tasks `airflow dags test` runs as real spark-submits; the others are marked successful without
# running. Every task is the same SparkSubmitOperator over jobs/submit.py (checked above), and
# the whole pipeline runs in-process in tests/test_pipeline_integration.py; running all ten
# here cost about 10 minutes of the suite's CPU on two cores for no further coverage.
SUBMITTED_TASKS = ("ingest", "featurize")


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, movielens_dir):
    """MovieLens cut to its first 20 users (about 2,400 ratings, 1,500 movies) and a config
    with absolute paths."""
    root = tmp_path_factory.mktemp("airflow_tiny")
    data = root / "data"
    n_users = write_movielens_subset(movielens_dir, data, max_user_id=20)
    config = {
        "warehouse": str(root / "warehouse"),
        "spark": {"master": "local[2]", "conf": dict(TINY_DATA_CONF)},
        "mlflow": {"tracking_uri": f"sqlite:///{root}/mlflow.db"},
        "ingest": {"preset": "ml-latest-small", "data_dir": str(data)},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, n_users


def test_airflow_dags_test_runs_the_nightly_with_real_spark_submits(airflow_env, tiny_config, dag_description, spark):
    config_path, n_users = tiny_config
    skipped = sorted(set(dag_description["tasks"]) - set(SUBMITTED_TASKS))
    done = subprocess.run(
        [AIRFLOW_BIN / "airflow", "dags", "test", DAG_ID, LOGICAL_DATE, "-c", json.dumps({"config": str(config_path)}),
         "--mark-success-pattern", "^(" + "|".join(skipped) + ")$"],
        env=airflow_env, capture_output=True, text=True, timeout=900,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert "state=success" in log, log[-5000:]
    assert "state=failed" not in log and "up_for_retry" not in log
    config = load_config(config_path)
    tables = DeltaTables.from_config(spark, config)
    runs = tables.read("stage_runs").where(F.col("stage") == F.col("step")).collect()
    assert {(r["stage"], str(r["run_date"])) for r in runs} == {(task, LOGICAL_DATE) for task in SUBMITTED_TASKS}
    assert len({r["run_id"] for r in runs}) == len(SUBMITTED_TASKS)  # one spark-submit each
    split = tables.read("interactions_split")
    assert split.select("user_id").distinct().count() == n_users
    assert split.count() == tables.read("interactions_silver").count() > 2000
