"""Read-only SQL for BI access: only queries reach the warehouse, never writes or DDL.

``recspark sql`` and ``recspark serve`` run SQL typed by people and BI tools against the live
warehouse, so a statement that writes (``INSERT OVERWRITE DIRECTORY '<warehouse>/<table>'``
deletes a table; DuckDB's ``COPY ... TO '<part file>'`` overwrites one) must be refused before it
runs. Statements are classified by the engine's own parser, not by keywords:

* Spark SQL: :func:`require_read_only_query` parses with the session's parser and accepts one
  statement whose plan is a query (``SELECT``, ``WITH``, ``VALUES``, ``TABLE``, ``FROM ... SELECT``)
  or one of ``SHOW``, ``DESCRIBE``, ``EXPLAIN`` (of an accepted statement), ``USE`` and ``SET``
  without a value. :func:`read_only_session` gives a session whose parser itself refuses the
  rest (for JDBC clients of ``recspark serve``), cannot call Java methods (``reflect``,
  ``java_method``) and cannot query files by path (``parquet.`/some/path```).
* DuckDB: :func:`require_read_only_duckdb_query` accepts one ``SELECT`` statement (DuckDB parses
  ``SHOW``, ``DESCRIBE``, ``SUMMARIZE`` and ``VALUES`` as ``SELECT``) or ``EXPLAIN`` of one
  (not ``EXPLAIN ANALYZE``, which runs the statement).
"""
from __future__ import annotations

import re

from pyspark.sql import SparkSession

ALLOWED = "one SELECT, WITH, VALUES, SHOW, DESCRIBE or EXPLAIN statement"

# Spark commands that only read metadata (plan class names, org.apache.spark.sql.catalyst...).
_READ_ONLY_COMMANDS = {
    "ShowTables", "ShowTableExtended", "ShowNamespaces", "ShowColumns", "ShowFunctions", "ShowViews",
    "ShowTableProperties", "ShowCreateTable", "ShowPartitions", "DescribeRelation", "DescribeColumn",
    "DescribeNamespace", "DescribeFunction", "DescribeQueryCommand", "SetCatalogAndNamespace",
}
# Plan nodes that write although they are not Spark ``Command``s.
_WRITE_NODES = {"InsertIntoStatement", "InsertIntoDir"}
# Built-in functions that call arbitrary static Java methods.
_JAVA_CALL_FUNCTIONS = ("reflect", "java_method")


class ReadOnlyQueryError(ValueError):
    """A statement that is not a read-only query was given to a read-only SQL endpoint."""


def _refusal(kind: str) -> str:
    return f"read-only SQL: {kind} statements are refused; only {ALLOWED} is allowed"


def _require_text(query: str | None) -> str:
    if not query or not query.strip():
        raise ReadOnlyQueryError(f"no SQL statement given; expected {ALLOWED}")
    return query


# ---------------------------------------------------------------------------------------- Spark
def _is_instance(jvm, class_name: str, obj) -> bool:
    return jvm.java.lang.Class.forName(f"org.apache.spark.sql.catalyst.plans.logical.{class_name}").isInstance(obj)


def spark_plan_refusal(jvm, plan) -> str | None:
    """Why the parsed (unresolved) Spark ``plan`` is not read-only, or None when it is."""
    kind = plan.getClass().getSimpleName().rstrip("$")
    if kind == "ExplainCommand":
        return spark_plan_refusal(jvm, plan.logicalPlan())
    if kind == "SetCommand":
        setting = plan.kv()
        if setting.isDefined() and setting.get()._2().isDefined():
            return _refusal("SET with a value")
        return None
    if _is_instance(jvm, "Command", plan):
        return None if kind in _READ_ONLY_COMMANDS else _refusal(kind)
    pending = [plan]
    while pending:
        node = pending.pop()
        node_kind = node.getClass().getSimpleName()
        if node_kind in _WRITE_NODES or _is_instance(jvm, "Command", node):
            return _refusal(node_kind)
        children = node.children()
        pending.extend(children.apply(i) for i in range(children.size()))
    return None


def require_read_only_query(query: str | None, spark: SparkSession) -> str:
    """``query`` itself when Spark's parser sees one read-only statement in it; raises
    :class:`ReadOnlyQueryError` (a ValueError) otherwise, including for a syntax error."""
    _require_text(query)
    parser = spark._jsparkSession.sessionState().sqlParser()
    try:
        plan = parser.parsePlan(query)
    except Exception as exc:  # py4j wraps Spark's ParseException
        raise ReadOnlyQueryError(f"cannot parse the query: {_first_line(exc)}") from exc
    refusal = spark_plan_refusal(spark._jvm, plan)
    if refusal:
        raise ReadOnlyQueryError(refusal)
    return query


def _first_line(exc: Exception) -> str:
    java = getattr(exc, "java_exception", None)
    text = java.getMessage() if java is not None else str(exc)
    return (text or type(exc).__name__).strip().splitlines()[0]


def _spark_string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ReadOnlyParser:
    """A Spark ``ParserInterface`` (implemented in Python through py4j) that parses with
    ``delegate`` and turns every statement that is not read-only, or does not parse, into
    ``SELECT raise_error('<why>')``: the client gets the reason as its error message."""

    def __init__(self, jvm, delegate):
        self._jvm = jvm
        self._delegate = delegate

    def parsePlan(self, sql_text):
        try:
            plan = self._delegate.parsePlan(sql_text)
        except Exception as exc:  # a syntax error: report Spark's message
            return self._failing_plan(f"cannot parse the statement: {_first_line(exc)}")
        refusal = spark_plan_refusal(self._jvm, plan)
        return self._failing_plan(refusal) if refusal else plan

    def _failing_plan(self, message: str):
        return self._delegate.parsePlan(f"SELECT raise_error({_spark_string_literal(message)})")

    def parseQuery(self, sql_text):
        return self._delegate.parseQuery(sql_text)

    def parseExpression(self, sql_text):
        return self._delegate.parseExpression(sql_text)

    def parseTableIdentifier(self, sql_text):
        return self._delegate.parseTableIdentifier(sql_text)

    def parseFunctionIdentifier(self, sql_text):
        return self._delegate.parseFunctionIdentifier(sql_text)

    def parseMultipartIdentifier(self, sql_text):
        return self._delegate.parseMultipartIdentifier(sql_text)

    def parseTableSchema(self, sql_text):
        return self._delegate.parseTableSchema(sql_text)

    def parseDataType(self, sql_text):
        return self._delegate.parseDataType(sql_text)

    class Java:
        implements = ["org.apache.spark.sql.catalyst.parser.ParserInterface"]


class _ReadOnlyParserBuilder:
    """The ``(SparkSession, ParserInterface) => ParserInterface`` function Spark's
    ``SparkSessionExtensions.injectParser`` takes."""

    def __init__(self, jvm):
        self._jvm = jvm

    def apply(self, session, delegate):
        return ReadOnlyParser(self._jvm, delegate)

    class Java:
        implements = ["scala.Function2"]


def read_only_session(spark: SparkSession) -> SparkSession:
    """A new session of ``spark``'s context whose SQL is read-only: its parser refuses every
    statement but read-only ones (see :class:`ReadOnlyParser`), ``reflect``/``java_method`` are
    dropped and files cannot be queried by path. Sessions later derived from it (JDBC sessions
    of the Thrift server) get the same parser. The parser calls back into this Python process,
    which must stay alive as long as the session is used."""
    from pyspark.java_gateway import ensure_callback_server_started

    jvm = spark._jvm
    ensure_callback_server_started(spark.sparkContext._gateway)
    spark._jsparkSession.extensions().injectParser(_ReadOnlyParserBuilder(jvm))
    jsession = spark._jsparkSession.newSession()
    registry = jsession.sessionState().functionRegistry()
    for name in _JAVA_CALL_FUNCTIONS:
        registry.dropFunction(jvm.org.apache.spark.sql.catalyst.FunctionIdentifier(name, jvm.scala.Option.empty()))
    jsession.conf().set("spark.sql.runSQLOnFiles", "false")
    return SparkSession(spark.sparkContext, jsession)


# --------------------------------------------------------------------------------------- DuckDB
_EXPLAIN = re.compile(r"^\s*explain\b\s*", re.IGNORECASE)
_EXPLAIN_RUNS = re.compile(r"^(analy[sz]e\b|\()", re.IGNORECASE)


def require_read_only_duckdb_query(query: str | None) -> str:
    """``query`` itself when DuckDB's parser sees one read-only statement in it; raises
    :class:`ReadOnlyQueryError` (a ValueError) otherwise."""
    import duckdb

    _require_text(query)
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse the query: {exc}") from exc
    if len(statements) != 1:
        raise ReadOnlyQueryError(f"read-only SQL: {len(statements)} statements given; only {ALLOWED} is allowed")
    kind = statements[0].type
    if kind == duckdb.StatementType.SELECT:
        return query
    if kind == duckdb.StatementType.EXPLAIN:
        explained = _EXPLAIN.sub("", statements[0].query, count=1)
        if _EXPLAIN_RUNS.match(explained):
            raise ReadOnlyQueryError(_refusal("EXPLAIN ANALYZE (it runs the statement)"))
        require_read_only_duckdb_query(explained)
        return query
    raise ReadOnlyQueryError(_refusal(kind.name))


# ------------------------------------------------------------------------------- recspark sql
def register_views(tables, names) -> list[str]:
    """Register every existing table of ``names`` (a :class:`~recspark.io.delta.DeltaTables`) as a
    temp view under its logical name; returns the registered names."""
    registered = []
    for name in sorted(set(names)):
        if tables.exists(name):
            tables.read(name).createOrReplaceTempView(name)
            registered.append(name)
    return registered


def run_sql(tables, names, query: str):
    """The result of the read-only Spark SQL ``query`` with every existing table of ``names``
    visible as a view; :class:`ReadOnlyQueryError` for an empty or non-read-only statement."""
    require_read_only_query(query, tables.spark)
    register_views(tables, names)
    return tables.spark.sql(query)
