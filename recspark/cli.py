"""``recspark [--config FILE] [--set key=value ...] [--run-date YYYY-MM-DD] <command>``

Commands: every stage of :mod:`recspark.pipeline.registry` by its name (``ingest``,
``featurize``, ``train-als``, ``item-similarity``, ``embed-items``, ``train-deep``,
``candidates``, ``rerank``, ``evaluate``, ``publish``, and ``generate`` / ``report`` outside the
nightly run); ``run``: the nightly stages in order; ``sql "SELECT ..."``: a read-only query over
every table (``--engine duckdb``: no JVM); ``serve``: a read-only JDBC/ODBC (HiveServer2) endpoint
for BI tools. ``--force`` lets publish go ahead despite a quality-gate breach; ``--allow-empty``
lets ingest accept a night without rows. ``jobs/submit.py`` is the spark-submit entry point.

Exit status: 0 done; 2 a clear refusal (bad config or input, quality gate, concurrent run), with
one log line saying why; anything else is a bug and prints its traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys

from recspark.config import ConfigError, load_config

log = logging.getLogger("recspark")

COMMANDS_BESIDE_STAGES = ("run", "sql", "serve")


def build_parser() -> argparse.ArgumentParser:
    from recspark.pipeline.registry import STAGES

    parser = argparse.ArgumentParser(prog="recspark", description="Spark batch recommendation platform")
    parser.add_argument("--config", help="YAML config file (default: conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted keys (repeatable), e.g. --set warehouse=/tmp/wh")
    parser.add_argument("--run-date", help="run date YYYY-MM-DD (default: today, UTC); used for backfills")
    parser.add_argument("--force", action="store_true",
                        help="publish even when the quality gate finds a breach (operators only)")
    parser.add_argument("--allow-empty", action="store_true",
                        help="ingest: accept a night whose sources yield no rows (nothing stored is replaced)")
    parser.add_argument("--limit", type=int, default=50, help="rows printed by 'sql' (default 50)")
    parser.add_argument("--engine", choices=["spark", "duckdb"], default="spark",
                        help="for sql: Spark SQL (default) or DuckDB over the tables' active files (no JVM)")
    parser.add_argument("--host", help="for serve: address to listen on (default serve.host)")
    parser.add_argument("--port", type=int, help="for serve: port to listen on (default serve.port)")
    parser.add_argument("command", choices=[*STAGES, *COMMANDS_BESIDE_STAGES],
                        help="a stage; 'run' runs the nightly pipeline; 'sql' runs a query; 'serve' serves BI tools")
    parser.add_argument("query", nargs="?", help='for sql: a read-only query, e.g. "SELECT * FROM metrics"')
    return parser


def print_query(config, query: str, limit: int, engine: str = "spark") -> None:
    from recspark.catalog import TABLES

    if engine == "duckdb":
        import duckdb

        from recspark.bi import duckdb_connection

        connection = duckdb_connection({name: config.table_location(name) for name in TABLES})
        try:
            connection.sql(query).limit(limit).show(max_rows=limit)
        except duckdb.Error as exc:
            raise ValueError(f"query failed: {exc}") from exc
        return
    from pyspark.errors import AnalysisException

    from recspark.io.delta import DeltaTables
    from recspark.io.session import build_spark_session
    from recspark.read_only_sql import run_sql

    spark = build_spark_session(config.spark)
    try:
        run_sql(DeltaTables.from_config(spark, config), TABLES, query).show(limit, truncate=False)
    except AnalysisException as exc:
        raise ValueError(f"query failed: {exc}") from exc


def overrides_of(args: argparse.Namespace) -> list[str]:
    """``--set`` pairs plus the ones the convenience flags stand for."""
    overrides = list(args.overrides)
    overrides += [f"run_date={args.run_date}"] if args.run_date else []
    overrides += ["publish.force=true"] if args.force else []
    overrides += ["ingest.allow_empty=true"] if args.allow_empty else []
    overrides += [f"serve.host={args.host}"] if args.host else []
    overrides += [f"serve.port={args.port}"] if args.port else []
    return overrides


def refusals() -> tuple[type[BaseException], ...]:
    """Errors that are a clear refusal (exit 2, one log line), not a bug."""
    from recspark.ingest.dedupe import RowAccountingError
    from recspark.ingest.read import IngestInputError
    from recspark.io.delta import ConcurrentWriteError, DeltaTableError
    from recspark.io.locks import WarehouseLockedError
    from recspark.publish import QualityGateError

    return (ConfigError, IngestInputError, DeltaTableError, ConcurrentWriteError, WarehouseLockedError,
            RowAccountingError, QualityGateError, ValueError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        config = load_config(args.config, overrides_of(args))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    try:
        if args.command == "sql":
            print_query(config, args.query, args.limit, args.engine)
        elif args.command == "serve":
            from recspark.serve import serve

            serve(config, config.serve.host, config.serve.port, config.serve.refresh_seconds,
                  hive_conf=config.serve.hive_conf)
        else:
            from recspark.pipeline.registry import NIGHTLY
            from recspark.pipeline.runner import run_stages

            run_stages(list(NIGHTLY) if args.command == "run" else [args.command], config)
    except refusals() as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
