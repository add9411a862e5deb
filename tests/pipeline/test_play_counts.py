"""A play-count export (user, item, count; no event time, no rating) through ``recspark run``.

The file is tab-separated with a header and nothing else: ingest fills ``event_ts`` with the run
date (``event_time: run_date``) and maps ``count`` to the interaction weight, featurize turns the
weight into implicit confidence, and the default ALS grid (explicit points included) must skip
its explicit points instead of failing. Planted preferences: two user groups each play their own
item cluster (the larger group's cluster is the more popular overall), so ALS finds each user's
unplayed cluster items while popularity recommends the big cluster to everyone.
"""
from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from recspark.cli import main
from recspark.config import load_config
from recspark.io.delta import DeltaTables

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
        "deep.models=[]", "als.max_iter=5",
    ]
    args = [item for pair in overrides for item in ("--set", pair)]
    code = main([*args, "--run-date", RUN_DATE, "run"])
    config = load_config(None, overrides)
    return code, DeltaTables.from_config(spark, config)


def test_default_grid_publishes_for_a_play_count_file(play_count_run):
    code, tables = play_count_run
    assert code == 0
    silver = tables.read("interactions_silver")
    assert silver.count() == len(play_rows())
    assert silver.where(F.col("rating").isNotNull()).count() == 0
    assert {r.event_ts.date().isoformat() for r in silver.select("event_ts").distinct().collect()} == {RUN_DATE}
    users = sum(GROUPS.values())
    latest = tables.read("recommendations_latest")
    assert latest.select("user_id").distinct().count() == users


def test_als_beats_popularity_and_no_rating_metrics(play_count_run):
    _, tables = play_count_run
    metrics = tables.read("metrics")
    ndcg = {r.model: r.value for r in metrics.where((F.col("metric") == "ndcg") & (F.col("k") == 10)).collect()}
    assert ndcg["als"] > ndcg["popularity"] + 0.1
    assert metrics.where(F.col("metric").isin("rmse", "mae")).count() == 0
    assert {r.dataset for r in metrics.select("dataset").distinct().collect()} == {"plays"}
