"""An active session (a notebook's, this test suite's) keeps its tuning; recspark still sets
what results depend on."""
from __future__ import annotations

import pytest

from recspark.io.session import DEFAULT_CONF, REQUIRED_CONF, SparkSettings, build_spark_session
from tiny_spark import session_conf

pytestmark = pytest.mark.unit

PARTITIONS = "spark.sql.shuffle.partitions"


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
