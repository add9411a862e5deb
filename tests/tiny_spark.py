"""Spark settings for test-sized data, shared by the test session and every Spark process a
test starts (stage subprocesses, the Airflow DAG's tasks, the standalone cluster, the server).

Test frames have tens to thousands of rows, so a query costs its planning, code generation and
task scheduling, not its data. Measured on 150 unit tests (one process, 2 cores): 171 s with the
production settings, 95 s with these (interpreted expressions: -16%; one shuffle partition:
-17%; no adaptive re-planning: -6%; together -45%). No constraint propagation: the optimizer's
InferFiltersFromConstraints spent 1.1 of the 1.9 s of planning one synthetic-generator query
(wide projections of hashed expressions behind joins), so every generator test paid it; on data
this small the IsNotNull filters it infers save nothing. JVM flags: client compiler only and the
serial collector start short-lived JVMs faster (C2 or the parallel collector were within noise).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession

JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

TINY_DATA_CONF = {
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.constraintPropagation.enabled": "false",
    "spark.ui.enabled": "false",
    # Every query renders its plan for the SQL UI's listener even with the UI off; "simple" is the
    # cheapest rendering (a 2-join query: 142-158 ms against 161-181 ms with "formatted").
    "spark.sql.ui.explainMode": "simple",
}

# A whole `recspark run` on the 200-user cut of MovieLens (about 20k ratings) is past the size
# where planning dominates: measured alone, the nightly test's run took 231 s with TINY_DATA_CONF
# and 189 s with generated code, adaptive execution and two partitions.
PIPELINE_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.codegen.wholeStage": "true",
    "spark.sql.codegen.factoryMode": "FALLBACK",
    "spark.sql.adaptive.enabled": "true",
}


@contextmanager
def session_conf(spark: SparkSession, conf: dict[str, str]) -> Iterator[None]:
    """``conf`` set on the shared session for the block, the previous values restored after."""
    before = {key: spark.conf.get(key) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            spark.conf.set(key, value)
