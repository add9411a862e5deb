"""The recspark nightly DAG: one SparkSubmitOperator per stage, each running ``jobs/<stage>.py``.

    ingest >> featurize >> [train_als, item_similarity, embed_items] >> train_deep
           >> candidates >> rerank >> evaluate >> publish

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
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param

DAG_ID = "recspark_nightly"
DEFAULT_HOME = str(Path(__file__).resolve().parent.parent)
DEFAULT_CONFIG = os.environ.get("RECSPARK_CONFIG", f"{DEFAULT_HOME}/conf/local.yaml")
HOME = "{{ var.value.get('recspark_home', '" + DEFAULT_HOME + "') }}"
PYTHON = "{{ var.value.get('recspark_python', var.value.get('recspark_home', '" + DEFAULT_HOME + "') ~ '/.venv/bin/python') }}"

# task id -> (job file under jobs/, time limit); the order and fan-out are wired below.
TASKS = {
    "ingest": ("ingest.py", timedelta(hours=1)),
    "featurize": ("featurize.py", timedelta(hours=1)),
    "train_als": ("train_als.py", timedelta(hours=3)),
    "item_similarity": ("item_similarity.py", timedelta(hours=2)),
    "embed_items": ("embed_items.py", timedelta(hours=2)),
    "train_deep": ("train_deep.py", timedelta(hours=4)),
    "candidates": ("candidates.py", timedelta(hours=2)),
    "rerank": ("rerank.py", timedelta(hours=2)),
    "evaluate": ("evaluate.py", timedelta(hours=1)),
    "publish": ("publish.py", timedelta(minutes=30)),
}

with DAG(
    dag_id=DAG_ID,
    description="recspark: ingest, features, ALS / item-item / embeddings / deep, candidates, evaluate, publish",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=12),
    default_args={"owner": "recspark", "retries": 2, "retry_delay": timedelta(minutes=10)},
    params={"config": Param(DEFAULT_CONFIG, type="string", description="recspark YAML config")},
    tags=["recspark"],
    doc_md=__doc__,
) as dag:
    tasks = {
        task_id: SparkSubmitOperator(
            task_id=task_id,
            conn_id="spark_default",
            application=f"{HOME}/jobs/{job}",
            application_args=["--config", "{{ params.config }}", "--run-date", "{{ ds }}"],
            name=f"recspark-{task_id}-{{{{ ds }}}}",
            env_vars={"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON},
            execution_timeout=limit,
        )
        for task_id, (job, limit) in TASKS.items()
    }
    models = [tasks["train_als"], tasks["item_similarity"], tasks["embed_items"]]
    tasks["ingest"] >> tasks["featurize"] >> models
    models >> tasks["train_deep"] >> tasks["candidates"] >> tasks["rerank"] >> tasks["evaluate"] >> tasks["publish"]
