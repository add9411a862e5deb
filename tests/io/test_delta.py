"""The Delta table layer (delta-rs engine): round trips, modes, time travel, schema checks."""
from __future__ import annotations

import datetime as dt
import os

import polars as pl
import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable, QueryBuilder
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.io.delta import DeltaTableError, DeltaTables, SchemaMismatchError, choose_engine

SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("n", T.IntegerType()),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("run_date", T.DateType()),
        T.StructField("items", T.ArrayType(T.StringType())),
    ]
)

pytestmark = pytest.mark.unit
TS = dt.datetime(2024, 3, 1, 12, 30, 15, 123456)
D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


@pytest.fixture
def tables(spark, tmp_path):
    return DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")


def frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA)


def rows_for(run_date, users):
    return [(u, 1.5 * i, i, TS, run_date, [u, "x"]) for i, u in enumerate(users)]


def test_auto_engine_is_delta_rs_without_delta_extension(spark):
    assert choose_engine(spark, "auto") == "delta-rs"
    assert choose_engine(spark, "delta-spark") == "delta-spark"
    with pytest.raises(ValueError, match="delta.engine"):
        choose_engine(spark, "parquet")


def test_round_trip_keeps_rows_and_types(spark, tables):
    df = frame(spark, rows_for(D1, ["a", "b", "c"]) + [(None, None, None, None, D1, None)])
    assert tables.write(df, "t") == 0
    assert_df_equality(tables.read("t"), df, ignore_row_order=True, ignore_nullable=True)


def test_overwrite_replaces_and_append_adds(spark, tables):
    tables.write(frame(spark, rows_for(D1, ["a", "b"])), "t")
    tables.write(frame(spark, rows_for(D1, ["c"])), "t", mode="overwrite")
    assert sorted(r.user_id for r in tables.read("t").collect()) == ["c"]
    version = tables.write(frame(spark, rows_for(D1, ["d", "e"])), "t", mode="append")
    assert version == 2
    assert sorted(r.user_id for r in tables.read("t").collect()) == ["c", "d", "e"]


def test_partition_overwrite_touches_only_that_partition(spark, tables, tmp_path):
    tables.write(frame(spark, rows_for(D1, ["a", "b"]) + rows_for(D2, ["c"])), "p", partition_by=["run_date"])
    assert (tmp_path / "p" / "run_date=2024-03-01").is_dir()
    tables.write(
        frame(spark, rows_for(D1, ["z"])), "p", partition_by=["run_date"], replace_partition={"run_date": D1}
    )
    got = sorted((r.run_date, r.user_id) for r in tables.read("p").collect())
    assert got == [(D1, "z"), (D2, "c")]


def test_partition_overwrite_refuses_rows_of_other_partitions(spark, tables):
    tables.write(frame(spark, rows_for(D1, ["a"])), "p", partition_by=["run_date"])
    with pytest.raises(DeltaTableError, match="other partitions"):
        tables.write(
            frame(spark, rows_for(D2, ["b"])), "p", partition_by=["run_date"], replace_partition={"run_date": D1}
        )
    assert tables.version("p") == 0


def test_time_travel_reads_old_versions(spark, tables):
    tables.write(frame(spark, rows_for(D1, ["a"])), "t")
    tables.write(frame(spark, rows_for(D1, ["b", "c"])), "t", mode="append")
    tables.write(frame(spark, rows_for(D1, ["d"])), "t")
    assert [r.user_id for r in tables.read("t", version=0).collect()] == ["a"]
    assert sorted(r.user_id for r in tables.read("t", version=1).collect()) == ["a", "b", "c"]
    assert [r.user_id for r in tables.read("t").collect()] == ["d"]


def test_history_records_commit_metadata(spark, tables):
    tables.write(frame(spark, rows_for(D1, ["a"])), "t", metadata={"run_id": "r-1", "stage": "ingest"})
    tables.write(frame(spark, rows_for(D1, ["b", "c"])), "t", mode="append", metadata={"run_id": "r-2"})
    history = tables.history("t")
    assert [c.version for c in history] == [1, 0]
    assert history[0].metadata == {"recspark.run_id": "r-2", "recspark.rows": "2"}
    assert history[1].metadata["recspark.stage"] == "ingest"


def test_append_with_other_schema_is_refused_with_clear_message(spark, tables):
    tables.write(frame(spark, rows_for(D1, ["a"])), "t")
    other = frame(spark, rows_for(D1, ["b"])).withColumn("n", F.col("n").cast("string")).withColumn("extra", F.lit(1))
    with pytest.raises(SchemaMismatchError, match=r"unexpected columns \['extra'\].*n: table int vs data string"):
        tables.write(other, "t", mode="append")
    assert tables.version("t") == 0


def test_full_overwrite_with_new_schema_needs_overwrite_schema(spark, tables):
    tables.write(frame(spark, rows_for(D1, ["a"])), "t")
    narrow = spark.createDataFrame([("q",)], "user_id string")
    with pytest.raises(SchemaMismatchError, match="overwrite_schema=True"):
        tables.write(narrow, "t")
    tables.write(narrow, "t", overwrite_schema=True)
    assert tables.read("t").columns == ["user_id"]


def test_append_reorders_columns_to_table_order(spark, tables):
    tables.write(frame(spark, rows_for(D1, ["a"])), "t")
    shuffled = frame(spark, rows_for(D1, ["b"])).select("items", "run_date", "event_ts", "n", "score", "user_id")
    tables.write(shuffled, "t", mode="append")
    assert tables.read("t").columns == SCHEMA.names
    assert sorted(r.user_id for r in tables.read("t").collect()) == ["a", "b"]


def test_empty_frame_creates_readable_empty_table(spark, tables):
    tables.write(frame(spark, []), "empty", partition_by=["run_date"])
    assert tables.read("empty").count() == 0
    assert tables.read("empty").schema.names == SCHEMA.names


def test_failed_write_keeps_previous_version_and_leaves_no_files(spark, tables, tmp_path):
    tables.write(frame(spark, rows_for(D1, ["a", "b"])), "t")
    files_before = sorted(p.name for p in (tmp_path / "t").glob("*.parquet"))

    def explode_on_c(user_id):
        if user_id == "c":
            raise ValueError("boom")
        return user_id

    failing = frame(spark, rows_for(D1, ["b", "c"])).withColumn("user_id", F.udf(explode_on_c)("user_id"))
    with pytest.raises(Exception, match="boom"):
        tables.write(failing.repartition(2), "t")
    assert tables.version("t") == 0
    assert sorted(r.user_id for r in tables.read("t").collect()) == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "t").glob("*.parquet")) == files_before


def test_reading_a_missing_table_is_a_clear_error(tables):
    with pytest.raises(DeltaTableError, match="does not exist"):
        tables.read("nope")
    assert tables.version("nope") is None


def test_tables_are_readable_by_deltalake_and_polars(spark, tables, tmp_path):
    tables.write(frame(spark, rows_for(D1, ["a", "b"]) + rows_for(D2, ["c"])), "p", partition_by=["run_date"])
    location = str(tmp_path / "p")
    # deltalake's own query engine (its pyarrow dataset path needs pyarrow >= 15; see README).
    result = QueryBuilder().register("p", DeltaTable(location)).execute("SELECT user_id FROM p ORDER BY user_id")
    assert pl.DataFrame(result.read_all())["user_id"].to_list() == ["a", "b", "c"]
    polars_frame = pl.read_delta(location).sort("user_id")
    assert polars_frame["user_id"].to_list() == ["a", "b", "c"]
    assert polars_frame["run_date"].to_list() == [D1, D1, D2]
    assert polars_frame["event_ts"][0] == TS.replace(tzinfo=dt.timezone.utc)


def test_statistics_let_readers_skip_files(spark, tables, tmp_path):
    tables.write(frame(spark, rows_for(D1, ["a", "b"])).coalesce(1), "t")
    actions = DeltaTable(str(tmp_path / "t")).get_add_actions(flatten=True)
    row = pa.table(actions).to_pylist()[0]
    assert row["num_records"] == 2
    assert row["min.user_id"] == "a" and row["max.user_id"] == "b"
    assert row["max.event_ts"] >= TS.replace(tzinfo=dt.timezone.utc)
    assert row["null_count.score"] == 0
    assert os.path.getsize(tmp_path / "t" / row["path"]) == row["size_bytes"]
