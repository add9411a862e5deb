"""Spark's Python worker daemon (``pyspark.daemon``) with zip directories re-read only when the
archive changed; :mod:`recspark.io.session` makes it the daemon of local sessions.

Before every task PySpark's worker calls ``importlib.invalidate_caches()``. On Python 3.11 that
makes every ``zipimporter`` on ``sys.path`` parse its archive's central directory again, and
Spark puts three archives there: ``pyspark.zip``, the py4j zip and ``spark-core_2.12.jar``
(5,221 entries). Profiled on the unit tests: 96% of the Python workers' CPU went to re-reading
them, ~25 ms a task. Python 3.12 made the re-read lazy; here an archive is re-read only when its
size or modification time differs from the last read, which keeps the call's meaning (new or
rewritten archives are seen) and drops its cost.

Run as ``python -m recspark.io.python_daemon`` by Spark (``spark.python.daemon.module``); the
forked workers inherit the patch. Cluster executors keep ``pyspark.daemon``: they may not have
recspark installed when the daemon starts.
"""
from __future__ import annotations

import os
import zipimport

_read_directory = zipimport.zipimporter.invalidate_caches


def _archive_stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _invalidate_if_changed(importer: zipimport.zipimporter) -> None:
    """``zipimporter.invalidate_caches`` that skips archives unchanged since their last read."""
    stamp = _archive_stamp(importer.archive)
    if stamp is not None and getattr(importer, "_recspark_stamp", None) == stamp:
        return
    _read_directory(importer)
    importer._recspark_stamp = stamp


def keep_unchanged_zip_directories() -> None:
    """Install :func:`_invalidate_if_changed` as ``zipimporter.invalidate_caches``."""
    zipimport.zipimporter.invalidate_caches = _invalidate_if_changed


if __name__ == "__main__":
    keep_unchanged_zip_directories()
    from pyspark.daemon import manager

    manager()
