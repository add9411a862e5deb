"""Generate stage: write synthetic interaction logs and item metadata as CSV files.

Output (``generate.output_dir``): ``interactions/*.csv`` and ``items/*.csv`` with headers, the
layout the ``synthetic`` ingest preset reads. Files are raw logs, not tables: they are the input
of the ingest stage, like any file drop.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from recspark.pipeline.stage import StageContext
from recspark.synthetic import INTERACTIONS_CSV_COLUMNS, ITEMS_CSV_COLUMNS, generate_interactions, generate_items

log = logging.getLogger(__name__)


@dataclass
class GenerateCounts:
    interactions: int
    items: int


def run_generate(ctx: StageContext) -> GenerateCounts:
    cfg = ctx.config.generate
    out = cfg.output_dir.rstrip("/")
    generate_interactions(ctx.spark, cfg).select(*INTERACTIONS_CSV_COLUMNS).write.mode("overwrite").option(
        "header", True
    ).csv(f"{out}/interactions")
    generate_items(ctx.spark, cfg).select(*ITEMS_CSV_COLUMNS).write.mode("overwrite").option("header", True).csv(
        f"{out}/items"
    )
    log.info("generated %d interactions and %d items under %s", cfg.n_interactions, cfg.n_items, out)
    return GenerateCounts(interactions=cfg.n_interactions, items=cfg.n_items)
