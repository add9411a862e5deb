"""Ingest stage: source files -> interactions_bronze / interactions_silver / quarantine / items.

Per run date D (``--run-date``):

* ``interactions_bronze`` and ``items_bronze``: partition ``ingest_date=D`` replaced with every row
  read this run, as strings (malformed rows included).
* ``interactions_quarantine``: partition ``ingest_date=D`` replaced with every rejected row.
* ``interactions_silver``: rebuilt as (silver rows of other ingest dates) + (valid rows of D),
  de-duplicated. Re-running D therefore gives identical tables (idempotent).
* ``items``: rebuilt from this run's item sources and tags.

Row accounting, checked every run (a violation fails the run before anything is published):
rows read = valid + quarantined, and silver rows = silver rows kept from other dates + valid
rows - duplicates removed.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, SourceConfig
from recspark.io.delta import DeltaTables
from recspark.ingest.dedupe import deduplicate_interactions
from recspark.ingest.items import build_items, unknown_item_tags_quarantine
from recspark.ingest.presets import preset_sources
from recspark.ingest.read import read_source
from recspark.ingest.validate import (
    to_quarantine_rows,
    to_silver_rows,
    valid_rows,
    validate_interactions,
    validate_item_tags,
    validate_items,
)
from recspark.stages.common import StageContext
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)


class RowAccountingError(RuntimeError):
    """Rows were lost or invented between reading and writing."""


@dataclass
class IngestCounts:
    rows_read: int
    rows_valid: int
    rows_quarantined: int
    duplicates_removed: int
    silver_rows_kept: int
    silver_rows: int
    item_rows_read: int
    item_rows_quarantined: int
    items: int

    def check(self) -> None:
        if self.rows_read != self.rows_valid + self.rows_quarantined:
            raise RowAccountingError(
                f"rows read {self.rows_read} != valid {self.rows_valid} + quarantined {self.rows_quarantined}"
            )
        if self.silver_rows != self.silver_rows_kept + self.rows_valid - self.duplicates_removed or self.duplicates_removed < 0:
            raise RowAccountingError(
                f"silver {self.silver_rows} != kept {self.silver_rows_kept} + valid {self.rows_valid}"
                f" - duplicates {self.duplicates_removed}"
            )


def configured_sources(config: Config) -> list[SourceConfig]:
    """Sources of the preset (if any) followed by the explicitly configured ones."""
    sources = preset_sources(config.ingest.preset, config.ingest.data_dir) if config.ingest.preset else []
    sources += config.ingest.sources
    if not any(s.kind == "interactions" for s in sources):
        raise ValueError("ingest: no interactions source configured (set ingest.preset or ingest.sources)")
    return sources


def _union(frames: list[DataFrame]) -> DataFrame:
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _with_lineage(df: DataFrame, ingest_date: dt.date, run_id: str) -> DataFrame:
    return df.withColumn("ingest_date", F.lit(ingest_date)).withColumn("run_id", F.lit(run_id))


def run_ingest(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> IngestCounts:
    run_date = ctx.run_date
    max_event_ts = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time()) + dt.timedelta(
        hours=config.ingest.future_tolerance_hours
    )
    sources = configured_sources(config)
    interaction_sources = [s for s in sources if s.kind == "interactions"]
    item_sources = [s for s in sources if s.kind == "items"]
    tag_sources = [s for s in sources if s.kind == "item_tags"]

    bronze = {s.name: read_source(spark, s) for s in sources}
    validated = [validate_interactions(bronze[s.name], s, max_event_ts).cache() for s in interaction_sources]
    validated_all = _union(validated)
    partition = {"ingest_date": run_date}
    meta = ctx.commit_metadata("ingest")

    tables.write(
        _with_lineage(_union([bronze[s.name] for s in interaction_sources]), run_date, ctx.run_id),
        "interactions_bronze", partition_by=["ingest_date"], replace_partition=partition, metadata=meta,
        overwrite_schema=False,
    )
    rows_read = validated_all.count()
    silver_new = to_silver_rows(validated_all, run_date, ctx.run_id)
    rows_valid = silver_new.count()

    previous = (
        tables.read("interactions_silver").filter(F.col("ingest_date") != F.lit(run_date))
        if tables.exists("interactions_silver")
        else None
    )
    silver_rows_kept = previous.count() if previous is not None else 0
    combined = silver_new if previous is None else previous.unionByName(silver_new)
    silver = deduplicate_interactions(combined).localCheckpoint()
    silver_rows = silver.count()

    items_validated = [validate_items(bronze[s.name], s).cache() for s in item_sources]
    tags_validated = [validate_item_tags(bronze[s.name], s).cache() for s in tag_sources]
    quarantine_parts = [to_quarantine_rows(v, run_date, ctx.run_id) for v in validated + items_validated + tags_validated]
    item_rows_read = sum(v.count() for v in items_validated + tags_validated)
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
    rows_quarantined = quarantine.filter(F.col("source").isin([s.name for s in interaction_sources])).count()

    counts = IngestCounts(
        rows_read=rows_read,
        rows_valid=rows_valid,
        rows_quarantined=rows_quarantined,
        duplicates_removed=silver_rows_kept + rows_valid - silver_rows,
        silver_rows_kept=silver_rows_kept,
        silver_rows=silver_rows,
        item_rows_read=item_rows_read,
        item_rows_quarantined=quarantine.count() - rows_quarantined,
        items=items.count() if items is not None else 0,
    )
    counts.check()

    if item_sources or tag_sources:
        tables.write(
            _with_lineage(_union([bronze[s.name] for s in item_sources + tag_sources]), run_date, ctx.run_id),
            "items_bronze", partition_by=["ingest_date"], replace_partition=partition, metadata=meta,
        )
    tables.write(
        quarantine, "interactions_quarantine", partition_by=["ingest_date"], replace_partition=partition, metadata=meta
    )
    tables.write(silver, "interactions_silver", metadata=meta, overwrite_schema=True)
    if items is not None:
        tables.write(items, "items", metadata=meta, overwrite_schema=True)

    if rows_quarantined:
        for row in (
            quarantine.groupBy("source", "reason", "column").count().orderBy(F.desc("count")).limit(10).collect()
        ):
            log.warning("quarantined %d rows of %s: %s (column %s)", row["count"], row.source, row.reason, row.column)
    log.info("ingest %s: %s", run_date, asdict(counts))
    for frame in validated + items_validated + tags_validated:
        frame.unpersist()
    return counts
