"""Deployment files that cannot run here (no Docker engine, no cluster): they load, agree with
the pinned stack, and name only files and services that exist."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from recspark.config import load_config

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
LOCK = dict(
    line.split("==") for line in (REPO / "requirements.lock").read_text().splitlines()
    if "==" in line and not line.startswith("#")
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["local.yaml", "cluster.yaml", "docker.yaml"])
def test_every_shipped_config_loads(name):
    config = load_config(REPO / "conf" / name)
    assert config.warehouse


def test_cluster_configs_leave_the_master_to_spark_submit():
    for name in ("cluster.yaml", "docker.yaml"):
        assert load_config(REPO / "conf" / name).spark.master is None


def test_image_pins_match_the_lock_and_the_makefile():
    assert "torch==2.13.0" in DOCKERFILE and "torch==2.13.0" in (REPO / "Makefile").read_text()
    assert "petastorm==0.13.1" in DOCKERFILE
    assert "-r requirements.lock" in DOCKERFILE and "-r airflow_dags/requirements-airflow.lock" in DOCKERFILE
    python = re.search(r"FROM python:(\d+\.\d+)", DOCKERFILE).group(1)
    assert python == "3.11"
    assert "openjdk-17" in DOCKERFILE
    assert LOCK["pyspark"] == "3.5.9" and LOCK["pyarrow"] == "14.0.2"


def test_dockerfile_copies_only_what_exists():
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), line


def test_compose_services_images_and_files():
    services = COMPOSE["services"]
    assert {"postgres", "mlflow", "spark-master", "spark-worker", "airflow"} <= set(services)
    targets = set(re.findall(r"^FROM .* AS (\w+)$", DOCKERFILE, flags=re.M))
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert build["target"] in targets, name
            assert (REPO / "docker" / build["context"] / build["dockerfile"]).exists()
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (REPO / "docker" / host).exists(), volume
            else:
                assert host in COMPOSE["volumes"], volume
    assert "spark://spark-master:7077" in services["spark-worker"]["command"]
    assert services["airflow"]["environment"]["RECSPARK_CONFIG"].endswith("conf/docker.yaml")
    submit = services["submit"]["command"]
    words = submit.split()
    assert (REPO / words[3]).exists() and words[3] == "jobs/submit.py" and words[-1] == "run"
    assert (REPO / words[words.index("--config") + 1]).exists()
