"""``recspark serve``: the warehouse as a read-only SQL endpoint for BI tools (JDBC/ODBC).

Runs the Spark Thrift Server (HiveServer2 protocol, shipped with pyspark) inside this Python
process, in one shared Spark session (``spark.sql.hive.thriftServer.singleSession``):

* Every existing warehouse table is a temporary view under its logical name (``recommendations``,
  ``metrics``, ...) over its current Delta version (delta-rs engine: the version's active files,
  as ``recspark sql`` reads them; delta-spark engine: the table itself).
* Views follow new versions: every ``refresh_seconds`` the tables' Delta versions are polled and a
  view whose table has a new version (or a table that appeared) is registered again, so a
  dashboard sees tonight's publish within one refresh period, without a restart. A query already
  running keeps the version it started with.
* Read-only: the session's SQL parser refuses writes and DDL
  (:func:`recspark.read_only_sql.read_only_session`); clients get the reason as the error.
  The parser runs in this Python process (py4j callback), so the process must stay alive.
* Auth: none on loopback. Binding any other address needs ``hive.server2.authentication`` set
  (LDAP, KERBEROS or CUSTOM) in ``hive_conf``, or ``allow_unauthenticated=True``.

Hive's scratch folders and operation logs go to ``<warehouse>/_thrift`` (a temporary folder for
a remote warehouse), not the working directory; the Thrift server's metastore is Derby in memory.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

if TYPE_CHECKING:
    from recspark.io.delta import DeltaTables

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class ServeSettings:
    """``recspark serve``: listen on ``host:port`` (loopback by default: binding another address
    exposes the warehouse to the network, so put authentication in ``hive_conf``, e.g.
    ``hive.server2.authentication``), re-point views at new Delta versions every
    ``refresh_seconds``; ``hive_conf`` is passed to the Thrift server as ``--hiveconf`` pairs."""

    host: str = "127.0.0.1"
    port: int = 10000
    refresh_seconds: float = 10.0
    hive_conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"serve.port must be in 1..65535, got {self.port}")
        if self.refresh_seconds <= 0:
            raise ValueError(f"serve.refresh_seconds must be > 0, got {self.refresh_seconds}")
STARTUP_TIMEOUT_S = 60.0


def thrift_folder(warehouse: str) -> str:
    """Where the Thrift server's scratch files and logs go: ``<warehouse>/_thrift`` for a local
    warehouse, a new temporary folder for a remote one."""
    if "://" in warehouse and not warehouse.startswith("file://"):
        return tempfile.mkdtemp(prefix="recspark-thrift-")
    local = warehouse.removeprefix("file://")
    folder = os.path.join(os.path.abspath(local), "_thrift")
    os.makedirs(folder, exist_ok=True)
    return folder


def thrift_settings(host: str, port: int, folder: str, hive_conf: Mapping[str, str] | None = None) -> dict[str, str]:
    """The HiveServer2 settings of the endpoint: bind address, port, scratch and log folders
    under ``folder``, then ``hive_conf`` (auth, SSL, transport mode, ...) on top. Raises
    ValueError for a non-loopback ``host`` without authentication."""
    if not 0 < port < 65536:
        raise ValueError(f"serve port must be in 1..65535, got {port}")
    settings = {
        "hive.server2.thrift.bind.host": host,
        "hive.server2.thrift.port": str(port),
        "hive.server2.logging.operation.log.location": os.path.join(folder, "operation_logs"),
        "hive.exec.local.scratchdir": os.path.join(folder, "scratch"),
        "hive.downloaded.resources.dir": os.path.join(folder, "resources"),
        **dict(hive_conf or {}),
    }
    if host not in LOOPBACK_HOSTS and settings.get("hive.server2.authentication", "NONE").upper() == "NONE":
        raise ValueError(
            f"serve host {host!r} is not loopback: set hive.server2.authentication (LDAP, KERBEROS or CUSTOM) "
            "in the serve hive_conf, or allow unauthenticated access explicitly"
        )
    return settings


class WarehouseViews:
    """Temporary views of a session, one per existing table of ``names``, each over the table's
    version read at the last :meth:`refresh`. Versions are read with ``versions`` (a
    :class:`DeltaTables` on a session whose SQL is not restricted: the delta-spark engine reads
    history with SQL); views are registered with ``tables``."""

    def __init__(self, tables: DeltaTables, versions: DeltaTables, names: Iterable[str]):
        self.tables = tables
        self.versions = versions
        self.names = sorted(set(names))
        self.registered: dict[str, int] = {}  # view name -> Delta version it shows

    def refresh(self) -> list[str]:
        """Register every table that is new or has a new version; returns their names. A table
        that cannot be read now (a commit in flight, a broken log) keeps its previous view and is
        logged; the next refresh tries again."""
        changed = []
        for name in self.names:
            try:
                version = self.versions.version(name)
                if version is None or self.registered.get(name) == version:
                    continue
                self.tables.read(name, version).createOrReplaceTempView(name)
            except Exception as exc:  # keep serving the other views
                log.warning("view %s not refreshed: %s", name, str(exc).splitlines()[0] if str(exc) else exc)
                continue
            self.registered[name] = version
            changed.append(name)
        return changed


def wait_until_listening(host: str, port: int, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Return once a TCP connection to ``host:port`` succeeds; RuntimeError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Thrift server did not start listening on {host}:{port} in {timeout_s:.0f} s")
            time.sleep(0.2)


def start_thrift_server(session: SparkSession, settings: Mapping[str, str]):
    """Start the Spark Thrift Server over ``session`` (JDBC sessions share it) with the
    HiveServer2 ``settings``; returns the JVM server object (``.stop()`` stops it)."""
    jsession = session._jsparkSession
    for key, value in settings.items():
        jsession.conf().set(key, value)
    thriftserver = session._jvm.org.apache.spark.sql.hive.thriftserver
    try:
        return thriftserver.HiveThriftServer2.startWithContext(jsession.sqlContext())
    except Py4JJavaError as exc:
        cause = exc.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        address = f"{settings.get('hive.server2.thrift.bind.host')}:{settings.get('hive.server2.thrift.port')}"
        raise RuntimeError(f"cannot start the Thrift server on {address}: {cause.toString()}") from None


def _stop_on_signals(stop_event: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_event.set())


def _default_table_names() -> set[str]:
    from recspark.catalog import TABLES

    return set(TABLES)


def serve(
    config,
    host: str = "127.0.0.1",
    port: int = 10000,
    refresh_seconds: float = 10.0,
    stop_event: threading.Event | None = None,
    table_names: Iterable[str] | None = None,
    hive_conf: Mapping[str, str] | None = None,
) -> None:
    """Serve the warehouse of ``config`` read-only over HiveServer2 at ``host:port`` until
    ``stop_event`` is set (default: until SIGTERM or SIGINT). ``table_names`` are the logical
    tables to expose (default: every table a stage writes); their views are refreshed every
    ``refresh_seconds``. ``hive_conf`` adds HiveServer2 settings (authentication, SSL, ...).
    Raises ValueError for bad arguments and RuntimeError when the server cannot start."""
    if refresh_seconds <= 0:
        raise ValueError(f"serve refresh_seconds must be > 0, got {refresh_seconds}")
    from recspark.io.delta import DeltaTables
    from recspark.io.session import build_spark_session
    from recspark.read_only_sql import read_only_session

    folder = thrift_folder(config.warehouse)
    settings = thrift_settings(host, port, folder, hive_conf)
    names = sorted(table_names if table_names is not None else _default_table_names())
    spark_config = dataclasses.replace(
        config.spark,
        conf={
            **config.spark.conf,
            "spark.sql.hive.thriftServer.singleSession": "true",
            "spark.sql.warehouse.dir": os.path.join(folder, "spark-warehouse"),
        },
    )
    spark = build_spark_session(spark_config)
    if spark.conf.get("spark.sql.hive.thriftServer.singleSession") != "true":
        raise RuntimeError("recspark serve needs its own Spark session: one was already running in this process")
    spark._jvm.java.lang.System.setProperty("derby.stream.error.file", os.path.join(folder, "derby.log"))
    session = read_only_session(spark)
    views = WarehouseViews(
        DeltaTables(session, config.table_location, config.delta.engine),
        DeltaTables(spark, config.table_location, config.delta.engine),
        names,
    )
    server = None
    try:
        log.info("registered views: %s", ", ".join(views.refresh()) or "(no tables yet)")
        server = start_thrift_server(session, settings)
        wait_until_listening(host, port)
        log.info("serving %s read-only on jdbc:hive2://%s:%d/default (views refresh every %s s)",
                 config.warehouse, host, port, refresh_seconds)
        if stop_event is None:
            stop_event = threading.Event()
            _stop_on_signals(stop_event)
        while not stop_event.wait(refresh_seconds):
            for name in views.refresh():
                log.info("view %s now shows version %d", name, views.registered[name])
    finally:
        if server is not None:
            server.stop()
        spark.stop()
        log.info("stopped serving %s", config.warehouse)
