"""Stable id -> index assignment."""
from __future__ import annotations

import pytest

import datetime as dt

from chispa import assert_df_equality

from recspark.featurize.ids import assign_stable_index, item_index, user_index
from recspark.schemas import INTERACTIONS, ITEMS

pytestmark = pytest.mark.unit

INDEX_SCHEMA = "user_id string, user_idx int"


def _interactions(spark, pairs):
    ts = dt.datetime(2024, 1, 1)
    rows = [(u, i, "rating", 4.0, 1.0, ts, "test", None, dt.date(2024, 1, 2), "r1") for u, i in pairs]
    return spark.createDataFrame(rows, INTERACTIONS)


def _items(spark, item_ids):
    rows = [(i, f"title {i}", ["Drama"], [], f"title {i} drama", None, dt.date(2024, 1, 2)) for i in item_ids]
    return spark.createDataFrame(rows, ITEMS)


def test_first_run_is_dense_in_id_order(spark):
    ids = spark.createDataFrame([("b",), ("a",), ("c",), ("a",), (None,)], "user_id string")
    result = assign_stable_index(ids, None, "user_id", "user_idx")
    expected = spark.createDataFrame([("a", 0), ("b", 1), ("c", 2)], INDEX_SCHEMA)
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_rerun_keeps_old_indexes_and_appends_new_ids(spark):
    # localCheckpoint stands in for the stored index table a re-run reads back
    first = assign_stable_index(
        spark.createDataFrame([("b",), ("a",), ("c",)], "user_id string"), None, "user_id", "user_idx"
    ).localCheckpoint()
    # "b" is gone, "e" and "d" are new: b keeps 1, new ids follow the max in id order.
    second_ids = spark.createDataFrame([("c",), ("e",), ("a",), ("d",)], "user_id string")
    second = assign_stable_index(second_ids, first, "user_id", "user_idx").localCheckpoint()
    expected = spark.createDataFrame([("a", 0), ("b", 1), ("c", 2), ("d", 3), ("e", 4)], INDEX_SCHEMA)
    assert_df_equality(second, expected, ignore_row_order=True, ignore_nullable=True)
    third = assign_stable_index(second_ids, second, "user_id", "user_idx")
    assert_df_equality(third, expected, ignore_row_order=True, ignore_nullable=True)


def test_new_ids_start_after_max_even_with_gaps(spark):
    existing = spark.createDataFrame([("x", 5), ("w", 0)], INDEX_SCHEMA)
    ids = spark.createDataFrame([("y",), ("x",)], "user_id string")
    result = assign_stable_index(ids, existing, "user_id", "user_idx")
    expected = spark.createDataFrame([("w", 0), ("x", 5), ("y", 6)], INDEX_SCHEMA)
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_user_index_from_interactions(spark):
    interactions = _interactions(spark, [("u2", "i1"), ("u1", "i1"), ("u2", "i2")])
    expected = spark.createDataFrame([("u1", 0), ("u2", 1)], INDEX_SCHEMA)
    assert_df_equality(user_index(interactions), expected, ignore_row_order=True, ignore_nullable=True)


def test_item_index_covers_items_without_interactions(spark):
    interactions = _interactions(spark, [("u1", "i3"), ("u1", "i1")])
    items = _items(spark, ["i1", "i2"])
    first = item_index(interactions, items).localCheckpoint()
    expected_first = spark.createDataFrame([("i1", 0), ("i2", 1), ("i3", 2)], "item_id string, item_idx int")
    assert_df_equality(first, expected_first, ignore_row_order=True, ignore_nullable=True)
    second = item_index(_interactions(spark, [("u1", "i0")]), _items(spark, ["i4"]), first)
    expected_second = spark.createDataFrame(
        [("i1", 0), ("i2", 1), ("i3", 2), ("i0", 3), ("i4", 4)], "item_id string, item_idx int"
    )
    assert_df_equality(second, expected_second, ignore_row_order=True, ignore_nullable=True)
