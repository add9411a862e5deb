"""Candidate sources through their one interface, on a tiny hand-made history."""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from recspark.config import load_config
from recspark.sources import SourceInputs, as_candidates, get_source

pytestmark = pytest.mark.unit

# Two taste groups: users 0-2 share items 0-3, users 3-5 share items 4-7; each user misses one.
HISTORY = [(u, i) for u in range(3) for i in range(4) if i != u] + [(u, i) for u in range(3, 6) for i in range(4, 8)
                                                                     if i != u + 1]


class NoTables:
    def exists(self, name):
        return False

    def read_if_exists(self, name):
        return None


@pytest.mark.parametrize("name", ["ease", "user_knn", "popularity"])
def test_a_source_recommends_unseen_items_in_the_candidates_schema(spark, name):
    config = load_config(None, ["user_knn.min_support=1", "ease.reg_lambda=1.0"])
    history = spark.createDataFrame(HISTORY, "user_idx int, item_idx int").withColumn(
        "event_ts", F.lit("2024-01-01").cast("timestamp"))
    seen = history.select("user_idx", "item_idx")
    model = get_source(name).fit(history, SourceInputs(config, NoTables()))
    candidates = as_candidates(model.recommend(seen.select("user_idx"), 1, seen), name).collect()
    assert candidates and not {(r.user_idx, r.item_idx) for r in candidates} & set(HISTORY)
    assert {r.source for r in candidates} == {name} and {r["rank"] for r in candidates} == {1}
    if name != "popularity":  # personal sources find the item the user's group has and the user lacks
        top = {r.user_idx: r.item_idx for r in candidates}
        assert top == {0: 0, 1: 1, 2: 2, 3: 4, 4: 5, 5: 6}
