"""The one module that talks to MLflow.

Each stage runs inside :func:`stage_run`, which records params, metrics, the Delta versions the
stage read and wrote, and its wall time. Embedded default: ``sqlite:///mlflow.db`` in the working
directory; set ``mlflow.tracking_uri`` for a real server, or ``mlflow.enabled: false`` to skip.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from recspark.config import MlflowConfig

log = logging.getLogger(__name__)


class StageRun:
    """Logging handle of one stage run; a no-op when tracking is disabled."""

    def __init__(self, mlflow_module, run_id: str):
        self._mlflow = mlflow_module
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if self._mlflow:
            self._mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float]) -> None:
        if self._mlflow:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})

    def log_table_versions(self, direction: str, versions: dict[str, int | None]) -> None:
        """Record Delta versions as params ``read.<table>`` / ``wrote.<table>``."""
        self.log_params({f"{direction}.{name}": version for name, version in versions.items()})

    def log_dict(self, data: dict, artifact_file: str) -> None:
        if self._mlflow:
            self._mlflow.log_dict(data, artifact_file)


@contextlib.contextmanager
def stage_run(config: MlflowConfig, stage: str, run_date: str, local_run_id: str) -> Iterator[StageRun]:
    """Open an MLflow run named ``<stage>-<run_date>`` tagged with the recspark run id."""
    started = time.perf_counter()
    if not config.enabled:
        yield StageRun(None, local_run_id)
        return
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_experiment(config.experiment)
    with mlflow.start_run(run_name=f"{stage}-{run_date}") as run:
        mlflow.set_tags({"recspark.stage": stage, "recspark.run_date": run_date, "recspark.run_id": local_run_id})
        handle = StageRun(mlflow, local_run_id)
        yield handle
        handle.log_metrics({"wall_time_s": time.perf_counter() - started})
        log.info("MLflow run %s (%s) logged to %s", run.info.run_id, stage, config.tracking_uri)
