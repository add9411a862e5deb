"""The table catalogue: every warehouse table declared once.

A :class:`Table` names a Delta table by its logical name (its folder under ``warehouse`` and its
view name in ``recspark sql``/``serve``), the stage that owns it (creates it and is its main
writer), how it is partitioned and, where the platform fixes it, its schema. Tables whose
columns follow the algorithm that writes them (factors, features, splits) leave ``schema`` as
``None``; the Delta layer still refuses an append or partition replace whose schema differs from
the table's.

Stages name tables through the constants below (``catalog.CANDIDATES.name`` or just the
constant), never by string literal, and declare what they read and write in
:mod:`recspark.pipeline.registry`; the runner refuses any other access.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from recspark import schemas


@dataclass(frozen=True)
class Table:
    """One warehouse table: logical ``name``, ``owner`` stage, ``partition_by`` columns,
    ``schema`` (``None``: set by the owner's transform) and a one-line ``description``."""

    name: str
    owner: str
    description: str
    partition_by: tuple[str, ...] = ()
    schema: T.StructType | None = None

    def __str__(self) -> str:
        return self.name


INTERACTIONS_BRONZE = Table("interactions_bronze", "ingest", "every interaction row read, as strings",
                            ("ingest_date",))
ITEMS_BRONZE = Table("items_bronze", "ingest", "every item and tag row read, as strings", ("ingest_date",))
INTERACTIONS_QUARANTINE = Table("interactions_quarantine", "ingest", "rejected rows with reason and column",
                                ("ingest_date",), schemas.QUARANTINE)
INTERACTIONS_SILVER = Table("interactions_silver", "ingest", "typed, validated, de-duplicated interactions",
                            schema=schemas.INTERACTIONS)
INGEST_MANIFEST = Table("ingest_manifest", "ingest", "input files already ingested (path, size, mtime, checksum)",
                        schema=schemas.INGEST_MANIFEST)
ITEMS = Table("items", "ingest", "item metadata: title, genres, tags, text", schema=schemas.ITEMS)
USER_INDEX = Table("user_index", "featurize", "stable user_id -> user_idx")
ITEM_INDEX = Table("item_index", "featurize", "stable item_id -> item_idx")
USER_FEATURES = Table("user_features", "featurize", "per-user activity features as of the run date")
ITEM_FEATURES = Table("item_features", "featurize", "per-item popularity and genre features")
INTERACTIONS_SPLIT = Table("interactions_split", "featurize",
                           "one row per (user, item) with its train/validation/test split", ("split",))
USER_FACTORS = Table("user_factors", "train-als", "ALS user factors (features array<float>)")
ITEM_FACTORS = Table("item_factors", "train-als", "ALS item factors (features array<float>)")
ITEM_SIMILARITY = Table("item_similarity", "item-similarity",
                        "top-N neighbours per item, one partition per method", ("method",))
ITEM_EMBEDDINGS = Table("item_embeddings", "embed-items", "L2-normalised text embeddings per item",
                        schema=schemas.ITEM_EMBEDDINGS)
CANDIDATES = Table("candidates", "candidates", "top-N items per user and candidate source", ("source",))
METRICS = Table("metrics", "evaluate", "offline metrics per model of each run date", ("run_date",))
RECOMMENDATIONS = Table("recommendations", "publish", "published lists, one partition per run date",
                        ("run_date",))
RECOMMENDATIONS_LATEST = Table("recommendations_latest", "publish", "the newest published date's lists")
TUNED_PARAMS = Table("tuned_params", "tune", "hyperparameters chosen by the weekly tune, per algorithm",
                     ("algorithm",), schemas.TUNED_PARAMS)
STAGE_RUNS = Table("stage_runs", "pipeline", "wall time and peak memory of every stage and step",
                   schema=schemas.STAGE_RUNS)

TABLES: dict[str, Table] = {
    t.name: t for t in (
        INTERACTIONS_BRONZE, ITEMS_BRONZE, INTERACTIONS_QUARANTINE, INTERACTIONS_SILVER, INGEST_MANIFEST, ITEMS,
        USER_INDEX, ITEM_INDEX, USER_FEATURES, ITEM_FEATURES, INTERACTIONS_SPLIT, USER_FACTORS, ITEM_FACTORS,
        ITEM_SIMILARITY, ITEM_EMBEDDINGS, CANDIDATES, METRICS, RECOMMENDATIONS, RECOMMENDATIONS_LATEST, TUNED_PARAMS,
        STAGE_RUNS,
    )
}


def table(name: str | Table) -> Table:
    """The declared table ``name`` (a :class:`Table` is returned as is); KeyError listing the
    known names otherwise."""
    if isinstance(name, Table):
        return name
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; declared tables: {sorted(TABLES)}") from None
