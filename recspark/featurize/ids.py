"""Stable dense integer indexes for string ids (``user_idx``, ``item_idx``).

Models need dense integer ids; re-runs must not renumber ids that were already indexed, or
stored factors and published recommendations would silently point at the wrong user or item.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.ordering import with_row_number


def assign_stable_index(
    ids: DataFrame, existing_index: DataFrame | None, id_col: str, index_col: str
) -> DataFrame:
    """Extend an id -> index table with the ids in ``ids``; return the full index table.

    Input: ``ids`` holds at least ``id_col`` (duplicates and nulls allowed; nulls are ignored);
    ``existing_index`` is the previous run's table (``id_col``, ``index_col``) or None on the
    first run. Output: one row per id, columns ``id_col`` (string) and ``index_col`` (int).

    Rules:
    * ids in ``existing_index`` keep their index, also when they are absent from ``ids`` (an
      index is never reused);
    * new ids get ``max(existing index) + 1, + 2, ...`` (``0, 1, ...`` on the first run, so the
      first run is dense ``0..n-1``), numbered in ascending lexicographic order of the id. Id
      order (rather than first-seen time) keeps the numbering a function of the id set alone, so
      items without interactions need no timestamp.

    The new ids are numbered by a parallel sort and ``zipWithIndex``
    (:func:`recspark.ordering.with_row_number`), never in a single partition.
    """
    id_values = (
        ids.select(F.col(id_col).cast("string").alias(id_col))
        .where(F.col(id_col).isNotNull())
        .distinct()
    )
    if existing_index is None:
        numbered = with_row_number(id_values, [F.col(id_col)], "_row")
        return numbered.select(id_col, (F.col("_row") - 1).cast("int").alias(index_col))
    known = existing_index.select(
        F.col(id_col).cast("string").alias(id_col),
        F.col(index_col).cast("int").alias(index_col),
    )
    next_index = known.agg(F.coalesce(F.max(index_col) + 1, F.lit(0)).alias("_next_index"))
    numbered = (
        with_row_number(id_values.join(known, on=id_col, how="left_anti"), [F.col(id_col)], "_row")
        .crossJoin(F.broadcast(next_index))
        .select(
            id_col,
            (F.col("_next_index") + F.col("_row") - 1).cast("int").alias(index_col),
        )
    )
    return known.unionByName(numbered)


def user_index(interactions: DataFrame, existing: DataFrame | None = None) -> DataFrame:
    """Index table (``user_id``, ``user_idx``) over every user in ``interactions``."""
    return assign_stable_index(interactions.select("user_id"), existing, "user_id", "user_idx")


def item_index(
    interactions: DataFrame, items: DataFrame, existing: DataFrame | None = None
) -> DataFrame:
    """Index table (``item_id``, ``item_idx``) over every item in ``interactions`` or ``items``.

    Items with metadata but no interactions are indexed too, so content-based models can score
    them for cold start.
    """
    item_ids = interactions.select("item_id").unionByName(items.select("item_id"))
    return assign_stable_index(item_ids, existing, "item_id", "item_idx")
