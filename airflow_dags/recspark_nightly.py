"""The recspark DAGs: ``recspark_nightly`` (one SparkSubmitOperator per nightly stage, each
running ``jobs/submit.py <stage>``) and ``recspark_tune`` (weekly: the tune stage, which searches
hyperparameters and records them in the ``tuned_params`` table that the nightly refits use).

The tasks, their dependencies and time limits come from ``recspark_pipeline.json`` beside this
file, which ``python -m recspark.pipeline.registry airflow_dags/recspark_pipeline.json`` writes
from the stage registry (a test checks it is current): a stage depends on the earlier stages that
write a table it reads; ``stages`` are the nightly DAG's, ``weekly`` the tune DAG's. Task ids
are the stage names.

Runs in Airflow's own virtual environment (``make airflow-setup``); it imports nothing from
recspark, so the Airflow stack never meets the pyspark 3.5 one. What it needs from Airflow:

* connection ``spark_default``: master
  (``local[*]``, ``spark://host:7077``, ``yarn``, ``k8s://...``), deploy mode, queue, and
  ``spark-binary`` (``spark-submit`` must be on the worker's PATH: the project's venv ``bin`` or
  a Spark distribution);
* Variables ``recspark_home`` (the checkout holding ``jobs/``; default: the folder above this
  file) and ``recspark_python`` (the interpreter with recspark installed, given to Spark as
  PYSPARK_PYTHON; default ``<recspark_home>/.venv/bin/python``);
* the DAG param ``config``: the recspark YAML for this environment (default: the environment
  variable ``RECSPARK_CONFIG`` where the DAG is parsed, else ``conf/local.yaml`` of the
  checkout; use absolute paths for the warehouse and MLflow in it,
  since spark-submit does not run in the checkout). Trigger with ``-c '{"config": "..."}'``.

Every task gets ``--run-date {{ ds }}``: with Airflow 3's cron trigger timetable that is the
night the run fires, so a backfill (``airflow backfill create --dag-id recspark_nightly
--from-date ... --to-date ...``) re-runs exact past nights, and re-running a night replaces only
that night's partition. ``catchup`` is on so missed nights are run; ``max_active_runs=1``
because the stages of one night replace shared tables (candidates, factors) that the next night
reads. Retries twice, 10 minutes apart; per-task time limits below.

``recspark_tune`` runs on Sundays at 14:00 UTC, away from the 02:00 nightly: both take the
warehouse lock, so a tune that meets a running night fails fast and its retries wait it out. It
does not catch up (only the newest tuning matters); trigger it once after the first night (the
tune needs the split that featurize writes) and whenever the data changes character.
"""
from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param

DAG_ID = "recspark_nightly"
TUNE_DAG_ID = "recspark_tune"
DEFAULT_HOME = str(Path(__file__).resolve().parent.parent)
DEFAULT_CONFIG = os.environ.get("RECSPARK_CONFIG", f"{DEFAULT_HOME}/conf/local.yaml")
HOME = "{{ var.value.get('recspark_home', '" + DEFAULT_HOME + "') }}"
PYTHON = "{{ var.value.get('recspark_python', var.value.get('recspark_home', '" + DEFAULT_HOME + "') ~ '/.venv/bin/python') }}"

SPEC = json.loads((Path(__file__).resolve().parent / "recspark_pipeline.json").read_text())
PIPELINE, WEEKLY = SPEC["stages"], SPEC["weekly"]
PARAMS = {"config": Param(DEFAULT_CONFIG, type="string", description="recspark YAML config")}
DEFAULT_ARGS = {"owner": "recspark", "retries": 2, "retry_delay": timedelta(minutes=10)}


def stage_tasks(stages: list[dict]) -> dict:
    """One spark-submit task per stage of the spec, wired to its upstream stages."""
    tasks = {
        stage["name"]: SparkSubmitOperator(
            task_id=stage["name"],
            conn_id="spark_default",
            application=f"{HOME}/jobs/submit.py",
            application_args=["--config", "{{ params.config }}", "--run-date", "{{ ds }}", stage["name"]],
            name=f"recspark-{stage['name']}-{{{{ ds }}}}",
            env_vars={"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON},
            execution_timeout=timedelta(seconds=stage["time_limit_s"]),
            doc=stage["description"],
        )
        for stage in stages
    }
    for stage in stages:
        for upstream in stage["upstream"]:
            tasks[upstream] >> tasks[stage["name"]]
    return tasks


with DAG(
    dag_id=DAG_ID,
    description="recspark: ingest, features, ALS / item-item / embeddings / deep, candidates, evaluate, publish",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=12),
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["recspark"],
    doc_md=__doc__,
) as dag:
    stage_tasks(PIPELINE)

with DAG(
    dag_id=TUNE_DAG_ID,
    description="recspark: weekly hyperparameter search (tuned_params) for the nightly refits",
    schedule="0 14 * * 0",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["recspark"],
    doc_md=__doc__,
) as tune_dag:
    stage_tasks(WEEKLY)
