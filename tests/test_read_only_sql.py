"""BI SQL is read-only: `recspark sql` (Spark and DuckDB) and the Thrift server's session refuse
writes and DDL before they run, and queries keep working."""
from __future__ import annotations

import hashlib

import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from recspark.bi import duckdb_connection
from recspark.cli import main
from recspark.io.delta import DeltaTables, active_files
from recspark.read_only_sql import (
    ReadOnlyQueryError,
    read_only_session,
    require_read_only_duckdb_query,
    require_read_only_query,
)

pytestmark = pytest.mark.unit

SPARK_QUERIES = [
    "SELECT 1",
    "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    "VALUES (1, 2)",
    "TABLE interactions_silver",
    "FROM interactions_silver SELECT user_id",
    "SELECT * FROM interactions_silver WHERE user_id IN (SELECT 'u1' AS u)",
    "SHOW TABLES",
    "SHOW DATABASES",
    "SHOW COLUMNS IN interactions_silver",
    "DESCRIBE interactions_silver",
    "DESCRIBE QUERY SELECT 1",
    "EXPLAIN SELECT 1",
    "USE default",
    "SET",
    "SET spark.sql.shuffle.partitions",
]
SPARK_WRITES = [
    "INSERT OVERWRITE DIRECTORY '/tmp/recspark-never' USING parquet SELECT 1",
    "INSERT INTO interactions_silver SELECT 1",
    "WITH c AS (SELECT 1) INSERT INTO interactions_silver SELECT * FROM c",
    "FROM s INSERT INTO a SELECT x INSERT INTO b SELECT x",
    "EXPLAIN INSERT INTO interactions_silver SELECT 1",
    "CREATE TABLE t USING parquet AS SELECT 1",
    "CREATE TABLE t (a INT) USING parquet LOCATION '/tmp/recspark-never'",
    "CREATE OR REPLACE TEMP VIEW interactions_silver AS SELECT 1",
    "DROP TABLE interactions_silver",
    "DROP VIEW interactions_silver",
    "TRUNCATE TABLE interactions_silver",
    "DELETE FROM interactions_silver WHERE true",
    "CACHE TABLE c AS SELECT 1",
    "ADD JAR /tmp/x.jar",
    "LOAD DATA LOCAL INPATH '/tmp/x' INTO TABLE t",
    "CREATE FUNCTION f AS 'x.Y'",
    "SET spark.sql.runSQLOnFiles=true",
    "RESET",
]
DUCKDB_QUERIES = [
    "SELECT 1",
    "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    "VALUES (1)",
    "FROM range(3)",
    "SHOW TABLES",
    "DESCRIBE SELECT 1",
    "SUMMARIZE SELECT 1",
    "EXPLAIN SELECT 1",
]
DUCKDB_WRITES = [
    "COPY (SELECT 1) TO '/tmp/recspark-never.parquet'",
    "SELECT 1; COPY (SELECT 1) TO '/tmp/recspark-never.parquet'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/recspark-never.parquet'",
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN COPY (SELECT 1) TO '/tmp/recspark-never.parquet'",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO t VALUES (1)",
    "ATTACH '/tmp/recspark-never.db'",
    "EXPORT DATABASE '/tmp/recspark-never'",
    "SET enable_external_access = true",
    "INSTALL httpfs",
    "CALL pragma_version()",
]

SCHEMA = T.StructType([T.StructField("user_id", T.StringType()), T.StructField("rating", T.DoubleType())])
ROWS = [("u1", 4.0), ("u2", 3.0)]


@pytest.fixture
def warehouse(spark, tmp_path):
    """A warehouse holding ``interactions_silver``, and a config file pointing at it."""
    tables = DeltaTables(spark, lambda name: str(tmp_path / "warehouse" / name), engine="delta-rs")
    tables.write(spark.createDataFrame(ROWS, SCHEMA), "interactions_silver")
    config = tmp_path / "config.yaml"
    config.write_text(f"warehouse: {tmp_path / 'warehouse'}\ndelta:\n  engine: delta-rs\nspark:\n  master: local[2]\n")
    return tables, str(config)


def _digest(paths) -> dict[str, str]:
    return {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}


@pytest.mark.parametrize("query", SPARK_QUERIES)
def test_spark_read_only_statements_pass(spark, query):
    assert require_read_only_query(query, spark) == query


@pytest.mark.parametrize("query", SPARK_WRITES)
def test_spark_writes_and_ddl_are_refused(spark, query):
    with pytest.raises(ReadOnlyQueryError, match="read-only SQL"):
        require_read_only_query(query, spark)


@pytest.mark.parametrize("query", ["", "   ", "SELEC 1", "SELECT 1; SELECT 2"])
def test_spark_empty_or_unparseable_input_is_refused(spark, query):
    with pytest.raises(ReadOnlyQueryError):
        require_read_only_query(query, spark)


@pytest.mark.parametrize("query", DUCKDB_QUERIES)
def test_duckdb_read_only_statements_pass(query):
    assert require_read_only_duckdb_query(query) == query


@pytest.mark.parametrize("query", DUCKDB_WRITES)
def test_duckdb_writes_are_refused(query):
    with pytest.raises(ReadOnlyQueryError, match="read-only SQL"):
        require_read_only_duckdb_query(query)


def test_recspark_sql_cannot_overwrite_a_table_directory(warehouse):
    """Issue 14.5: this statement used to delete interactions_silver, _delta_log included."""
    tables, config = warehouse
    location = tables.location("interactions_silver")
    attack = f"INSERT OVERWRITE DIRECTORY '{location}' USING parquet SELECT 1"
    assert main(["sql", "--config", config, attack]) == 2
    assert DeltaTable(location).version() == 0
    assert sorted(DeltaTable(location).to_pyarrow_table().to_pylist(), key=lambda r: r["user_id"]) == [
        {"user_id": u, "rating": r} for u, r in ROWS
    ]


def test_recspark_sql_duckdb_cannot_overwrite_an_active_part_file(warehouse):
    """Issue 14.5: COPY over an active part file used to make the table unreadable."""
    tables, config = warehouse
    part_files = [uri for uri, _ in active_files(tables.location("interactions_silver")).files]
    before = _digest(part_files)
    attack = f"COPY (SELECT 1 AS user_id) TO '{part_files[0]}' (FORMAT parquet)"
    assert main(["sql", "--engine", "duckdb", "--config", config, attack]) == 2
    assert _digest(part_files) == before


def test_recspark_sql_still_answers_queries(warehouse, capsys):
    _, config = warehouse
    query = "SELECT user_id, rating FROM interactions_silver ORDER BY user_id"
    assert main(["sql", "--config", config, query]) == 0
    assert main(["sql", "--engine", "duckdb", "--config", config, query]) == 0
    out = capsys.readouterr().out
    assert out.count("u1") == 2 and out.count("u2") == 2


def test_duckdb_connection_reads_only_the_tables_files(warehouse, tmp_path):
    tables, _ = warehouse
    connection = duckdb_connection({"interactions_silver": tables.location("interactions_silver")})
    assert connection.sql("SELECT count(*) FROM interactions_silver").fetchone() == (2,)
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    import duckdb

    with pytest.raises(duckdb.PermissionException):
        connection.sql(f"SELECT * FROM read_csv('{outside}')").fetchall()
    with pytest.raises(ReadOnlyQueryError):
        connection.execute("SET enable_external_access = true")


def test_read_only_session_refuses_writes_inside_spark(spark, tmp_path):
    """The session the Thrift server hands to JDBC clients: the refusal happens in Spark's own
    parser, so it holds whatever client sends the statement."""
    session = read_only_session(spark)
    session.createDataFrame(ROWS, SCHEMA).createOrReplaceTempView("interactions_silver")
    assert session.sql("SELECT count(*) FROM interactions_silver").first()[0] == 2
    assert session.sql("SHOW TABLES").count() == 1
    target = tmp_path / "written"
    with pytest.raises(Exception, match="read-only SQL: InsertIntoDir"):
        session.sql(f"INSERT OVERWRITE DIRECTORY '{target}' USING parquet SELECT 1").collect()
    assert not target.exists()
    with pytest.raises(AnalysisException, match="reflect"):
        session.sql("SELECT reflect('java.lang.System', 'getProperty', 'user.home')").collect()
    (tmp_path / "secret.csv").write_text("a\n1\n")
    with pytest.raises(AnalysisException):
        session.sql(f"SELECT * FROM csv.`{tmp_path / 'secret.csv'}`").collect()
    assert spark.sql("SELECT reflect('java.lang.String', 'valueOf', 1)").first()[0] == "1"
