"""Stage orchestration: read tables, call the library transforms, write tables, log to MLflow.

Each stage module exposes ``run_<stage>(spark, config, tables, ctx)``; :mod:`recspark.cli` and the
thin ``jobs/*.py`` spark-submit entrypoints run them through :func:`recspark.stages.common.run_stage`.
"""
