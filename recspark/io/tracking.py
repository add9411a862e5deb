"""The one module that talks to MLflow.

Each stage runs inside :func:`stage_run`, which records params, metrics, the Delta versions the
stage read and wrote, and its wall time. Runs carry their process (``recspark.pid``,
``recspark.pid_start``, ``recspark.host`` tags): a new stage run marks RUNNING runs of the
experiment whose process on this host is gone (``kill -9``) as KILLED, and SIGTERM ends the run
as KILLED before the process exits. Embedded default: ``sqlite:///mlflow.db`` in the working
directory; set ``mlflow.tracking_uri`` for a real server, or ``mlflow.enabled: false`` to skip.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from recspark.io.locks import process_alive, process_start_token

log = logging.getLogger(__name__)

# Pinned requirements of a logged Spark ML model (what loading it needs).
SPARK_MODEL_PACKAGES = ("pyspark", "mlflow", "numpy", "pandas", "pyarrow")


@dataclass
class MlflowSettings:
    """Experiment tracking (the ``mlflow`` config section); ``enabled: false`` runs without MLflow."""

    enabled: bool = True
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "recspark"

    def __post_init__(self) -> None:
        for name in ("tracking_uri", "experiment"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name}: must not be empty")


class StageRun:
    """Logging handle of one stage run; a no-op when tracking is disabled."""

    def __init__(self, mlflow_module, run_id: str, mlflow_run_id: str | None = None):
        self._mlflow = mlflow_module
        self.run_id = run_id
        self.mlflow_run_id = mlflow_run_id  # None when tracking is off
        self.registered_version: str | None = None  # set by register_if_better

    def log_params(self, params: dict[str, Any]) -> None:
        if self._mlflow:
            self._mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log metrics, at ``step`` (e.g. the epoch) when given."""
        if self._mlflow:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=step)

    def log_table_versions(self, direction: str, versions: dict[str, int | None]) -> None:
        """Record Delta versions as params ``read.<table>`` / ``wrote.<table>``."""
        self.log_params({f"{direction}.{name}": version for name, version in versions.items()})

    def log_dict(self, data: dict, artifact_file: str) -> None:
        if self._mlflow:
            self._mlflow.log_dict(data, artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        """Log a matplotlib figure (e.g. ``plots/ndcg.png``)."""
        if self._mlflow:
            self._mlflow.log_figure(figure, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self._mlflow:
            self._mlflow.log_text(text, artifact_file)

    def log_child_run(self, name: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """A nested MLflow run under this one (one per hyperparameter trial)."""
        if self._mlflow:
            with self._mlflow.start_run(run_name=name, nested=True):
                self.log_params(params)
                self.log_metrics(metrics)

    def log_spark_model(self, model, name: str, packages: tuple[str, ...] = SPARK_MODEL_PACKAGES) -> str | None:
        """Log a Spark ML model with ``mlflow.spark`` and return its model URI (None when
        tracking is off). Requirements are pinned from the installed ``packages``, not inferred
        (inference starts a Python environment and costs about 20 s)."""
        if not self._mlflow:
            return None
        import mlflow.spark

        requirements = [f"{package}=={metadata.version(package)}" for package in packages]
        info = mlflow.spark.log_model(model, name, pip_requirements=requirements)
        return info.model_uri

    def log_pytorch_model(self, model, name: str) -> str | None:
        """Log a torch ``nn.Module`` with ``mlflow.pytorch`` (pickle format: the default pt2 needs
        an input example to trace; requirements pinned from the installed torch, numpy and
        mlflow) and return its model URI (None when tracking is off). Loading it needs recspark."""
        if not self._mlflow:
            return None
        import mlflow.pytorch

        requirements = [f"{package}=={metadata.version(package)}" for package in ("torch", "numpy", "mlflow")]
        info = mlflow.pytorch.log_model(
            model, name=name, pip_requirements=requirements, serialization_format="pickle"
        )
        return info.model_uri

    def log_lightgbm_model(self, booster, name: str) -> str | None:
        """Log a LightGBM ``Booster`` with ``mlflow.lightgbm`` (requirements pinned from the
        installed lightgbm, numpy and mlflow) and return its model URI (None when tracking is off)."""
        if not self._mlflow:
            return None
        import mlflow.lightgbm

        requirements = [f"{package}=={metadata.version(package)}" for package in ("lightgbm", "numpy", "mlflow")]
        info = mlflow.lightgbm.log_model(booster, name=name, pip_requirements=requirements)
        return info.model_uri

    def register_if_better(
        self, model_uri: str | None, model_name: str, alias: str, metric: str, value: float
    ) -> bool:
        """Register ``model_uri`` as a new version of ``model_name`` (tagged with ``metric`` and
        ``value``) and move ``alias`` to it when ``value`` beats the value tagged on the
        version that holds the alias now (higher is better), or when none holds it.
        Returns whether the alias moved; False when tracking is off."""
        if not self._mlflow or model_uri is None:
            return False
        from mlflow.exceptions import MlflowException

        client = self._mlflow.MlflowClient()
        version = self._mlflow.register_model(model_uri, model_name)
        self.registered_version = f"{model_name}/{version.version}"
        client.set_model_version_tag(model_name, version.version, "recspark.selection_metric", metric)
        client.set_model_version_tag(model_name, version.version, "recspark.selection_value", repr(value))
        try:
            current = client.get_model_version_by_alias(model_name, alias)
        except MlflowException:
            current = None
        current_value = float(current.tags.get("recspark.selection_value", "-inf")) if current else None
        promote = current is None or value > current_value
        if promote:
            client.set_registered_model_alias(model_name, alias, version.version)
        self.log_params({"registered_model_version": version.version, "promoted_to_" + alias: promote})
        log.info(
            "model %s version %s: %s=%.4f vs %s %s -> %s",
            model_name, version.version, metric, value, alias,
            "none" if current is None else f"{current_value:.4f} (version {current.version})",
            "promoted" if promote else "not promoted",
        )
        return promote


class StageTerminated(SystemExit):
    """SIGTERM arrived while a stage ran; the MLflow run was ended as KILLED."""


def mark_dead_runs_killed(client, experiment_id: str) -> list[str]:
    """Set RUNNING runs of ``experiment_id`` whose process (pid tags, this host) is dead to
    KILLED; their run ids."""
    host = socket.gethostname()
    killed = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if tags.get("recspark.host") != host or "recspark.pid" not in tags:
            continue
        if not process_alive(int(tags["recspark.pid"]), tags.get("recspark.pid_start") or None):
            client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
            log.warning("MLflow run %s (%s) was left RUNNING by dead process %s; marked KILLED",
                        run.info.run_id, tags.get("recspark.stage", "?"), tags["recspark.pid"])
    return killed


@contextlib.contextmanager
def _killed_on_sigterm(mlflow_module) -> Iterator[None]:
    """End the active run as KILLED on SIGTERM and exit with 143 (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame):
        while mlflow_module.active_run() is not None:  # child runs first, then the stage run
            mlflow_module.end_run(status="KILLED")
        raise StageTerminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stage_run(config: MlflowSettings, stage: str, run_date: str, local_run_id: str) -> Iterator[StageRun]:
    """Open an MLflow run named ``<stage>-<run_date>`` tagged with the recspark run id."""
    started = time.perf_counter()
    if not config.enabled:
        yield StageRun(None, local_run_id)
        return
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    experiment = mlflow.set_experiment(config.experiment)
    mark_dead_runs_killed(mlflow.MlflowClient(), experiment.experiment_id)
    with _killed_on_sigterm(mlflow), mlflow.start_run(run_name=f"{stage}-{run_date}") as run:
        mlflow.set_tags({
            "recspark.stage": stage, "recspark.run_date": run_date, "recspark.run_id": local_run_id,
            "recspark.pid": str(os.getpid()), "recspark.pid_start": process_start_token(os.getpid()) or "",
            "recspark.host": socket.gethostname(),
        })
        handle = StageRun(mlflow, local_run_id, run.info.run_id)
        yield handle
        handle.log_metrics({"wall_time_s": time.perf_counter() - started})
        log.info("MLflow run %s (%s) logged to %s", run.info.run_id, stage, config.tracking_uri)
