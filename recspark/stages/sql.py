"""``recspark sql "SELECT ..."``: read-only Spark SQL over every warehouse table, each registered
as a temporary view under its logical name (``recommendations``, ``metrics``, ...). Statements
that are not read-only queries are refused before anything runs
(:func:`recspark.read_only_sql.require_read_only_query`)."""
from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import DataFrame

from recspark.io.delta import DeltaTables
from recspark.read_only_sql import require_read_only_query


def register_views(tables: DeltaTables, names: Iterable[str]) -> list[str]:
    """Register every existing table of ``names`` as a temp view; returns the registered names."""
    registered = []
    for name in sorted(set(names)):
        if tables.exists(name):
            tables.read(name).createOrReplaceTempView(name)
            registered.append(name)
    return registered


def require_query(query: str | None) -> str:
    """``query`` itself, or a ValueError saying how to call ``recspark sql``."""
    if not query or not query.strip():
        raise ValueError('recspark sql needs a query, e.g. recspark sql "SELECT * FROM metrics"')
    return query


def run_sql(tables: DeltaTables, names: Iterable[str], query: str) -> DataFrame:
    """The result of the read-only ``query`` with every existing table of ``names`` visible as a
    view; a ValueError for an empty query or one that is not read-only."""
    require_read_only_query(require_query(query), tables.spark)
    register_views(tables, names)
    return tables.spark.sql(query)
