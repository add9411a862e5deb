"""`recspark serve` with real clients: PyHive (DB-API over Thrift) and beeline (JDBC) query the
warehouse views, get Spark SQL's answers, cannot write, and see a new table version without a
restart. The server runs in a subprocess on a free port and is always stopped."""
from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyspark
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from recspark.io.delta import DeltaTables
from recspark.read_only_sql import run_sql
from tiny_spark import JVM_OPTIONS

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("rank", T.IntegerType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("source", T.StringType()),
        T.StructField("run_date", T.DateType()),
    ]
)
D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
ROWS = [
    ("u1", 1, "i1", 0.9, "als", D1), ("u1", 2, "i2", 0.5, "popularity", D1),
    ("u1", 1, "i3", 0.8, "als", D2), ("u2", 1, "i1", 0.7, "als", D2), ("u2", 2, "i4", 0.2, "similar", D2),
]
# The README's BI queries.
BY_SOURCE = "SELECT source, count(*) AS n FROM recommendations_latest GROUP BY source ORDER BY source"
ONE_NIGHT = (
    "SELECT user_id, rank, item_id, score FROM recommendations WHERE run_date = DATE '2024-03-02' "
    "ORDER BY user_id, rank"
)
SERVER = textwrap.dedent(
    """
    import logging, sys
    from recspark.config import Config
    from recspark.io.delta import DeltaSettings
    from recspark.io.session import SparkSettings
    from recspark.serve import serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    conf = {"spark.ui.enabled": "false", "spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "2",
            "spark.driver.extraJavaOptions": JVM_OPTIONS}
    config = Config(warehouse=sys.argv[1], spark=SparkSettings(master="local[1]", conf=conf),
                    delta=DeltaSettings(engine="delta-rs"))
    serve(config, "127.0.0.1", int(sys.argv[2]), refresh_seconds=1.0,
          table_names=["recommendations", "recommendations_latest", "not_written_yet"])
    """
).replace("JVM_OPTIONS", repr(JVM_OPTIONS))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_server(process: subprocess.Popen, port: int, log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"server not listening on {port} after {timeout_s} s")


def _beeline(port: int, statement: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPARK_HOME": os.path.dirname(pyspark.__file__), "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(VENV_BIN / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}/default", "-n", "bi", "--silent=true",
         "--outputformat=csv2", "-e", statement],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )


def _csv_rows(beeline_stdout: str) -> list[list[str]]:
    """beeline's csv2 output without the prompt it prints before the header, header included."""
    lines = [re.sub(r"^\d+: jdbc:hive2://\S+> ", "", line) for line in beeline_stdout.splitlines()]
    return [line.split(",") for line in lines if line.strip()]


@pytest.fixture
def warehouse(spark, tmp_path):
    tables = DeltaTables(spark, lambda name: str(tmp_path / "warehouse" / name), engine="delta-rs")
    frame = spark.createDataFrame(ROWS, SCHEMA)
    tables.write(frame, "recommendations", partition_by=["run_date"])
    tables.write(frame.where(frame.run_date == D2), "recommendations_latest")
    return tables


def test_bi_clients_query_read_only_views_that_follow_new_versions(spark, warehouse, tmp_path):
    from pyhive import hive
    from pyhive.exc import OperationalError

    names = ["recommendations", "recommendations_latest"]
    expected_by_source = [tuple(r) for r in run_sql(warehouse, names, BY_SOURCE).collect()]
    expected_one_night = [tuple(r) for r in run_sql(warehouse, names, ONE_NIGHT).collect()]
    location = warehouse.location("recommendations")
    port = _free_port()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    log = tmp_path / "server.log"
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(tmp_path / "warehouse"), str(port)],
            cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_server(server, port, log)
        cursor = hive.connect(host="127.0.0.1", port=port, username="bi").cursor()

        cursor.execute(BY_SOURCE)
        assert cursor.fetchall() == expected_by_source == [("als", 2), ("similar", 1)]
        cursor.execute(ONE_NIGHT)
        assert cursor.fetchall() == expected_one_night
        cursor.execute("SHOW TABLES")
        assert sorted(row[1] for row in cursor.fetchall()) == names

        for write in [
            f"INSERT OVERWRITE DIRECTORY '{location}' USING parquet SELECT 1",
            "CREATE TABLE copied USING parquet AS SELECT * FROM recommendations",
            "DROP VIEW recommendations",
        ]:
            with pytest.raises(OperationalError, match="read-only SQL"):
                cursor.execute(write)
        with pytest.raises(OperationalError, match="reflect"):
            cursor.execute("SELECT reflect('java.lang.System', 'exit', 1)")
        assert DeltaTable(location).version() == 0
        cursor.execute("SELECT count(*) FROM recommendations")
        assert cursor.fetchall() == [(len(ROWS),)]

        selected = _beeline(port, BY_SOURCE)
        assert selected.returncode == 0, selected.stderr[-2000:]
        assert _csv_rows(selected.stdout) == [["source", "n"]] + [[s, str(n)] for s, n in expected_by_source]
        refused = _beeline(port, f"INSERT OVERWRITE DIRECTORY '{location}' USING parquet SELECT 1")
        assert refused.returncode != 0
        assert "read-only SQL" in refused.stdout + refused.stderr
        assert DeltaTable(location).version() == 0

        tonight = spark.createDataFrame([("u3", 1, "i9", 0.6, "content", D2)], SCHEMA)
        warehouse.write(tonight, "recommendations_latest", mode="overwrite")
        deadline = time.monotonic() + 20
        while True:
            cursor.execute(BY_SOURCE)
            rows = cursor.fetchall()
            if rows == [("content", 1)] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert rows == [("content", 1)]
        cursor.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    assert server.returncode == 0, log.read_text()[-3000:]
    assert list(cwd.iterdir()) == []
