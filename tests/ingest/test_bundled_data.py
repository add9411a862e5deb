"""The bundled MovieLens ratings pass validation whole (integration: the real 100,836-row file,
not a hand-made frame)."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from recspark.ingest.presets import preset_sources
from recspark.ingest.read import read_source
from recspark.ingest.validate import validate_interactions

pytestmark = pytest.mark.integration


def test_bundled_movielens_ratings_are_all_valid(spark, movielens_dir):
    ratings = preset_sources("ml-latest-small", str(movielens_dir))[0]
    bronze = read_source(spark, ratings)
    validated = validate_interactions(bronze, ratings, dt.datetime(2030, 1, 1))

    counts = validated.agg(F.count("*").alias("rows"), F.count("reason").alias("quarantined")).first()

    assert bronze.count() == 100836
    assert (counts.rows, counts.quarantined) == (100836, 0)
