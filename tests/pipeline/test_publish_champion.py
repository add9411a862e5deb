"""Publish serves the champion rerank chose on validation, then fills from publish.sources."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from recspark.pipeline.publish import CHAMPION_KEY, champion_sources
from recspark.publish import PublishSettings, final_recommendations, publish_order

pytestmark = pytest.mark.unit

SOURCES = ["ranker", "hybrid", "als", "popularity"]


class RecordedMetadata:
    """The stage table view's ``latest_metadata`` with a fixed candidates commit."""

    def __init__(self, metadata: dict[str, str]):
        self.metadata = metadata

    def latest_metadata(self, name) -> dict[str, str]:
        assert name.name == "candidates"
        return self.metadata


def _ctx(metadata: dict[str, str], **publish) -> SimpleNamespace:
    settings = PublishSettings(**({"k": 3, "sources": SOURCES} | publish))
    return SimpleNamespace(config=SimpleNamespace(publish=settings), tables=RecordedMetadata(metadata))


def _candidates(spark):
    """User 0: als 1-3, hybrid 4-6, ranker 7-8 (two items only), popularity 9-11."""
    rows = [(0, item, source, float(10 - rank), rank, None)
            for source, items in (("als", [1, 2, 3]), ("hybrid", [4, 5, 6]), ("ranker", [7, 8]),
                                  ("popularity", [9, 10, 11]))
            for rank, item in enumerate(items, start=1)]
    return spark.createDataFrame(rows, "user_idx int, item_idx int, source string, score double, rank int, "
                                       "because_item_idx int")


def _published(spark, ctx) -> list[tuple[int, str]]:
    order, _ = champion_sources(ctx)
    rows = final_recommendations(_candidates(spark), order, 3).orderBy("rank").collect()
    return [(r.item_idx, r.source) for r in rows]


def test_the_validated_champion_leads_the_published_lists(spark):
    assert _published(spark, _ctx({CHAMPION_KEY: "als"})) == [(1, "als"), (2, "als"), (3, "als")]
    # the ranker's list is short for this user: the next source in publish.sources fills it
    assert _published(spark, _ctx({CHAMPION_KEY: "ranker"})) == [(7, "ranker"), (8, "ranker"), (4, "hybrid")]


def test_without_a_usable_champion_publish_keeps_its_source_order(spark):
    assert _published(spark, _ctx({})) == [(7, "ranker"), (8, "ranker"), (4, "hybrid")]
    assert _published(spark, _ctx({CHAMPION_KEY: "als"}, champion=False)) == [(7, "ranker"), (8, "ranker"), (4, "hybrid")]
    assert _published(spark, _ctx({CHAMPION_KEY: "ease"})) == [(7, "ranker"), (8, "ranker"), (4, "hybrid")]


def test_publish_order_moves_only_a_listed_champion():
    assert publish_order(["a", "b", "c"], "c") == ["c", "a", "b"]
    assert publish_order(["a", "b", "c"], "d") == ["a", "b", "c"]
    assert publish_order(["a", "b", "c"], None) == ["a", "b", "c"]
