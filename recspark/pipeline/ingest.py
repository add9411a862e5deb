"""Ingest stage: source files -> interactions_bronze / silver / quarantine, items, ingest_manifest.

Per run date D (``--run-date``):

* every source's files are listed; with ``ingest.incremental`` only files the ``ingest_manifest``
  has not seen (new, or changed since: re-read in full) are read, and they are recorded there;
* ``interactions_bronze`` / ``items_bronze``: partition ``ingest_date=D`` replaced with every row
  read this run, as strings (malformed rows included);
* ``interactions_quarantine``: partition ``ingest_date=D`` replaced with every rejected row and
  every ``duplicate_conflict`` loser (two rows of one event with different values: the
  last-written one wins);
* ``interactions_silver``: the stored rows of other ingest dates merged with D's valid rows
  (:func:`recspark.ingest.dedupe.merge_into_silver`), so re-running D gives identical tables;
* ``items``: rebuilt from this run's item sources and tags (kept when none was read).

A source that yields no rows fails the run (:class:`~recspark.ingest.read.EmptyInputError`)
before anything is written, unless ``ingest.allow_empty`` (``--allow-empty``): then an empty night
writes nothing and the stored tables stay as they are.

Row accounting, checked every run before anything is written (a violation fails the run):
rows read = valid + quarantined, and silver = kept + valid - duplicates - conflicts.

The night's rows (bronze as read, validated), the merge's classified rows and the merged silver
are each read several times (counts, the merge, the quarantine, the writes), so they are
persisted once, on local disk (``NIGHT_ROWS_STORAGE``): they grow with the data while storage
memory does not. At 5M interactions the merge's classified rows (8 blocks of 236 MiB) did not
fit the 4g driver's storage memory as a memory-and-disk ``localCheckpoint``: blocks were
recomputed and every attempt logged a "MemoryStore: Not enough space to cache" WARN line. The
persisted frames keep their lineage (the stored silver version they read stays on disk: Delta
never deletes a version's files on write), so a lost block is recomputed from the same inputs.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import (
    INGEST_MANIFEST,
    INTERACTIONS_BRONZE,
    INTERACTIONS_QUARANTINE,
    INTERACTIONS_SILVER,
    ITEMS,
    ITEMS_BRONZE,
)
from recspark.ingest.dedupe import RowAccounting, apply_merge, conflict_quarantine_rows, merge_into_silver
from recspark.ingest.items import build_items, unknown_item_tags_quarantine
from recspark.ingest.manifest import compare_with_manifest, manifest_rows
from recspark.ingest.presets import configured_sources
from recspark.ingest.read import EmptyInputError, check_not_empty, list_input_files, read_source
from recspark.ingest.validate import (
    to_quarantine_rows,
    to_silver_candidates,
    valid_rows,
    validate_interactions,
    validate_item_tags,
    validate_items,
)
from recspark.pipeline.stage import StageContext

log = logging.getLogger(__name__)

NIGHT_ROWS_STORAGE = StorageLevel.DISK_ONLY  # bronze, validated, classified and silver rows; see the module docstring


@dataclass
class IngestCounts:
    rows_read: int
    rows_valid: int
    rows_quarantined: int
    duplicates_removed: int
    conflicts_quarantined: int
    silver_rows_kept: int
    silver_rows: int
    item_rows_read: int
    item_rows_quarantined: int
    items: int
    files_read: int


def _union(frames: list[DataFrame]) -> DataFrame:
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _with_lineage(df: DataFrame, ingest_date: dt.date, run_id: str) -> DataFrame:
    return df.withColumn("ingest_date", F.lit(ingest_date)).withColumn("run_id", F.lit(run_id))


def run_ingest(ctx: StageContext) -> IngestCounts:
    spark, tables, ic, run_date = ctx.spark, ctx.tables, ctx.config.ingest, ctx.run_date
    max_event_ts = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time()) + dt.timedelta(
        hours=ic.future_tolerance_hours
    )
    sources = configured_sources(ic)
    files, comparisons = {}, {}
    if ic.incremental:
        manifest = tables.read_if_exists(INGEST_MANIFEST)
        # a re-run of D compares with the manifest as it was before D, so it reads D's files again
        manifest = None if manifest is None else manifest.where(F.col("ingest_date") != F.lit(run_date))
    for source in sources:
        listed = list_input_files(spark, source.paths)
        if ic.incremental:
            comparisons[source.name] = compare_with_manifest(spark, source.name, listed, manifest)
            listed = comparisons[source.name].to_read
        files[source.name] = listed
    bronze = {s.name: read_source(spark, s, files=files[s.name], run_date=run_date).persist(NIGHT_ROWS_STORAGE)
              for s in sources}
    rows_per_source = {name: frame.count() for name, frame in bronze.items()}
    if ic.allow_empty and not any(rows_per_source[s.name] for s in sources if s.kind == "interactions"):
        log.warning("ingest %s: no interaction rows and ingest.allow_empty is set; nothing written", run_date)
        return IngestCounts(*([0] * 11))
    for source in sources:
        if ic.allow_empty or rows_per_source[source.name]:
            continue
        already = comparisons[source.name].unchanged if ic.incremental else []
        if not already:
            check_not_empty(source, files[source.name], 0)
        elif source.kind == "interactions":
            raise EmptyInputError(
                f"source {source.name!r}: no new or changed files since the last ingest "
                f"({len(already)} file(s) already ingested). Nothing was written; rerun with --allow-empty "
                "(ingest.allow_empty: true) if the night really had no new data."
            )

    interaction_sources = [s for s in sources if s.kind == "interactions" and rows_per_source[s.name]]
    item_sources = [s for s in sources if s.kind == "items" and rows_per_source[s.name]]
    tag_sources = [s for s in sources if s.kind == "item_tags" and rows_per_source[s.name]]
    validated = [validate_interactions(bronze[s.name], s, max_event_ts).persist(NIGHT_ROWS_STORAGE)
                 for s in interaction_sources]
    validated_all = _union(validated)
    candidates = to_silver_candidates(validated_all, run_date, ctx.run_id)
    rows_valid = candidates.count()

    stored = tables.read_if_exists(INTERACTIONS_SILVER)
    stored_other_dates = None if stored is None else stored.where(F.col("ingest_date") != F.lit(run_date))
    silver_rows_kept = 0 if stored_other_dates is None else stored_other_dates.count()
    merge = merge_into_silver(stored_other_dates, candidates, storage=NIGHT_ROWS_STORAGE)
    silver = apply_merge(stored_other_dates, merge).persist(NIGHT_ROWS_STORAGE)

    items_validated = [validate_items(bronze[s.name], s).persist(NIGHT_ROWS_STORAGE) for s in item_sources]
    tags_validated = [validate_item_tags(bronze[s.name], s).persist(NIGHT_ROWS_STORAGE) for s in tag_sources]
    rejected = [to_quarantine_rows(v, run_date, ctx.run_id) for v in validated]
    conflicts = conflict_quarantine_rows(merge.conflicts, run_date, ctx.run_id)
    quarantine_parts = [*rejected, conflicts, *[to_quarantine_rows(v, run_date, ctx.run_id)
                                                for v in items_validated + tags_validated]]
    items = None
    if items_validated:
        items_valid = _union([valid_rows(v) for v in items_validated])
        tags_valid = _union([valid_rows(v) for v in tags_validated]) if tags_validated else None
        if tags_valid is None:
            tags_valid = spark.createDataFrame([], "item_id string, tag string, source string, source_file string")
        items = build_items(items_valid, tags_valid, run_date).localCheckpoint()
        if tags_validated:
            quarantine_parts.append(unknown_item_tags_quarantine(tags_valid, items, run_date, ctx.run_id))
    quarantine = _union(quarantine_parts).localCheckpoint()
    rows_rejected = _union(rejected).count()
    n_conflicts = merge.conflicts.count()
    accounting = RowAccounting(
        rows_read=validated_all.count(), rows_valid=rows_valid, rows_quarantined=rows_rejected,
        silver_rows_kept=silver_rows_kept, duplicates_removed=merge.duplicates.count(),
        conflicts_quarantined=n_conflicts, silver_rows=silver.count(),
    )
    accounting.check()
    counts = IngestCounts(
        rows_read=accounting.rows_read, rows_valid=rows_valid, rows_quarantined=rows_rejected + n_conflicts,
        duplicates_removed=accounting.duplicates_removed, conflicts_quarantined=n_conflicts,
        silver_rows_kept=silver_rows_kept, silver_rows=accounting.silver_rows,
        item_rows_read=sum(v.count() for v in items_validated + tags_validated),
        item_rows_quarantined=quarantine.count() - rows_rejected - n_conflicts,
        items=items.count() if items is not None else 0,
        files_read=sum(len(f) for f in files.values()),
    )

    partition, meta = {"ingest_date": run_date}, ctx.commit_metadata()
    if interaction_sources:
        tables.write(_with_lineage(_union([bronze[s.name] for s in interaction_sources]), run_date, ctx.run_id),
                     INTERACTIONS_BRONZE, replace_partition=partition, metadata=meta)
    if item_sources or tag_sources:
        tables.write(_with_lineage(_union([bronze[s.name] for s in item_sources + tag_sources]), run_date, ctx.run_id),
                     ITEMS_BRONZE, replace_partition=partition, metadata=meta)
    tables.write(quarantine, INTERACTIONS_QUARANTINE, replace_partition=partition, metadata=meta)
    tables.write(silver, INTERACTIONS_SILVER, metadata=meta, overwrite_schema=True)
    if items is not None:
        tables.write(items, ITEMS, metadata=meta, overwrite_schema=True)
    if ic.incremental:
        entries = _union([manifest_rows(spark, name, comparison, run_date, run_date)
                          for name, comparison in comparisons.items()])
        tables.write(entries, INGEST_MANIFEST, mode="append", metadata=meta)

    for row in (
        quarantine.groupBy("source", "reason", "column").count().orderBy(F.desc("count")).limit(10).collect()
    ):
        log.warning("quarantined %d rows of %s: %s (column %s)", row["count"], row.source, row.reason, row.column)
    log.info("ingest %s: %s", run_date, asdict(counts))
    for frame in [*bronze.values(), *validated, *items_validated, *tags_validated, silver]:
        frame.unpersist()
    merge.unpersist()
    return counts
