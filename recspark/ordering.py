"""Global row numbers without a single-partition window.

``row_number().over(Window.orderBy(...))`` moves every row to one partition (Spark warns "No
Partition Defined for Window operation" each time). :func:`with_row_number` sorts in parallel
(range partitioning) and numbers the sorted rows with ``RDD.zipWithIndex``, which follows the
partition order, so the numbering is the same and no partition holds everything. Meant for
user-, item- and id-level frames (thousands to a few million rows): rows pass through Python.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import types as T


def with_row_number(frame: DataFrame, order_by: list[Column], name: str) -> DataFrame:
    """``frame`` plus ``name`` (long, 1..n) numbering its rows in ``order_by`` order (make the
    order total, e.g. end with a unique id column, for a deterministic numbering)."""
    ordered = frame.orderBy(*order_by)
    schema = T.StructType([*ordered.schema.fields, T.StructField(name, T.LongType(), False)])
    numbered = ordered.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1] + 1))
    return frame.sparkSession.createDataFrame(numbered, schema)
