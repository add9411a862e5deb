"""Whole stages through the CLI on the bundled MovieLens data, and on bad input files."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from pyspark.sql import functions as F

from recspark.cli import main
from recspark.config import load_config
from recspark.delta import DeltaTables

pytestmark = pytest.mark.integration
RUN_DATE = "2024-06-01"


def cli(warehouse, *args, extra=()):
    return main(["--set", f"warehouse={warehouse}", "--set", "spark.master=local[2]", *extra,
                 "--run-date", RUN_DATE, *args])


@pytest.fixture(scope="module")
def movielens_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    mlflow_uri = f"sqlite:///{root}/mlflow.db"
    assert cli(root / "wh", "run", extra=["--set", f"mlflow.tracking_uri={mlflow_uri}"]) == 0
    config = load_config(None, [f"warehouse={root / 'wh'}"])
    return root, config, DeltaTables.from_config(spark, config), mlflow_uri


def test_ingest_accounts_for_every_movielens_row(movielens_run):
    _, _, tables, _ = movielens_run
    assert tables.read("interactions_bronze").count() == 100836
    assert tables.read("interactions_silver").count() == 100836
    assert tables.read("interactions_quarantine").count() == 0
    items = tables.read("items")
    assert items.count() == 9742
    toy_story = items.filter(F.col("item_id") == "1").first()
    assert toy_story.title == "Toy Story (1995)" and "Animation" in toy_story.genres and "pixar" in toy_story.tags
    tag_rows = tables.read("interactions_quarantine").filter(F.col("source") == "tags").count()
    assert tag_rows == 0
    assert tables.history("interactions_silver")[0].metadata["recspark.stage"] == "ingest"


def test_featurize_outputs(movielens_run):
    _, _, tables, _ = movielens_run
    split = tables.read("interactions_split")
    counts = {r["split"]: r["count"] for r in split.groupBy("split").count().collect()}
    assert sum(counts.values()) == 100836
    assert 0.24 < counts["test"] / 100836 < 0.26
    assert split.select("user_idx").distinct().count() == 610
    assert tables.read("user_index").agg(F.max("user_idx")).first()[0] == 609
    assert tables.read("item_index").count() == 9742
    features = tables.read("user_features").filter(F.col("user_id") == "1").first()
    assert features.n_ratings == 232


def test_tables_are_readable_by_polars(movielens_run):
    _, config, _, _ = movielens_run
    silver = pl.read_delta(config.table_location("interactions_silver"))
    assert silver.height == 100836
    assert silver["event_ts"].dtype == pl.Datetime("us", "UTC")


def test_mlflow_records_counts_and_table_versions(movielens_run):
    import mlflow

    _, _, _, uri = movielens_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("recspark")
    runs = {r.data.tags["recspark.stage"]: r for r in client.search_runs([experiment.experiment_id])}
    assert runs["ingest"].data.metrics["rows_read"] == 100836
    assert runs["ingest"].data.params["wrote.interactions_silver"] == "0"
    assert runs["featurize"].data.params["read.interactions_silver"] == "0"
    assert runs["featurize"].data.metrics["test_pairs"] > 0


def test_rerunning_the_same_date_is_idempotent(movielens_run):
    root, _, tables, _ = movielens_run
    def silver_rows():  # run_id is lineage: it names the re-run, everything else must be equal
        return tables.read("interactions_silver").drop("run_id").orderBy("user_id", "item_id", "event_ts").collect()

    before = silver_rows()
    assert cli(root / "wh", "ingest", extra=["--set", "mlflow.enabled=false"]) == 0
    assert tables.version("interactions_silver") == 1
    assert silver_rows() == before
    assert tables.read("interactions_bronze").count() == 100836


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
    assert silver.first().event_ts == dt.datetime(2023, 11, 14, 22, 13, 20)


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
