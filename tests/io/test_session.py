"""An active session (a notebook's, this test suite's) keeps its tuning; recspark still sets
what results depend on."""
from __future__ import annotations

import pytest

from recspark.io.session import DEFAULT_CONF, REQUIRED_CONF, SparkSettings, build_spark_session

pytestmark = pytest.mark.unit

PARTITIONS = "spark.sql.shuffle.partitions"


def test_an_active_session_keeps_its_tuning_and_gets_the_required_settings(spark):
    before = spark.conf.get(PARTITIONS)
    own_partitions = "2"  # the session's own tuning, unlike DEFAULT_CONF's
    assert own_partitions != DEFAULT_CONF[PARTITIONS]
    spark.conf.set(PARTITIONS, own_partitions)
    spark.conf.set("spark.sql.session.timeZone", "Europe/Paris")
    try:
        session = build_spark_session(SparkSettings(master="local[2]"))
        assert session.sparkContext is spark.sparkContext
        assert spark.conf.get("spark.sql.session.timeZone") == REQUIRED_CONF["spark.sql.session.timeZone"]
        assert spark.conf.get(PARTITIONS) == own_partitions
        build_spark_session(SparkSettings(master="local[2]", conf={PARTITIONS: "3"}))
        assert spark.conf.get(PARTITIONS) == "3"  # what the config says explicitly still wins
    finally:
        spark.conf.set(PARTITIONS, before)
        spark.conf.set("spark.sql.session.timeZone", "UTC")
