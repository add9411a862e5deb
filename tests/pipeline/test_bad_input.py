"""Ingest through the CLI on bad input files, and on the generator's logs: every row accounted for,
clear errors, published tables kept."""
from __future__ import annotations

import datetime as dt

import pytest

from recspark.cli import main
from recspark.config import load_config
from recspark.io.delta import DeltaTables

pytestmark = pytest.mark.integration
RUN_DATE = "2024-06-01"


def cli(warehouse, *args, extra=(), run_date=RUN_DATE):
    return main(["--set", f"warehouse={warehouse}", "--set", "spark.master=local[2]", *extra,
                 "--run-date", run_date, *args])


BAD_ROWS = "\n".join(
    [
        "user,item,stars,ts",
        "u1,i1,4.0,1700000000",  # valid
        "u1,i1,4.0,1700000000",  # exact duplicate
        "u2,i1,9.0,1700000000",  # rating out of range
        "u3,i2,abc,1700000000",  # rating not numeric
        ",i2,3.0,1700000000",  # missing user id
        "u4,i3,3.0,yesterday",  # timestamp not parseable
        "u5,i3,3.0,4102444800",  # 2100-01-01: in the future
        "u6,i4,3.0",  # too few fields
        "u7,i5,2.5,1700000100",  # valid
    ]
)


def bad_input_overrides(path, delimiter=","):
    source = (
        "{name: events, kind: interactions, paths: [%s], delimiter: '%s', rating_min: 0.5, rating_max: 5.0, "
        "columns: {user_id: user, item_id: item, rating: stars, event_ts: ts}}" % (path, delimiter)
    )
    return ["--set", "ingest.preset=null", "--set", f"ingest.sources=[{source}]", "--set", "mlflow.enabled=false"]


def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost(spark, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(BAD_ROWS + "\n")
    assert cli(tmp_path / "wh", "ingest", extra=bad_input_overrides(path)) == 0
    tables = DeltaTables.from_config(spark, load_config(None, [f"warehouse={tmp_path / 'wh'}"]))
    silver = tables.read("interactions_silver")
    assert sorted((r.user_id, r.rating) for r in silver.collect()) == [("u1", 4.0), ("u7", 2.5)]
    reasons = sorted((r.reason, r.column) for r in tables.read("interactions_quarantine").collect())
    assert reasons == [
        ("malformed_row", None),
        ("missing_user_id", "user_id"),
        ("rating_not_numeric", "rating"),
        ("rating_out_of_range", "rating"),
        ("timestamp_in_future", "event_ts"),
        ("timestamp_invalid", "event_ts"),
    ]
    # 9 rows read = 2 silver + 6 quarantined + 1 duplicate removed
    assert tables.read("interactions_bronze").count() == 9
    assert silver.where("user_id = 'u1'").first().event_ts == dt.datetime(2023, 11, 14, 22, 13, 20)


def test_wrong_delimiter_fails_clearly_and_keeps_published_tables(spark, tmp_path, caplog):
    good = tmp_path / "good.csv"
    good.write_text(BAD_ROWS + "\n")
    assert cli(tmp_path / "wh", "ingest", extra=bad_input_overrides(good)) == 0
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text(BAD_ROWS.replace(",", ";") + "\n")
    assert cli(tmp_path / "wh", "ingest", extra=bad_input_overrides(semicolons)) == 2
    assert "semicolons.csv" in caplog.text and "delimiter" in caplog.text
    tables = DeltaTables.from_config(spark, load_config(None, [f"warehouse={tmp_path / 'wh'}"]))
    assert tables.version("interactions_silver") == 0
    assert tables.read("interactions_silver").count() == 2


def test_unknown_stage_option_and_config_errors_exit_with_code_2(tmp_path, caplog):
    assert main(["--set", "featurize.split.metod=x", "ingest"]) == 2
    assert "unknown key" in caplog.text


def test_generated_synthetic_logs_ingest_without_loss(spark, tmp_path):
    settings = ["--set", "mlflow.enabled=false", "--set", f"generate.output_dir={tmp_path / 'syn'}",
                "--set", "generate.n_interactions=3000", "--set", "generate.n_users=200",
                "--set", "generate.n_items=150", "--set", "generate.num_partitions=2",
                "--set", "generate.end_date=2024-05-31",  # before the run date: nothing is in the future
                "--set", "ingest.preset=synthetic", "--set", f"ingest.data_dir={tmp_path / 'syn'}"]
    assert cli(tmp_path / "wh", "generate", extra=settings) == 0
    assert cli(tmp_path / "wh", "ingest", extra=settings) == 0
    tables = DeltaTables.from_config(spark, load_config(None, [f"warehouse={tmp_path / 'wh'}"]))
    silver, quarantined = tables.read("interactions_silver").count(), tables.read("interactions_quarantine").count()
    assert quarantined == 0
    assert tables.read("interactions_bronze").count() == 3000
    assert 2950 <= silver <= 3000  # rare same-second duplicates are removed, nothing else
    assert tables.read("items").count() == 150
    assert {r.event_type for r in tables.read("interactions_silver").select("event_type").distinct().collect()} == {
        "rating", "play", "click"}
