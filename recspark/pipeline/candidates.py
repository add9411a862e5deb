"""Candidates stage: top ``candidates.n`` items per user from every source of ``candidates.sources``.

Each source (:mod:`recspark.sources`) is fitted on the history (every non-test pair of
``interactions_split``, which is also the seen set excluded from its lists) and recommends for
every user of ``user_index`` it can serve. Output table ``candidates``: user_idx, item_idx, source,
score (double; comparable within a source only), rank (1..N within user and source),
because_item_idx (nullable), run_date; partitioned by source and replaced whole each run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import CANDIDATES, INTERACTIONS_SPLIT, USER_INDEX
from recspark.io.session import materialize_on_disk
from recspark.pipeline.stage import StageContext
from recspark.sources import SourceInputs, as_candidates, get_source, require_known_sources

log = logging.getLogger(__name__)


@dataclass
class CandidateCounts:
    users: int
    rows: int
    sources: int


def users_and_rows(lists: DataFrame) -> tuple[int, int]:
    """(distinct user_idx, rows) of ``lists`` in one hash aggregation by user (partial per task,
    at most one entry per user) and a sum. ``agg(countDistinct, count)`` expands every row
    into two before aggregating: over 20M interactions' 100M candidate rows it ran the 4g
    driver out of aggregation memory after the table had been written."""
    per_user = lists.groupBy("user_idx").agg(F.count(F.lit(1)).alias("n"))
    summary = per_user.agg(F.count(F.lit(1)).alias("users"), F.sum("n").alias("rows")).first()
    return summary["users"], summary["rows"] or 0


def run_candidates(ctx: StageContext) -> CandidateCounts:
    tables, cc = ctx.tables, ctx.config.candidates
    require_known_sources(cc.sources, "candidates.sources")
    history = tables.read(INTERACTIONS_SPLIT).where(F.col("split") != "test").cache()
    seen = history.select("user_idx", "item_idx")
    users = tables.read(USER_INDEX).select("user_idx")
    inputs = SourceInputs(ctx.config, tables)
    parts = []
    for name in cc.sources:
        with ctx.measure(f"candidates.{name}"):
            model = get_source(name).fit(history, inputs)
            parts.append(materialize_on_disk(as_candidates(model.recommend(users, cc.n, seen), name)))
    candidates = reduce(DataFrame.unionByName, parts).withColumn("run_date", F.lit(ctx.run_date))
    tables.write(candidates, CANDIDATES, metadata=ctx.commit_metadata(), overwrite_schema=True)
    history.unpersist()
    users, rows = users_and_rows(candidates)
    for part in parts:
        part.unpersist()
    counts = CandidateCounts(users, rows, len(cc.sources))
    log.info("candidates %s: %s", ctx.run_date, counts)
    return counts
