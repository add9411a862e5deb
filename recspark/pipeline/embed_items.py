"""Embed-items stage: items + item_index -> ``item_embeddings``.

Each indexed item's text (``embedding.text_fields`` of ``items``) is encoded by the sentence
model ``embedding.model`` (see :mod:`recspark.content.embeddings`); items whose text hash and
model match the existing table are kept as they are, so a nightly run encodes only new or
changed items (commit metadata ``embedding.encoded`` counts them). ``item_embeddings`` columns:
item_idx (the stable id of ``item_index``), item_id, embedding (array<float>, L2-normalised),
model, text_hash; replaced whole in one commit. Items without any text (no ``items`` table, as
for a play-count source without an item file, or empty fields) get no embedding, so the content
source and the cold-start evaluation leave them out.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import functions as F

from recspark.catalog import ITEM_EMBEDDINGS, ITEM_INDEX, ITEMS
from recspark.content.embeddings import embed_texts, item_texts, items_to_embed
from recspark.pipeline.stage import StageContext

log = logging.getLogger(__name__)


@dataclass
class EmbeddingCounts:
    items: int
    encoded: int
    reused: int
    dimension: int


def run_embed_items(ctx: StageContext) -> EmbeddingCounts:
    tables, ec = ctx.tables, ctx.config.embedding
    texts = item_texts(tables.read_or_empty(ITEMS), tables.read(ITEM_INDEX), ec.text_fields)
    texts = texts.where(F.length("text") > 0)  # items without any text get no embedding
    existing = tables.read_if_exists(ITEM_EMBEDDINGS)
    todo, kept = items_to_embed(texts, None if existing is None else existing.localCheckpoint(), ec.model)
    with ctx.measure("embed_items.encode"):
        encoded = embed_texts(todo, ec.model, ec.batch_size, ec.device, ec.torch_threads).localCheckpoint()
    n_encoded = encoded.count()
    embeddings = encoded if kept is None else kept.unionByName(encoded)
    tables.write(embeddings, ITEM_EMBEDDINGS, overwrite_schema=True,
                 metadata=ctx.commit_metadata({"embedding.model": ec.model, "embedding.encoded": n_encoded}))
    first = embeddings.select(F.size("embedding").alias("d")).first()
    counts = EmbeddingCounts(
        items=texts.count(), encoded=n_encoded, reused=0 if kept is None else kept.count(),
        dimension=first["d"] if first else 0,
    )
    log.info("embed-items %s: %s", ctx.run_date, counts)
    return counts
