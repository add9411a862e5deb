"""BI access without Spark: polars and DuckDB see exactly the published version of a table."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import types as T

from recspark.bi import duckdb_connection, duckdb_view_sql, read_polars
from recspark.io.delta import DeltaTableError, DeltaTables

SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("run_date", T.DateType()),
    ]
)

pytestmark = pytest.mark.unit
D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


@pytest.fixture
def recommendations(spark, tmp_path):
    """A run_date-partitioned table whose D2 partition was published twice: the folder holds the
    replaced files too, the log only the second publish."""
    tables = DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")

    def publish(run_date, rows):
        df = spark.createDataFrame([(u, r, i, s, run_date) for u, r, i, s in rows], SCHEMA)
        tables.write(df, "recommendations", partition_by=["run_date"], replace_partition={"run_date": run_date})

    publish(D1, [("u1", 1, "i1", 0.9), ("u1", 2, "i2", 0.5)])
    publish(D2, [("u1", 1, "stale", 0.1)])
    publish(D2, [("u1", 1, "i3", 0.8), ("u2", 1, "i1", 0.7)])
    return tables.location("recommendations")


EXPECTED = [
    ("u1", 1, "i1", 0.9, D1),
    ("u1", 1, "i3", 0.8, D2),
    ("u1", 2, "i2", 0.5, D1),
    ("u2", 1, "i1", 0.7, D2),
]


def test_polars_reads_the_latest_version_and_time_travels(recommendations):
    latest = read_polars(recommendations).sort(["user_id", "rank", "run_date"])
    assert latest.rows() == EXPECTED
    first_publish_of_d2 = read_polars(recommendations, version=1)
    assert sorted(first_publish_of_d2["item_id"].to_list()) == ["i1", "i2", "stale"]


def test_duckdb_view_sees_only_active_files_with_typed_partition_values(recommendations):
    connection = duckdb_connection({"recommendations": recommendations})
    rows = connection.sql("SELECT * FROM recommendations ORDER BY user_id, rank, run_date").fetchall()
    assert rows == EXPECTED
    column_types = dict(connection.sql("DESCRIBE recommendations").fetchall()[i][:2] for i in range(5))
    assert column_types == {
        "user_id": "VARCHAR", "rank": "INTEGER", "item_id": "VARCHAR", "score": "DOUBLE", "run_date": "DATE"
    }
    by_date = connection.sql(
        "SELECT run_date, count(*) FROM recommendations WHERE run_date = DATE '2024-03-02' GROUP BY 1"
    ).fetchall()
    assert by_date == [(D2, 2)]


def test_duckdb_view_of_an_old_version(recommendations):
    import duckdb

    rows = duckdb.sql(duckdb_view_sql(recommendations, version=1)).fetchall()
    assert sorted(r[2] for r in rows) == ["i1", "i2", "stale"]


def test_empty_table_gives_an_empty_typed_view(spark, tmp_path):
    tables = DeltaTables(spark, lambda name: str(tmp_path / name), engine="delta-rs")
    tables.write(spark.createDataFrame([], SCHEMA), "quarantine")
    connection = duckdb_connection({"quarantine": tables.location("quarantine"), "missing": str(tmp_path / "nope")})
    assert connection.sql("SELECT count(*) FROM quarantine").fetchone() == (0,)
    views = {r[0] for r in connection.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == {"quarantine"}


def test_missing_table_error_names_the_location(tmp_path):
    with pytest.raises(DeltaTableError, match="nope"):
        duckdb_view_sql(str(tmp_path / "nope"))
