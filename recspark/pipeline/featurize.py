"""Featurize stage: silver interactions + items -> indexes, features, train/validation/test split.

Writes ``user_index`` and ``item_index`` (stable across runs: read back and extended),
``user_features``, ``item_features`` and ``interactions_split`` (one row per (user, item) with
user_idx, item_idx, rating, weight, confidence, event_ts and split, partitioned by split).
Features are computed as of the end of the run date. The split's protocol travels with
``interactions_split`` in its commit metadata (``split.protocol``, ``split.seed``,
``split.carve_stratify_by``): evaluation labels its metrics and the training and tuning stages
draw their validation carve from it (seeded, stratified like the test split), not from today's
config.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from recspark.catalog import INTERACTIONS_SILVER, INTERACTIONS_SPLIT, ITEM_FEATURES, ITEM_INDEX, ITEMS, USER_FEATURES, USER_INDEX
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
from recspark.featurize.splits import carve_stratification, describe_split
from recspark.pipeline.stage import StageContext

log = logging.getLogger(__name__)


@dataclass
class FeaturizeCounts:
    users: int
    items: int
    pairs: int
    train_pairs: int
    validation_pairs: int
    test_pairs: int


def run_featurize(ctx: StageContext) -> FeaturizeCounts:
    tables, fc = ctx.tables, ctx.config.featurize
    as_of = dt.datetime.combine(ctx.run_date + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    meta = ctx.commit_metadata()
    silver = tables.read(INTERACTIONS_SILVER)
    items = tables.read_if_exists(ITEMS)

    def existing(table):
        stored = tables.read_if_exists(table)
        return None if stored is None else stored.localCheckpoint()

    users = user_index(silver, existing(USER_INDEX)).localCheckpoint()
    if items is None:
        items = ctx.spark.createDataFrame([], "item_id string, genres array<string>, title string, text string")
    item_ids = item_index(silver, items, existing(ITEM_INDEX)).localCheckpoint()
    tables.write(users, USER_INDEX, metadata=meta, overwrite_schema=True)
    tables.write(item_ids, ITEM_INDEX, metadata=meta, overwrite_schema=True)

    tables.write(user_features(silver, users, as_of, fc.recency_half_life_days), USER_FEATURES, metadata=meta,
                 overwrite_schema=True)
    vocabulary = genre_vocabulary(items)
    tables.write(item_features(silver, items, item_ids, vocabulary, as_of), ITEM_FEATURES,
                 metadata=ctx.commit_metadata({"genre_vocabulary": ",".join(vocabulary)}), overwrite_schema=True)

    pairs = aggregate_user_item(silver, fc.confidence_alpha, fc.confidence_epsilon)
    split = attach_indexes(split_interactions(pairs, fc.split), users, item_ids).localCheckpoint()
    protocol = {"split.protocol": describe_split(fc.split), "split.seed": fc.split.seed,
                "split.carve_stratify_by": carve_stratification(fc.split)}
    tables.write(split, INTERACTIONS_SPLIT, metadata=ctx.commit_metadata(protocol), overwrite_schema=True)

    sizes = {r["split"]: r["count"] for r in split.groupBy("split").count().collect()}
    counts = FeaturizeCounts(
        users=users.count(), items=item_ids.count(), pairs=sum(sizes.values()),
        train_pairs=sizes.get("train", 0), validation_pairs=sizes.get("validation", 0), test_pairs=sizes.get("test", 0),
    )
    log.info("featurize %s: %s", ctx.run_date, counts)
    return counts
