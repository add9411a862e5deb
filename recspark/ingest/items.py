"""Assemble the items table from validated item rows and tag rows."""
from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import schemas
from recspark.ingest import reasons
from recspark.ingest.validate import conform


def build_items(items_valid: DataFrame, tags_valid: DataFrame, ingest_date: dt.date) -> DataFrame:
    """One row per item_id with exactly the columns of :data:`recspark.schemas.ITEMS`.

    ``items_valid``: valid rows of :func:`~recspark.ingest.validate.validate_items` (see
    :func:`~recspark.ingest.validate.valid_rows`); its ``text`` column is the mapped description.
    ``tags_valid``: valid rows of :func:`~recspark.ingest.validate.validate_item_tags`.

    Decisions: among rows of one item_id the survivor is the first by (source, source_file,
    raw_record), so re-runs pick the same row and its fields are kept together (no merging of
    fields across rows). ``tags`` are the item's distinct lower-cased tags sorted alphabetically
    (empty when none); tags of items absent here are left out (see
    :func:`unknown_item_tags_quarantine`). Null genre elements are dropped. ``text`` is
    :func:`item_text`.
    """
    survivor = Window.partitionBy("item_id").orderBy(
        F.col("source").asc(), F.col("source_file").asc_nulls_last(), F.col("raw_record").asc_nulls_last()
    )
    items = (
        items_valid.withColumn("_survivor_rank", F.row_number().over(survivor))
        .filter(F.col("_survivor_rank") == 1)
        .drop("_survivor_rank")
    )
    tags = tags_valid.groupBy("item_id").agg(F.array_sort(F.collect_set("tag")).alias("tags"))
    no_tags = F.array().cast(T.ArrayType(T.StringType(), False))
    built = (
        items.join(tags, "item_id", "left")
        .withColumn("genres", without_nulls(F.col("genres")))
        .withColumn("tags", F.coalesce(F.col("tags"), no_tags))
        .withColumn("text", item_text(F.col("title"), F.col("genres"), F.col("tags"), F.col("text")))
        .withColumn("ingest_date", F.lit(ingest_date).cast("date"))
    )
    return conform(built, schemas.ITEMS)


def without_nulls(strings: Column) -> Column:
    """An array<string> without null elements, typed so (containsNull = false) as ITEMS requires;
    the coalesce never applies after the filter, it only carries the non-null type."""
    return F.transform(F.filter(strings, lambda s: s.isNotNull()), lambda s: F.coalesce(s, F.lit("")))


def item_text(title: Column, genres: Column, tags: Column, description: Column) -> Column:
    """Readable item text for sentence embeddings: the present parts joined with ". ", e.g.
    ``Toy Story (1995). Genres: Adventure, Animation. Tags: pixar, toys. A cowboy doll ...``
    (title, "Genres: " list, "Tags: " list, description); empty string when all are missing."""
    return F.concat_ws(
        ". ",
        title,
        F.when(F.size(genres) > 0, F.concat(F.lit("Genres: "), F.array_join(genres, ", "))),
        F.when(F.size(tags) > 0, F.concat(F.lit("Tags: "), F.array_join(tags, ", "))),
        description,
    )


def unknown_item_tags_quarantine(
    tags_valid: DataFrame, items: DataFrame, ingest_date: dt.date, run_id: str
) -> DataFrame:
    """Quarantine rows (:data:`recspark.schemas.QUARANTINE`) for valid tag rows whose item_id is
    not in ``items`` (any frame with an ``item_id`` column, e.g. :func:`build_items`' output),
    reason ``unknown_item``, so such tags do not vanish."""
    unknown = tags_valid.join(items.select("item_id"), "item_id", "left_anti")
    rows = unknown.select(
        "source",
        "source_file",
        "raw_record",
        F.lit(reasons.UNKNOWN_ITEM).alias("reason"),
        F.lit("item_id").alias("column"),
        F.format_string("item_id '%s' of tag '%s' is not in any items source", "item_id", "tag").alias(
            "detail"
        ),
        F.lit(ingest_date).cast("date").alias("ingest_date"),
        F.lit(run_id).alias("run_id"),
    )
    return conform(rows, schemas.QUARANTINE)
