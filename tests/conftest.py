"""Shared fixtures: one SparkSession for the whole test session (it takes 7-15 s to start).

Tests mirror the package (``tests/ingest`` tests ``recspark/ingest``, ...); shared test data
builders (``movielens_subset``, ``als_planted``, ``deep_planted``) live beside this file and are
importable from every folder."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from recspark.io.session import SparkSettings, build_spark_session

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_spark import JVM_OPTIONS, TINY_DATA_CONF  # noqa: E402  (beside this file, on the path just set)
MOVIELENS_DIR = REPO_ROOT / "data" / "ml-latest-small"

TEST_SPARK_CONF = {**TINY_DATA_CONF, "spark.driver.memory": "3g", "spark.driver.extraJavaOptions": JVM_OPTIONS}


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    session = build_spark_session(
        SparkSettings(master="local[2]", app_name="recspark-tests", conf=TEST_SPARK_CONF)
    )
    # Iterative algorithms (ALS) truncate their lineage only with a checkpoint directory;
    # without one a few dozen iterations overflow the JVM stack and kill the shared session.
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    return MOVIELENS_DIR


_SUITE_MARKERS = ("unit", "integration", "cluster", "airflow")


def pytest_collection_modifyitems(items):
    """Every test carries exactly one suite marker, so `-m unit` and the full run partition the suite."""
    unmarked = [item.nodeid for item in items
                if sum(1 for name in _SUITE_MARKERS if item.get_closest_marker(name)) != 1]
    if unmarked:
        raise pytest.UsageError("tests without exactly one of the markers " + ", ".join(_SUITE_MARKERS)
                                + ": " + ", ".join(unmarked[:10]))
