"""The candidates stage's summary of its lists."""
from __future__ import annotations

import pytest

from recspark.pipeline.candidates import users_and_rows

pytestmark = pytest.mark.unit


def test_users_and_rows_count_distinct_users_and_every_row(spark):
    lists = spark.createDataFrame([(1, 10, "als"), (1, 11, "als"), (1, 10, "popularity"), (2, 10, "als")],
                                  "user_idx int, item_idx int, source string")
    assert users_and_rows(lists) == (2, 4)
    assert users_and_rows(lists.limit(0)) == (0, 0)
