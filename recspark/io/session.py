"""The one place a SparkSession is built.

Local runs get the project's interpreter for Python workers (PYSPARK_PYTHON) and bind to
127.0.0.1 (SPARK_LOCAL_IP), so users never set either by hand. Every session runs in UTC so
timestamps in Delta tables mean the same on every machine.

Under spark-submit (the JVM is already running: ``PYSPARK_GATEWAY_PORT`` is set) the submitter's
``--master`` wins over ``spark.master`` in the config, so one config serves a laptop run and an
Airflow or cluster submission (cluster configs leave ``spark.master`` null all the same).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from py4j.java_gateway import java_import
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from recspark.io.jvm_agent import closure_cleaner_agent
from recspark.io.py4j_names import remember_name_lookups

LOG_LEVELS = ("ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN")

# Numbers one task of a frame made from driver-side rows carries: Spark warns "a task of very
# large size" above 1,000 KiB, which one createDataFrame of 20,000 users' ALS factors already
# passed. A pickled float in a row costs about 18 bytes (80,000 a task still logged 1,044 KiB),
# so 40,000 is ~700 KiB.
MAX_VALUES_PER_TASK = 40_000


def frame_from_rows(spark: SparkSession, rows: list[tuple], schema: StructType | str,
                    values_per_row: int = 1) -> DataFrame:
    """A DataFrame of driver-side ``rows`` (tuples matching ``schema``; ``values_per_row``
    numbers each, array elements included) in as many partitions as keep every task within
    :data:`MAX_VALUES_PER_TASK` numbers, materialised: a parallelized partition travels inside
    its task, so a later ``coalesce`` (the top-K scoring's, to the core count) packed 50,000
    users' ALS factors into 3.7 MB tasks at 5M interactions; checkpointed blocks do not travel."""
    slices = max(1, -(-len(rows) * values_per_row // MAX_VALUES_PER_TASK))
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, slices), schema).localCheckpoint()


def materialize_on_disk(frame: DataFrame) -> DataFrame:
    """``frame`` persisted on local disk (``DISK_ONLY``) and computed now, like an eager
    ``localCheckpoint`` that never passes through the memory store: a night's lists grow with
    the users while storage memory does not (at 20M interactions one source's top-100 for
    200,000 users came to two 840 MiB blocks, which a 4g driver could not cache: a "Not enough
    space to cache" WARN per attempt). The lineage is kept; call ``unpersist()`` once the rows
    have been written."""
    persisted = frame.persist(StorageLevel.DISK_ONLY)
    persisted.count()
    return persisted


@dataclass
class SparkSettings:
    """How the SparkSession is built (the ``spark`` config section)."""

    master: str | None = "local[*]"  # None: leave it to spark-submit / the cluster
    app_name: str = "recspark"
    log_level: str = "WARN"  # one of LOG_LEVELS
    conf: dict[str, str] = field(default_factory=dict)  # extra spark.* settings

    def __post_init__(self) -> None:
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level: must be one of {list(LOG_LEVELS)}, got {self.log_level!r}")
        if not self.app_name.strip():
            raise ValueError("app_name: must not be empty")


# Settings results depend on: applied to every session recspark runs in.
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    # Unparseable timestamps become null (and are quarantined) instead of failing the job.
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
# Tuning defaults: applied only to a session recspark creates. A session that is already running
# (a notebook's, a test suite's, a Databricks cluster's) keeps its own tuning.
DEFAULT_CONF = {
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    # The ranker's feature plans have three columns per source; above the default of 25 fields
    # Spark logs a "Truncated the string representation of a plan" WARN per plan.
    "spark.sql.debug.maxToStringFields": "1000",
}


# PySpark looks these classes up by their simple name on every call (``functions`` on each
# ``F.col``/``F.lit``, ``PythonUtils`` on each list it hands over, ``PythonRDD``, ``SerDeUtil`` and
# ``SimplePythonFunction`` on each ``createDataFrame`` and UDF). Py4J resolves a simple name by
# trying each star import in turn, a failed class load over the ~250 Spark jars per miss before
# the right package matches: 0.9 ms a lookup here. A single import makes it a map hit (0.35 ms);
# the unit tests make ~7,000 such lookups a minute.
SINGLE_IMPORTS = (
    "org.apache.spark.sql.functions",
    "org.apache.spark.sql.Column",
    "org.apache.spark.sql.SparkSession",
    "org.apache.spark.sql.SparkSession$",
    "org.apache.spark.api.python.PythonUtils",
    "org.apache.spark.api.python.PythonRDD",
    "org.apache.spark.api.python.SerDeUtil",
    "org.apache.spark.api.python.SimplePythonFunction",
)

# Expected fallbacks, not problems: without a native BLAS (none is installed here) MLlib's netlib
# tries JNI, then the incubating Vector API, then settles on pure Java, one WARN per failed try at
# the first ALS fit of every process. RowBasedKeyValueBatch (the fast first-level map of a hash
# aggregation) logs "Calling spill() ... Will not spill but return 0" each time another consumer of
# the task's memory asks it to spill: nothing is wrong and nothing can be done, which is why Spark
# 4.0 made it a DEBUG line (SPARK-50524); at 2M-5M interactions it was the only WARN flood left.
# Errors from these loggers still show. In the driver JVM, so in every local session; a cluster's
# executors log with their own log4j2 configuration.
QUIET_LOGGERS = ("dev.ludovic.netlib", "org.apache.spark.sql.catalyst.expressions.RowBasedKeyValueBatch")

# Local sessions only (a master left unset outside spark-submit is local[*]): their Python workers
# run in this interpreter, where recspark is installed.
LOCAL_DEFAULT_CONF = {"spark.python.daemon.module": "recspark.io.python_daemon"}


DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def with_closure_cleaner_agent(conf: dict[str, str]) -> dict[str, str]:
    """``conf`` with the :mod:`recspark.io.jvm_agent` Java agent added to the driver's JVM
    options (after any given), or unchanged when the agent cannot be built."""
    agent = closure_cleaner_agent()
    if agent is None or " " in str(agent):
        return conf
    options = " ".join(part for part in (conf.get(DRIVER_JAVA_OPTIONS, ""), f"-javaagent:{agent}") if part)
    return {**conf, DRIVER_JAVA_OPTIONS: options}


def is_local_master(master: str | None) -> bool:
    return master is None or master.startswith("local")


def prepare_python_environment(master: str | None) -> None:
    """Point Spark's Python workers at this interpreter and, for local masters, bind to loopback."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if is_local_master(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def launched_by_spark_submit() -> bool:
    """True when this Python driver was started by spark-submit (it hands over its JVM)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark_session(config: SparkSettings) -> SparkSession:
    """Get or create the SparkSession described by ``config``.

    A new session gets :data:`REQUIRED_CONF`, :data:`DEFAULT_CONF` (plus
    :data:`LOCAL_DEFAULT_CONF` for a local master) and ``config.conf`` (which wins); an already
    active session gets only :data:`REQUIRED_CONF` and ``config.conf``. A driver JVM this
    process starts (not spark-submit's) also gets the ClosureCleaner cache agent
    (:func:`with_closure_cleaner_agent`); Py4J's name lookups are remembered
    (:func:`recspark.io.py4j_names.remember_name_lookups`)."""
    submitted = launched_by_spark_submit()
    prepare_python_environment(config.master)
    builder = SparkSession.builder.appName(config.app_name)
    if config.master and not submitted:
        builder = builder.master(config.master)
    defaults = {} if SparkSession.getActiveSession() is not None else DEFAULT_CONF
    if defaults and is_local_master(config.master or config.conf.get("spark.master")) and not submitted:
        defaults = {**defaults, **LOCAL_DEFAULT_CONF}
    conf = {**REQUIRED_CONF, **defaults, **config.conf}
    if defaults and not submitted:
        conf = with_closure_cleaner_agent(conf)
    for key, value in conf.items():
        builder = builder.config(key, str(value))
    remember_name_lookups()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.log_level)
    for name in SINGLE_IMPORTS:
        java_import(spark._jvm, name)
    log4j = spark._jvm.org.apache.logging.log4j
    for logger in QUIET_LOGGERS:
        log4j.core.config.Configurator.setLevel(logger, log4j.Level.ERROR)
    return spark
