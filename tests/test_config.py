"""Typed config loading and command-line overrides."""
import pytest

from recspark.config import ConfigError, load_config

pytestmark = pytest.mark.unit


def test_defaults_and_dotted_overrides(tmp_path):
    config = load_config(None, [f"warehouse={tmp_path}", "featurize.split.method=time", "featurize.split.seed=7",
                                "mlflow.enabled=false"])
    assert config.featurize.split.method == "time"
    assert config.featurize.split.seed == 7
    assert config.mlflow.enabled is False
    assert config.table_location("interactions_silver") == f"{tmp_path}/interactions_silver"
    assert config.ingest.preset == "ml-latest-small"


def test_a_spark_conf_override_keeps_its_dotted_key_whole():
    config = load_config(None, ["spark.conf.spark.driver.memory=640m", "spark.conf.spark.sql.shuffle.partitions=4"])
    assert config.spark.conf["spark.driver.memory"] == "640m"
    assert config.spark.conf["spark.sql.shuffle.partitions"] == "4" and "spark" not in config.spark.conf


def test_table_name_and_location_overrides():
    config = load_config(None, ["tables={items: catalog_items}", "table_locations={metrics: /data/m}"])
    assert config.table_location("items").endswith("/catalog_items")
    assert config.table_location("metrics") == "/data/m"


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"featurize.split: unknown key\(s\) \['metod'\]"):
        load_config(None, ["featurize.split.metod=time"])


def test_wrong_type_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="featurize.split.seed: expected a number, got .abc."):
        load_config(None, ["featurize.split.seed=abc"])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["warehouse"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_run_date_validation():
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        load_config(None, ["run_date=2024-13-01"]).effective_run_date()
