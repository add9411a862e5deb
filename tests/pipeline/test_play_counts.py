"""A play-count export (user, item, count; no event time, no rating) through ``recspark run``.

The file is tab-separated with a header and nothing else: ingest fills ``event_ts`` with the run
date (``event_time: run_date``) and maps ``count`` to the interaction weight, featurize turns the
weight into implicit confidence, and an ALS grid with explicit points must skip them instead of
failing. Planted preferences: two user groups each play their own
item cluster (the larger group's cluster is the more popular overall), so ALS finds each user's
unplayed cluster items while popularity recommends the big cluster to everyone.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from recspark.cli import main
from recspark.config import load_config
from recspark.io.delta import DeltaTables
from recspark.sources import CandidateSource, register_source, unregister_source

pytestmark = pytest.mark.integration
RUN_DATE = "2024-06-01"
# group name -> (users, cluster items); every user plays 9 of its cluster's 12 items
GROUPS = {"a": 24, "b": 16}
CLUSTER = 12
PLAYED = 9


def play_rows() -> list[tuple[str, str, int]]:
    """(user, item, play count): user j of a group plays the 9 cluster items starting at j
    (rotating), the first ones most."""
    rows = []
    for group, n_users in GROUPS.items():
        for j in range(n_users):
            for position in range(PLAYED):
                item = f"{group}{(j + position) % CLUSTER:02d}"
                rows.append((f"{group}-user{j:02d}", item, 40 - 4 * position))
    return rows


def sources_override(path) -> str:
    """The play file as the only source: no item file, so there is no ``items`` table, no item
    text and no content candidates."""
    plays = {"name": "plays", "kind": "interactions", "paths": [str(path)], "delimiter": "\t",
             "event_time": "run_date", "columns": {"user_id": "user", "item_id": "item", "weight": "count"}}
    return f"ingest.sources={json.dumps([plays])}"


@pytest.fixture(scope="module")
def play_count_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("plays")
    plays = root / "plays.tsv"
    plays.write_text("user\titem\tcount\n" + "".join(f"{u}\t{i}\t{c}\n" for u, i, c in play_rows()))
    overrides = [
        f"warehouse={root / 'wh'}", "spark.master=local[2]", f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db",
        "ingest.preset=null", sources_override(plays),
        "deep.models=[]", "als.max_iter=5", "als.grid.implicit_prefs=[true, false]",
    ]
    args = [item for pair in overrides for item in ("--set", pair)]
    code = main([*args, "--run-date", RUN_DATE, "run"])
    config = load_config(None, overrides)
    return code, DeltaTables.from_config(spark, config), overrides


def test_a_grid_with_explicit_points_publishes_for_a_play_count_file(play_count_run):
    code, tables, _ = play_count_run
    assert code == 0
    silver = tables.read("interactions_silver")
    assert silver.count() == len(play_rows())
    assert silver.where(F.col("rating").isNotNull()).count() == 0
    assert {r.event_ts.date().isoformat() for r in silver.select("event_ts").distinct().collect()} == {RUN_DATE}
    users = sum(GROUPS.values())
    latest = tables.read("recommendations_latest")
    assert latest.select("user_id").distinct().count() == users


def test_als_beats_popularity_and_no_rating_metrics(play_count_run):
    _, tables, _ = play_count_run
    metrics = tables.read("metrics")
    ndcg = {r.model: r.value for r in metrics.where((F.col("metric") == "ndcg") & (F.col("k") == 10)).collect()}
    assert ndcg["als"] > ndcg["popularity"] + 0.1
    assert metrics.where(F.col("metric").isin("rmse", "mae")).count() == 0
    assert not [model for model in ndcg if model.startswith("cold_")]  # no item text: no cold-start cohorts
    assert {r.dataset for r in metrics.select("dataset").distinct().collect()} == {"plays"}


class MostRatedSource(CandidateSource):
    """A toy plug-in source: the 50 most-rated items a user has not seen."""

    name = "most_rated"

    def fit(self, history, inputs):
        return MostRatedModel(history.groupBy("item_idx").count().orderBy(F.desc("count"), "item_idx").limit(50))


class MostRatedModel:
    def __init__(self, top):
        self.top = top

    def recommend(self, users, n, seen):
        from pyspark.sql import Window

        unseen = users.select("user_idx").distinct().crossJoin(self.top).join(seen, ["user_idx", "item_idx"], "left_anti")
        order = Window.partitionBy("user_idx").orderBy(F.desc("count"), "item_idx")
        ranked = unseen.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= n)
        return ranked.select("user_idx", "item_idx", F.col("count").cast("double").alias("score"), "rank")


def test_a_new_candidate_source_is_one_class_and_one_registry_line(play_count_run):
    _, tables, overrides = play_count_run
    args = [item for pair in overrides for item in ("--set", pair)]
    register_source(MostRatedSource())
    try:
        quiet = ["--set", "mlflow.enabled=false"]
        assert main([*args, *quiet, "--set", "candidates.sources=[als, popularity, most_rated]", "--run-date", RUN_DATE,
                     "candidates"]) == 0
        assert main([*args, *quiet, "--run-date", RUN_DATE, "evaluate"]) == 0
        assert main([*args, *quiet, "--set", "publish.sources=[most_rated, popularity]",
                     "--set", "publish.max_relative_drop=1.0", "--run-date", RUN_DATE, "publish"]) == 0
    finally:
        unregister_source("most_rated")
    ndcg = {r.model: r.value for r in tables.read("metrics").where((F.col("metric") == "ndcg") & (F.col("k") == 10)).collect()}
    assert set(ndcg) >= {"als", "popularity", "most_rated"} and ndcg["most_rated"] > 0
    published = tables.read("recommendations").where(F.col("run_date") == F.lit(dt.date.fromisoformat(RUN_DATE)))
    assert {r.source for r in published.select("source").distinct().collect()} <= {"most_rated", "popularity"}
    assert published.where(F.col("source") == "most_rated").count() > 0.9 * sum(GROUPS.values()) * 10
