"""Spark settings for test-sized data, shared by the test session and every Spark process a
test starts (stage subprocesses, the Airflow DAG's tasks, the standalone cluster, the server).

Test frames have tens to thousands of rows, so a query costs its planning, code generation and
task scheduling, not its data. Measured on 150 unit tests (one process, 2 cores): 171 s with the
production settings, 95 s with these (interpreted expressions: -16%; one shuffle partition:
-17%; no adaptive re-planning: -6%; together -45%). JVM flags: client compiler only and the
serial collector start short-lived JVMs faster (C2 or the parallel collector were within noise).
"""
from __future__ import annotations

JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

TINY_DATA_CONF = {
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
    "spark.ui.enabled": "false",
}
