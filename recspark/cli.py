"""``recspark [--config FILE] [--set key=value ...] [--run-date YYYY-MM-DD] <stage>``

Stages: generate, ingest, featurize, train-als, similarity, embed-items, train-deep, candidates,
rerank, evaluate, publish, report and ``run`` (the nightly pipeline: every stage but generate and
report, in that order); and
``recspark sql "SELECT ..."`` over every table (``--engine duckdb``: no JVM). ``--force`` lets
publish go ahead despite a quality-gate breach. The ``jobs/*.py``
spark-submit entrypoints call :func:`main` with their stage name.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pyspark.errors import AnalysisException

from recspark.bi import duckdb_connection
from recspark.config import ConfigError, load_config
from recspark.io.delta import DeltaTableError, DeltaTables
from recspark.ingest.read import IngestInputError
from recspark.io.session import build_spark_session
from recspark.stages.common import new_context, run_stage
from recspark.stages.ingest import RowAccountingError
from recspark.stages.publish import QualityGateError
from recspark.stages.sql import require_query, run_sql

INTERACTION_TABLES = ("interactions_bronze", "interactions_silver", "interactions_quarantine", "items_bronze", "items")
FEATURE_TABLES = ("user_index", "item_index", "user_features", "item_features", "interactions_split")

# stage name -> ("module:function", tables read, tables written); a stage's module is imported
# only when it runs, so a spark-submit of one stage does not load torch or the embedding model.
STAGES = {
    "generate": ("recspark.stages.generate:run_generate", (), ()),
    "ingest": ("recspark.stages.ingest:run_ingest", (), INTERACTION_TABLES),
    "featurize": ("recspark.stages.featurize:run_featurize", ("interactions_silver", "items"), FEATURE_TABLES),
    "train-als": (
        "recspark.stages.train_als:run_train_als",
        ("interactions_split",),
        ("user_factors", "item_factors", "item_similarity"),
    ),
    "similarity": ("recspark.stages.similarity:run_similarity", ("interactions_split",), ("item_similarity",)),
    "embed-items": (
        "recspark.stages.embed_items:run_embed_items", ("items", "item_index", "item_embeddings"), ("item_embeddings",)
    ),
    "candidates": (
        "recspark.stages.candidates:run_candidates",
        ("interactions_split", "user_factors", "item_factors", "item_similarity", "item_embeddings", "user_index"),
        ("candidates",),
    ),
    "evaluate": (
        "recspark.stages.evaluate:run_evaluate",
        ("interactions_split", "candidates", "item_index", "item_features", "stage_runs", "item_embeddings"),
        ("metrics",),
    ),
    "publish": (
        "recspark.stages.publish:run_publish",
        ("candidates", "interactions_split", "item_similarity", "item_index", "items", "user_index", "metrics"),
        ("recommendations", "recommendations_latest"),
    ),
    "report": (
        "recspark.stages.report:run_report",
        ("metrics", "stage_runs", "recommendations", "interactions_split", "item_index"),
        (),
    ),
    # deep recommenders (Petastorm + TorchDistributor training, re-ranking, hybrid)
    "train-deep": (
        "recspark.stages.train_deep:run_train_deep",
        ("interactions_split", "user_index", "item_index", "item_embeddings"),
        (),
    ),
    "rerank": (
        "recspark.stages.rerank:run_rerank",
        ("candidates", "interactions_split", "user_factors", "item_embeddings", "user_index"),
        ("candidates",),
    ),
}
PIPELINE = ["ingest", "featurize", "train-als", "similarity", "embed-items", "train-deep", "candidates", "rerank",
            "evaluate", "publish"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recspark", description="Spark batch recommendation platform")
    parser.add_argument("--config", help="YAML config file (default: conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted keys (repeatable), e.g. --set warehouse=/tmp/wh")
    parser.add_argument("--run-date", help="run date YYYY-MM-DD (default: today, UTC); used for backfills")
    parser.add_argument("--force", action="store_true",
                        help="publish even when the quality gate finds a breach (operators only)")
    parser.add_argument("--limit", type=int, default=50, help="rows printed by 'sql' (default 50)")
    parser.add_argument("--engine", choices=["spark", "duckdb"], default="spark",
                        help="for sql: Spark SQL (default) or DuckDB over the tables' active files (no JVM)")
    parser.add_argument("stage", choices=[*STAGES, "run", "sql"],
                        help="stage to run; 'run' runs the whole pipeline; 'sql' runs a query over the tables")
    parser.add_argument("query", nargs="?", help='for sql: a Spark SQL query, e.g. "SELECT * FROM metrics"')
    return parser


def all_tables() -> set[str]:
    """Logical names of every table a stage writes."""
    return {name for _, _, writes in STAGES.values() for name in writes} | {"stage_runs"}


def print_query(config, query: str, limit: int, engine: str = "spark") -> None:
    if engine == "duckdb":
        import duckdb

        connection = duckdb_connection({name: config.table_location(name) for name in all_tables()})
        try:
            connection.sql(require_query(query)).limit(limit).show(max_rows=limit)
        except duckdb.Error as exc:
            raise ValueError(f"query failed: {exc}") from exc
        return
    spark = build_spark_session(config.spark)
    try:
        run_sql(DeltaTables.from_config(spark, config), all_tables(), query).show(limit, truncate=False)
    except AnalysisException as exc:
        raise ValueError(f"query failed: {exc}") from exc


def stage_function(name: str):
    """The ``run_*`` function of stage ``name``, importing its module."""
    module, function = STAGES[name][0].split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        overrides = list(args.overrides) + ([f"run_date={args.run_date}"] if args.run_date else [])
        overrides += ["publish.force=true"] if args.force else []
        config = load_config(args.config, overrides)
        if args.stage == "sql":
            print_query(config, args.query, args.limit, args.engine)
            return 0
        ctx = new_context(config)
        stages = PIPELINE if args.stage == "run" else [args.stage]
        for name in stages:
            _, reads, writes = STAGES[name]
            run_stage(name, stage_function(name), config, ctx, reads=reads, writes=writes)
    except (ConfigError, IngestInputError, DeltaTableError, RowAccountingError, QualityGateError, ValueError) as exc:
        logging.getLogger("recspark").error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
