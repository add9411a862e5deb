"""The parts of `recspark serve` that need no server: its HiveServer2 settings and the views that
follow new table versions."""
from __future__ import annotations

import pytest
from pyspark.sql import types as T

from recspark.io.delta import DeltaTables
from recspark.serve import WarehouseViews, thrift_folder, thrift_settings

pytestmark = pytest.mark.unit

SCHEMA = T.StructType([T.StructField("user_id", T.StringType()), T.StructField("score", T.DoubleType())])


def test_settings_bind_the_given_address_and_keep_scratch_files_under_the_folder(tmp_path):
    settings = thrift_settings("127.0.0.1", 10001, str(tmp_path), {"hive.server2.transport.mode": "http"})
    assert settings["hive.server2.thrift.bind.host"] == "127.0.0.1"
    assert settings["hive.server2.thrift.port"] == "10001"
    assert settings["hive.server2.transport.mode"] == "http"
    assert settings["hive.server2.logging.operation.log.location"].startswith(str(tmp_path))
    assert settings["hive.exec.local.scratchdir"].startswith(str(tmp_path))


def test_a_non_loopback_address_needs_authentication(tmp_path):
    with pytest.raises(ValueError, match="hive.server2.authentication"):
        thrift_settings("0.0.0.0", 10000, str(tmp_path))
    ldap = {"hive.server2.authentication": "LDAP", "hive.server2.authentication.ldap.url": "ldap://ldap:389"}
    assert thrift_settings("0.0.0.0", 10000, str(tmp_path), ldap)["hive.server2.authentication"] == "LDAP"


@pytest.mark.parametrize("port", [0, 70000])
def test_a_port_out_of_range_is_refused(tmp_path, port):
    with pytest.raises(ValueError, match="port"):
        thrift_settings("127.0.0.1", port, str(tmp_path))


def test_thrift_folder_is_under_a_local_warehouse(tmp_path):
    assert thrift_folder(str(tmp_path / "wh")) == str(tmp_path / "wh" / "_thrift")
    assert (tmp_path / "wh" / "_thrift").is_dir()


def test_views_are_registered_again_only_when_their_table_has_a_new_version(spark, tmp_path):
    tables = DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")
    tables.write(spark.createDataFrame([("u1", 0.5)], SCHEMA), "recommendations_latest")
    views = WarehouseViews(tables, tables, ["recommendations_latest", "metrics"])

    assert views.refresh() == ["recommendations_latest"]
    assert views.refresh() == []
    assert spark.sql("SELECT count(*) FROM recommendations_latest").first()[0] == 1

    tables.write(spark.createDataFrame([("u1", 0.5), ("u2", 0.4)], SCHEMA), "recommendations_latest")
    tables.write(spark.createDataFrame([("m", 1.0)], SCHEMA), "metrics")
    assert views.refresh() == ["metrics", "recommendations_latest"]
    assert views.registered == {"metrics": 0, "recommendations_latest": 1}
    assert spark.sql("SELECT count(*) FROM recommendations_latest").first()[0] == 2
