"""Query the warehouse without Spark: for BI tools, notebooks and dashboards.

Two readers, both offline and JVM-free:

* polars: ``polars.read_delta(location)`` reads a Delta table directly (delta-rs underneath);
  :func:`read_polars` adds time travel by version.
* DuckDB: its ``delta`` extension downloads itself on first use, which fails on an offline
  machine, and ``deltalake``'s Arrow dataset does not work with the pinned pyarrow 14. So
  :func:`duckdb_view_sql` builds a view over the table's *active* Parquet files listed in the
  Delta log (never the folder: it also holds replaced and uncommitted files), adding each file's
  partition values back as typed columns. :func:`duckdb_connection` registers one such view per
  table in a read-only connection. A view is a snapshot of the version it was built from: build
  it again to see later publishes.
"""
from __future__ import annotations

from collections.abc import Mapping
from itertools import groupby

from recspark.io.delta import ActiveFiles, DeltaTableError, active_files
from recspark.read_only_sql import require_read_only_duckdb_query

# Delta primitive type name -> DuckDB type, for partition columns (the only values taken from
# the log rather than from Parquet).
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "timestamp_ntz": "TIMESTAMP",
    "integer": "INTEGER",
    "long": "BIGINT",
    "short": "SMALLINT",
    "byte": "TINYINT",
    "boolean": "BOOLEAN",
    "double": "DOUBLE",
    "float": "FLOAT",
}


def read_polars(location: str, version: int | None = None):
    """The Delta table at ``location`` (at ``version``, default latest) as a polars DataFrame."""
    import polars as pl

    return pl.read_delta(location, version=version)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_view_sql(location: str, version: int | None = None) -> str:
    """A DuckDB ``SELECT`` returning the Delta table at ``location`` (latest or ``version``),
    columns in table order. A table with no data files (an empty quarantine, say) gives an empty
    typed result. Raises :class:`~recspark.io.delta.DeltaTableError` where a column DuckDB must type
    from the log (a partition column, or any column of an empty table) is not a primitive type."""
    return _snapshot_view_sql(active_files(location, version), location)


def _snapshot_view_sql(snapshot: ActiveFiles, location: str) -> str:
    types = dict(snapshot.columns)
    typed_from_log = snapshot.partition_columns if snapshot.files else list(types)
    for column in typed_from_log:
        if types[column] not in _DUCKDB_TYPES:
            raise DeltaTableError(
                f"column {column!r} of {location} (version {snapshot.version}) has type "
                f"{types[column]!r}, which DuckDB cannot take from the Delta log"
            )
    if not snapshot.files:
        return "SELECT " + ", ".join(f'NULL::{_DUCKDB_TYPES[t]} AS "{c}"' for c, t in snapshot.columns) + " WHERE false"
    column_list = ", ".join(f'"{name}"' for name, _ in snapshot.columns)

    def partition_key(entry):
        return tuple(entry[1][c] for c in snapshot.partition_columns)

    selects = []
    for key, group in groupby(sorted(snapshot.files, key=lambda e: (str(partition_key(e)), e[0])), key=partition_key):
        file_list = "[" + ", ".join(_sql_string(uri) for uri, _ in group) + "]"
        partition_values = ", ".join(
            ("NULL" if value is None else _sql_string(value)) + f'::{_DUCKDB_TYPES[types[column]]} AS "{column}"'
            for column, value in zip(snapshot.partition_columns, key)
        )
        source = f"read_parquet({file_list}, hive_partitioning = false)"
        inner = f"SELECT *, {partition_values} FROM {source}" if partition_values else f"SELECT * FROM {source}"
        selects.append(f"SELECT {column_list} FROM ({inner})")
    return "\nUNION ALL\n".join(selects)


class ReadOnlyDuckDB:
    """A DuckDB connection that runs read-only queries only.

    :meth:`sql` and :meth:`execute` refuse anything but one read-only statement
    (:func:`~recspark.read_only_sql.require_read_only_duckdb_query`, a ValueError). Underneath,
    DuckDB itself may touch no file but the tables' active Parquet files
    (``enable_external_access=false`` with ``allowed_paths``) and its configuration is locked.
    """

    def __init__(self, connection, views: list[str]):
        self._connection = connection
        self.views = views  # the registered view names

    def sql(self, query: str):
        """A DuckDB relation for the read-only ``query``."""
        return self._connection.sql(require_read_only_duckdb_query(query))

    def execute(self, query: str, parameters=None):
        """Run the read-only ``query`` (with optional prepared-statement ``parameters``)."""
        return self._connection.execute(require_read_only_duckdb_query(query), parameters)

    def close(self) -> None:
        self._connection.close()


def duckdb_connection(locations: Mapping[str, str]) -> ReadOnlyDuckDB:
    """A new in-memory, read-only DuckDB connection with one view per table of ``locations``
    (view name -> Delta location) over its latest version. Tables that do not exist yet are
    skipped."""
    import duckdb

    from deltalake import DeltaTable

    connection = duckdb.connect()
    views, readable = [], []
    for name, location in sorted(locations.items()):
        if DeltaTable.is_deltatable(location):
            snapshot = active_files(location)
            connection.execute(f'CREATE OR REPLACE VIEW "{name}" AS {_snapshot_view_sql(snapshot, location)}')
            views.append(name)
            readable.extend(uri for uri, _ in snapshot.files)
    connection.execute(f"SET allowed_paths = [{', '.join(_sql_string(uri) for uri in readable)}]")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return ReadOnlyDuckDB(connection, views)
