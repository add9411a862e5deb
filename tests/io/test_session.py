"""An active session (a notebook's, this test suite's) keeps its tuning; recspark still sets
what results depend on."""
from __future__ import annotations

import os
import time
import zipfile
import zipimport

import pytest
from py4j.protocol import Py4JError, Py4JJavaError

from recspark.io import jvm_agent, py4j_names, python_daemon
from recspark.io.session import (
    DEFAULT_CONF,
    DRIVER_JAVA_OPTIONS,
    LOCAL_DEFAULT_CONF,
    MAX_VALUES_PER_TASK,
    QUIET_LOGGERS,
    REQUIRED_CONF,
    SparkSettings,
    build_spark_session,
    frame_from_rows,
    materialize_on_disk,
    with_closure_cleaner_agent,
)
from tiny_spark import session_conf

pytestmark = pytest.mark.unit

PARTITIONS = "spark.sql.shuffle.partitions"
ORIGINAL_INVALIDATE = zipimport.zipimporter.invalidate_caches


def test_an_active_session_keeps_its_tuning_and_gets_the_required_settings(spark):
    own_partitions = "2"  # the session's own tuning, unlike DEFAULT_CONF's
    assert own_partitions != DEFAULT_CONF[PARTITIONS]
    with session_conf(spark, {PARTITIONS: own_partitions, "spark.sql.session.timeZone": "Europe/Paris"}):
        session = build_spark_session(SparkSettings(master="local[2]"))
        assert session.sparkContext is spark.sparkContext
        assert spark.conf.get("spark.sql.session.timeZone") == REQUIRED_CONF["spark.sql.session.timeZone"]
        assert spark.conf.get(PARTITIONS) == own_partitions
        build_spark_session(SparkSettings(master="local[2]", conf={PARTITIONS: "3"}))
        assert spark.conf.get(PARTITIONS) == "3"  # what the config says explicitly still wins


def test_expected_fallback_loggers_log_errors_only(spark):
    build_spark_session(SparkSettings(master="local[2]"))
    log4j = spark._jvm.org.apache.logging.log4j
    assert "org.apache.spark.sql.catalyst.expressions.RowBasedKeyValueBatch" in QUIET_LOGGERS
    for name in QUIET_LOGGERS:
        assert log4j.LogManager.getLogger(name).getLevel().toString() == "ERROR"
    assert log4j.LogManager.getLogger("org.apache.spark.sql.execution").getLevel().toString() != "ERROR"


def test_local_python_workers_run_recspark_daemon_and_a_udf_sees_its_zip_cache(spark):
    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == LOCAL_DEFAULT_CONF[
        "spark.python.daemon.module"]

    def patched(_):
        import zipimport

        yield zipimport.zipimporter.invalidate_caches.__name__  # the daemon ran the module as __main__

    assert spark.sparkContext.parallelize([0], 1).mapPartitions(patched).collect() == [
        python_daemon._invalidate_if_changed.__name__]


def test_the_closure_cleaner_reuses_one_reader_per_class_and_still_rejects_return_statements(spark):
    jvm = spark._jvm
    pool = jvm.java.lang.Class.forName("org.apache.spark.scheduler.Pool")
    cleaner = getattr(getattr(jvm.org.apache.spark.util, "ClosureCleaner$"), "MODULE$")  # the Scala object
    reader = cleaner.getClassReader(pool)
    assert reader.getClass().getName() == "recspark.jvm.ClosureCleanerCache$CheckedOnceReader"
    assert reader.equals(cleaner.getClassReader(pool))  # the same object

    def check(method: str) -> None:
        reader.accept(jvm.org.apache.spark.util.ReturnStatementFinder(jvm.scala.Some(method)), 0)

    # Pool's lambda $anonfun$getSchedulableByName$1 holds a `return`: rejected every time, not cached.
    for _ in range(2):
        with pytest.raises(Py4JJavaError, match="ReturnStatementInClosureException"):
            check("$anonfun$getSchedulableByName$1")
        check("$anonfun$getSchedulableByName$2")  # no return statement: passes, then is remembered


def test_py4j_remembers_packages_classes_and_methods_but_not_field_values_or_misses(spark):
    jvm = spark._jvm
    answers = jvm._gateway_client.__dict__[py4j_names._CACHE_ATTRIBUTE]
    struct_type = jvm.org.apache.spark.sql.types.StructType
    assert jvm.org.apache.spark.sql.types.StructType is struct_type  # answered from memory
    assert answers[(f"package:{jvm._id}:org.apache.spark.sql", "types")].__class__.__name__ == "JavaPackage"
    from_ddl = struct_type.fromDDL
    assert struct_type.fromDDL is from_ddl and from_ddl("a int").fieldNames()[0] == "a"
    assert jvm.java.lang.Integer.MAX_VALUE == 2 ** 31 - 1
    assert ("class:java.lang.Integer", "MAX_VALUE") not in answers  # a field's value is fetched each time
    for _ in range(2):
        with pytest.raises(Py4JError, match="does not exist"):
            jvm.java.lang.Integer.no_such_member
    assert ("class:java.lang.Integer", "no_such_member") not in answers


def test_the_agent_joins_the_given_driver_options_and_is_left_out_without_javac(monkeypatch):
    agent = jvm_agent.closure_cleaner_agent()
    assert agent is not None and agent.exists()
    assert with_closure_cleaner_agent({DRIVER_JAVA_OPTIONS: "-Xss4m"})[DRIVER_JAVA_OPTIONS] == f"-Xss4m -javaagent:{agent}"
    assert with_closure_cleaner_agent({})[DRIVER_JAVA_OPTIONS] == f"-javaagent:{agent}"
    monkeypatch.setattr(jvm_agent, "javac", lambda: None)
    jvm_agent.closure_cleaner_agent.cache_clear()
    try:
        assert with_closure_cleaner_agent({"spark.master": "local[1]"}) == {"spark.master": "local[1]"}
    finally:
        jvm_agent.closure_cleaner_agent.cache_clear()


def test_the_agent_jar_names_its_premain_class(tmp_path):
    target = tmp_path / "agent.jar"
    jvm_agent.build_agent_jar(jvm_agent.AGENT_SOURCE, jvm_agent.spark_asm_jar(), jvm_agent.javac(), target)
    with zipfile.ZipFile(target) as jar:
        assert f"Premain-Class: {jvm_agent.AGENT_CLASS}" in jar.read("META-INF/MANIFEST.MF").decode()
        assert "recspark/jvm/ClosureCleanerCache$CheckedOnceReader.class" in jar.namelist()


def _write_archive(path, modules: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in modules.items():
            archive.writestr(f"{name}.py", source)


def test_a_zip_directory_is_read_again_only_when_the_archive_changed(tmp_path, monkeypatch):
    archive = tmp_path / "lib.zip"
    _write_archive(archive, {"first": "X = 1\n"})
    reads = []
    monkeypatch.setattr(python_daemon, "_read_directory", lambda importer: reads.append(importer.archive)
                        or ORIGINAL_INVALIDATE(importer))
    importer = zipimport.zipimporter(str(archive))
    python_daemon._invalidate_if_changed(importer)
    python_daemon._invalidate_if_changed(importer)
    assert len(reads) == 1  # the first call reads (no stamp yet), the second finds it unchanged
    _write_archive(archive, {"first": "X = 1\n", "second": "Y = 2\n"})
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    assert importer.find_spec("second") is None  # still the old directory
    python_daemon._invalidate_if_changed(importer)
    assert len(reads) == 2 and importer.find_spec("second") is not None


def test_frames_from_driver_rows_keep_every_task_within_the_value_budget(spark):
    rows = [(i, [float(i)] * 15) for i in range(12_000)]  # 16 numbers a row: 192,000 numbers
    frame = frame_from_rows(spark, rows, "id int, features array<float>", values_per_row=16)
    assert frame.rdd.getNumPartitions() == -(-192_000 // MAX_VALUES_PER_TASK) == 5
    assert frame.count() == 12_000 and frame.where("id = 11999").first()["features"][0] == 11999.0
    assert frame_from_rows(spark, [(1,)], "id int").rdd.getNumPartitions() == 1
    # materialised: coalesced (as top-K scoring does) its tasks read blocks, not the rows in the task
    lineage = frame.coalesce(1).rdd.toDebugString().decode()
    assert "LocalCheckpointRDD" in lineage and "ParallelCollectionRDD" not in lineage


def test_a_frame_materialized_on_disk_is_computed_once_and_kept_off_the_memory_store(spark):
    from chispa import assert_df_equality
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    computed = spark.sparkContext.accumulator(0)

    @F.udf("long")
    def counted(value):
        computed.add(1)
        return value * 2

    frame = materialize_on_disk(spark.range(100).select("id", counted("id").alias("twice")))
    assert computed.value == 100 and frame.storageLevel == StorageLevel.DISK_ONLY
    expected = spark.range(100).select("id", (F.col("id") * 2).alias("twice"))
    assert_df_equality(frame, expected, ignore_row_order=True, ignore_nullable=True)
    assert computed.value == 100  # later actions read the persisted blocks
    frame.unpersist()
