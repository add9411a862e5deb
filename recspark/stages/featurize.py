"""Featurize stage: silver interactions + items -> indexes, features, train/validation/test split.

Writes ``user_index`` and ``item_index`` (stable across runs: read back and extended),
``user_features``, ``item_features`` and ``interactions_split`` (one row per (user, item) with
user_idx, item_idx, rating, weight, confidence, event_ts and split, partitioned by split).
Features are computed as of the end of the run date.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.io.delta import DeltaTables
from recspark.featurize import (
    aggregate_user_item,
    attach_indexes,
    genre_vocabulary,
    item_features,
    item_index,
    split_interactions,
    user_features,
    user_index,
)
from recspark.stages.common import StageContext
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)


@dataclass
class FeaturizeCounts:
    users: int
    items: int
    pairs: int
    train_pairs: int
    validation_pairs: int
    test_pairs: int


def run_featurize(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> FeaturizeCounts:
    fc = config.featurize
    as_of = dt.datetime.combine(ctx.run_date + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    meta = ctx.commit_metadata("featurize")
    silver = tables.read("interactions_silver")
    items = tables.read("items") if tables.exists("items") else None

    def existing(name):
        return tables.read(name).localCheckpoint() if tables.exists(name) else None

    users = user_index(silver, existing("user_index")).localCheckpoint()
    if items is None:
        items = spark.createDataFrame([], "item_id string, genres array<string>, title string, text string")
    item_ids = item_index(silver, items, existing("item_index")).localCheckpoint()
    tables.write(users, "user_index", metadata=meta, overwrite_schema=True)
    tables.write(item_ids, "item_index", metadata=meta, overwrite_schema=True)

    tables.write(
        user_features(silver, users, as_of, fc.recency_half_life_days), "user_features", metadata=meta,
        overwrite_schema=True,
    )
    tables.write(
        item_features(silver, items, item_ids, genre_vocabulary(items), as_of), "item_features",
        metadata=meta | {"genre_vocabulary": ",".join(genre_vocabulary(items))}, overwrite_schema=True,
    )

    pairs = aggregate_user_item(silver, fc.confidence_alpha, fc.confidence_epsilon)
    split = attach_indexes(split_interactions(pairs, fc.split), users, item_ids).localCheckpoint()
    tables.write(split, "interactions_split", partition_by=["split"], metadata=meta, overwrite_schema=True)

    sizes = {r["split"]: r["count"] for r in split.groupBy("split").count().collect()}
    counts = FeaturizeCounts(
        users=users.count(),
        items=item_ids.count(),
        pairs=sum(sizes.values()),
        train_pairs=sizes.get("train", 0),
        validation_pairs=sizes.get("validation", 0),
        test_pairs=sizes.get("test", 0),
    )
    log.info("featurize %s: %s", ctx.run_date, counts)
    return counts
