"""Split methods: exact assignments on small frames, determinism, and config errors."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recspark.featurize.splits import SplitSettings
from recspark.featurize.splits import attach_indexes, split_interactions

pytestmark = pytest.mark.unit

PAIR_SCHEMA = "user_id string, item_id string, event_ts timestamp"
SPLIT_SCHEMA = "user_id string, item_id string, event_ts timestamp, split string"


def day(n: int) -> dt.datetime:
    return dt.datetime(2024, 1, n)


def _split(spark, rows, **config):
    pairs = spark.createDataFrame(rows, PAIR_SCHEMA)
    return split_interactions(pairs, SplitSettings(**config))


def test_leave_last_n_with_validation(spark):
    rows = [
        # u1: i3 and i4 share the last time; the larger item_id counts as later
        ("u1", "i1", day(1)), ("u1", "i2", day(2)), ("u1", "i3", day(3)), ("u1", "i4", day(3)),
        ("u2", "i1", day(1)), ("u2", "i2", day(5)),  # below min_user_interactions
        ("u3", "i5", day(9)), ("u3", "i1", day(7)), ("u3", "i2", day(8)),
    ]
    result = _split(spark, rows, method="leave_last_n", n=1, min_user_interactions=3)
    expected = spark.createDataFrame(
        [
            ("u1", "i1", day(1), "train"), ("u1", "i2", day(2), "train"),
            ("u1", "i3", day(3), "validation"), ("u1", "i4", day(3), "test"),
            ("u2", "i1", day(1), "train"), ("u2", "i2", day(5), "train"),
            ("u3", "i5", day(9), "test"), ("u3", "i1", day(7), "train"),
            ("u3", "i2", day(8), "validation"),
        ],
        SPLIT_SCHEMA,
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_leave_last_n_without_validation(spark):
    rows = [
        ("u1", "i1", day(1)), ("u1", "i2", day(2)), ("u1", "i3", day(3)), ("u1", "i4", day(4)),
        ("u2", "i1", day(1)), ("u2", "i2", day(2)),
    ]
    result = _split(
        spark, rows, method="leave_last_n", n=2, leave_last_n_validation=False, min_user_interactions=3
    )
    expected = spark.createDataFrame(
        [
            ("u1", "i1", day(1), "train"), ("u1", "i2", day(2), "train"),
            ("u1", "i3", day(3), "test"), ("u1", "i4", day(4), "test"),
            ("u2", "i1", day(1), "train"), ("u2", "i2", day(2), "train"),
        ],
        SPLIT_SCHEMA,
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_time_split_explicit_cutoffs_are_inclusive_starts(spark):
    rows = [("u1", "i1", day(4)), ("u1", "i2", day(5)), ("u2", "i1", day(7)), ("u2", "i2", day(8)),
            ("u2", "i3", day(9))]
    result = _split(spark, rows, method="time", validation_start="2024-01-05", test_start="2024-01-08")
    expected = spark.createDataFrame(
        [("u1", "i1", day(4), "train"), ("u1", "i2", day(5), "validation"),
         ("u2", "i1", day(7), "validation"), ("u2", "i2", day(8), "test"), ("u2", "i3", day(9), "test")],
        SPLIT_SCHEMA,
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_time_split_test_start_only_has_no_validation(spark):
    rows = [("u1", "i1", day(4)), ("u1", "i2", day(8))]
    result = _split(spark, rows, method="time", test_start="2024-01-08T00:00:00+00:00")
    expected = spark.createDataFrame(
        [("u1", "i1", day(4), "train"), ("u1", "i2", day(8), "test")], SPLIT_SCHEMA
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_time_split_computed_cutoffs(spark):
    # ten pairs on days 1..10: q(0.8) = day 8, q(0.6) = day 6
    rows = [(f"u{n % 3}", f"i{n}", day(n)) for n in range(1, 11)]
    result = _split(spark, rows, method="time", validation_fraction=0.2, test_fraction=0.2)
    expected_split = {1: "train", 2: "train", 3: "train", 4: "train", 5: "train", 6: "train",
                      7: "validation", 8: "validation", 9: "test", 10: "test"}
    expected = spark.createDataFrame(
        [(u, i, ts, expected_split[ts.day]) for u, i, ts in rows], SPLIT_SCHEMA
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_random_stratified_counts_per_user(spark):
    rows = [("u1", f"i{n}", day(1)) for n in range(4)]  # 4 pairs: 1 test, 1 validation
    rows += [("u2", f"i{n}", day(1)) for n in range(2)]  # 2 pairs: round(0.5) = 1 each (half up)
    rows += [("u3", "i0", day(1))]  # 1 pair: round(0.25) = 0
    rows += [("u4", f"i{n}", day(1)) for n in range(20)]  # 20 pairs: 5 test, 5 validation
    result = _split(spark, rows, method="random_stratified", test_ratio=0.25, validation_ratio=0.25)
    counts = result.groupBy("user_id", "split").count()
    expected = spark.createDataFrame(
        [("u1", "test", 1), ("u1", "validation", 1), ("u1", "train", 2),
         ("u2", "test", 1), ("u2", "validation", 1), ("u3", "train", 1),
         ("u4", "test", 5), ("u4", "validation", 5), ("u4", "train", 10)],
        "user_id string, split string, count long",
    )
    assert_df_equality(counts, expected, ignore_row_order=True, ignore_nullable=True)


def test_random_stratified_rounds_the_exact_decimal_ratio(spark):
    rows = [("u1", f"i{n}", day(1)) for n in range(10)]  # 0.15 * 10 = 1.5 -> 2 (float gives 1.4999...)
    result = _split(spark, rows, method="random_stratified", test_ratio=0.15)
    assert result.where("split = 'test'").count() == 2


def test_random_stratified_follows_the_seeded_hash_order(spark):
    rows = [("u1", f"i{n}", day(1)) for n in range(4)] + [("u2", f"i{n}", day(1)) for n in range(8)]
    pairs = spark.createDataFrame(rows, PAIR_SCHEMA)
    result = split_interactions(pairs, SplitSettings(method="random_stratified", seed=7, test_ratio=0.25))
    hashes = pairs.select(
        "user_id", "item_id", F.xxhash64(F.lit(7).cast("long"), "user_id", "item_id").alias("h")
    ).collect()
    expected_rows = []
    for user, n_test in (("u1", 1), ("u2", 2)):
        ordered = sorted((r.h, r.item_id) for r in hashes if r.user_id == user)
        expected_rows += [
            (user, item, day(1), "test" if rank < n_test else "train")
            for rank, (_, item) in enumerate(ordered)
        ]
    expected = spark.createDataFrame(expected_rows, SPLIT_SCHEMA)
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


def test_random_stratified_by_item(spark):
    rows = [(f"u{n}", "i1", day(1)) for n in range(4)] + [("u0", "i2", day(1))]
    result = _split(spark, rows, method="random_stratified", stratify_by="item", test_ratio=0.5)
    counts = result.groupBy("item_id", "split").count()
    expected = spark.createDataFrame(
        [("i1", "test", 2), ("i1", "train", 2), ("i2", "test", 1)], "item_id string, split string, count long"
    )
    assert_df_equality(counts, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.fixture(scope="module")
def synthetic_pairs(spark):
    return spark.range(3000).select(
        F.concat(F.lit("u"), (F.col("id") % 60).cast("string")).alias("user_id"),
        F.concat(F.lit("i"), F.col("id").cast("string")).alias("item_id"),
        F.timestamp_seconds(F.lit(1_700_000_000) + F.col("id") * 37 % 5000).alias("event_ts"),
    )


@pytest.mark.parametrize(
    "config",
    [
        SplitSettings(method="random_stratified", test_ratio=0.2, validation_ratio=0.1),
        SplitSettings(method="leave_last_n", n=2, min_user_interactions=5),
        SplitSettings(method="time", test_fraction=0.2, validation_fraction=0.1),
    ],
    ids=lambda c: c.method,
)
def test_split_is_deterministic_and_partition_independent(synthetic_pairs, config):
    first = split_interactions(synthetic_pairs, config)
    again = split_interactions(synthetic_pairs.repartition(7), config)
    assert_df_equality(first, again, ignore_row_order=True)
    assert first.count() == synthetic_pairs.count()
    assert first.groupBy("user_id", "item_id").count().where("count > 1").count() == 0
    assert {row.split for row in first.select("split").distinct().collect()} == {
        "train", "validation", "test"
    }


def test_random_stratified_seed_changes_assignment(synthetic_pairs):
    config = SplitSettings(method="random_stratified", test_ratio=0.25, seed=1)
    first = split_interactions(synthetic_pairs, config)
    other_seed = split_interactions(synthetic_pairs, dataclasses.replace(config, seed=2))
    changed = (
        first.alias("a")
        .join(other_seed.alias("b"), on=["user_id", "item_id"])
        .where(F.col("a.split") != F.col("b.split"))
        .count()
    )
    assert changed > 0
    # 60 users with 50 pairs each: round(0.25 * 50) = 13 test pairs per user
    assert first.where("split = 'test'").count() == other_seed.where("split = 'test'").count() == 780


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(method="kfold"), "unknown split method"),
        (dict(test_ratio=1.2), "test_ratio must be in"),
        (dict(test_ratio=-0.1), "test_ratio must be in"),
        (dict(test_ratio=0.6, validation_ratio=0.4), "must be < 1"),
        (dict(stratify_by="session"), "stratify_by"),
        (dict(method="leave_last_n", n=0), "split.n must be"),
        (dict(method="leave_last_n", n=1, min_user_interactions=2), "min_user_interactions"),
        (dict(method="time", test_fraction=0.5, validation_fraction=0.5), "must be < 1"),
        (dict(method="time", validation_start="2024-01-01"), "test_start is not"),
        (dict(method="time", test_start="last tuesday"), "ISO date"),
        (dict(method="time", validation_start="2024-02-01", test_start="2024-01-01"), "earlier"),
    ],
)
def test_invalid_split_settings_are_rejected_when_built(fields, message):
    with pytest.raises(ValueError, match=message):
        SplitSettings(**fields)


def test_attach_indexes(spark):
    pairs = spark.createDataFrame([("u1", "i2", day(1)), ("u2", "i1", day(2))], PAIR_SCHEMA)
    users = spark.createDataFrame([("u1", 0), ("u2", 1)], "user_id string, user_idx int")
    items = spark.createDataFrame([("i1", 0), ("i2", 1), ("i3", 2)], "item_id string, item_idx int")
    result = attach_indexes(pairs, users, items)
    expected = spark.createDataFrame(
        [("i2", "u1", day(1), 0, 1), ("i1", "u2", day(2), 1, 0)],
        "item_id string, user_id string, event_ts timestamp, user_idx int, item_idx int",
    )
    assert_df_equality(result, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("config", [dict(method="time"), dict(method="time", test_start="2024-01-08"),
                                    dict(method="leave_last_n", n=1, min_user_interactions=3)])
def test_time_ordered_splits_refuse_one_filled_event_time(spark, config):
    rows = [(u, i, day(1)) for u in ("u1", "u2") for i in ("i1", "i2", "i3", "i4")]  # event_time: run_date
    with pytest.raises(ValueError, match=f"featurize.split.method {config['method']} orders pairs by event time, "
                                         "but every pair has the same event_ts"):
        _split(spark, rows, **config)


def test_random_split_accepts_one_filled_event_time(spark):
    rows = [(u, i, day(1)) for u in ("u1", "u2") for i in ("i1", "i2", "i3", "i4")]
    counts = {r.split: r["count"] for r in _split(spark, rows, test_ratio=0.25).groupBy("split").count().collect()}
    assert counts == {"train": 6, "test": 2}
