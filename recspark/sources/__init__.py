"""Candidate sources: every retrieval model behind one interface, registered once.

A source is one :class:`CandidateSource` subclass in its own module plus one line in
:data:`BUILT_IN` (or a :func:`register_source` call, for a plug-in):

* ``fit(history, inputs)`` -> a model for tonight's candidates. ``history`` is every non-test row
  of ``interactions_split`` (user_idx, item_idx, rating, weight, confidence, event_ts, ...);
  ``inputs`` gives the config and read access to the tables the source declares in ``reads``
  (a source may reuse what a training stage wrote, as ALS reuses ``user_factors``).
* ``refit(history, inputs)`` -> the same model fitted on ``history`` alone, for validation-time
  candidates (the rerank stage tunes its blend on them); by default ``fit``.
* the model's ``recommend(users, n, seen)`` -> (user_idx, item_idx, score, rank 1..n[,
  because_item_idx]) for the distinct ``user_idx`` of ``users`` that the source can serve,
  never an item of ``seen`` (user_idx, item_idx).

The candidates stage writes each configured source's top ``candidates.n`` as its own partition of
the ``candidates`` table (:func:`as_candidates`); rerank refits them for validation; evaluate
scores every source present and publish fills its lists from ``publish.sources`` in order. So a
new source needs no edit anywhere else.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import ITEM_EMBEDDINGS, ITEM_FACTORS, ITEM_SIMILARITY, TUNED_PARAMS, USER_FACTORS, Table
from recspark.schemas import CANDIDATES


class TableReader(Protocol):
    """Read access to declared tables (the pipeline's stage table view)."""

    def read(self, name: str | Table) -> DataFrame: ...

    def exists(self, name: str | Table) -> bool: ...

    def read_if_exists(self, name: str | Table) -> DataFrame | None: ...

    def latest_metadata(self, name: str | Table) -> dict[str, str]: ...


class SourceModel(Protocol):
    def recommend(self, users: DataFrame, n: int, seen: DataFrame) -> DataFrame: ...


class SourceInputs:
    """What a source may use besides the history: the run's ``config`` and its ``tables``."""

    def __init__(self, config: Any, tables: TableReader):
        self.config = config
        self.tables = tables


class CandidateSource(ABC):
    """One retrieval source; see the module docstring. ``name`` is its ``source`` value in the
    candidates table and in ``candidates.sources``; ``reads`` the tables it reads besides the
    history (they must be among :data:`SOURCE_TABLES`, which the stages declare)."""

    name: ClassVar[str]
    reads: ClassVar[tuple[Table, ...]] = ()

    @abstractmethod
    def fit(self, history: DataFrame, inputs: SourceInputs) -> SourceModel:
        """The model for tonight's candidates."""

    def refit(self, history: DataFrame, inputs: SourceInputs) -> SourceModel:
        """The model fitted on ``history`` alone (validation-time candidates)."""
        return self.fit(history, inputs)


# Tables any source may read besides the history; the candidates and rerank stages declare them.
SOURCE_TABLES: tuple[Table, ...] = (USER_FACTORS, ITEM_FACTORS, ITEM_SIMILARITY, ITEM_EMBEDDINGS, TUNED_PARAMS)

# name -> "module:Class", imported on first use.
BUILT_IN: dict[str, str] = {
    "als": "recspark.sources.als:AlsSource",
    "item_item": "recspark.sources.item_item:ItemItemSource",
    "popularity": "recspark.sources.popularity:PopularitySource",
    "content": "recspark.sources.content:ContentSource",
    "ease": "recspark.sources.ease:EaseSource",
    "user_knn": "recspark.sources.user_knn:UserKnnSource",
}
_registered: dict[str, CandidateSource] = {}


def register_source(source: CandidateSource) -> CandidateSource:
    """Add a plug-in source (an instance); ValueError when its name is taken or it reads a table
    outside :data:`SOURCE_TABLES`."""
    if source.name in BUILT_IN or source.name in _registered:
        raise ValueError(f"candidate source {source.name!r} is already registered")
    undeclared = sorted(t.name for t in source.reads if t not in SOURCE_TABLES)
    if undeclared:
        raise ValueError(f"source {source.name!r} reads {undeclared}, outside the source tables "
                         f"{[t.name for t in SOURCE_TABLES]}; add them to SOURCE_TABLES")
    _registered[source.name] = source
    return source


def unregister_source(name: str) -> None:
    """Remove a plug-in source (tests)."""
    _registered.pop(name, None)


def source_names() -> tuple[str, ...]:
    return (*BUILT_IN, *_registered)


def get_source(name: str) -> CandidateSource:
    """The source ``name``; ValueError listing the known names otherwise."""
    if name in _registered:
        return _registered[name]
    if name not in BUILT_IN:
        raise ValueError(f"unknown candidate source {name!r}; known: {list(source_names())}")
    module, cls = BUILT_IN[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def require_known_sources(names: list[str], setting: str, extra: tuple[str, ...] = ()) -> None:
    """ValueError naming ``setting`` when ``names`` has a name that is neither a source nor in ``extra``."""
    unknown = sorted(set(names) - set(source_names()) - set(extra))
    if unknown:
        raise ValueError(f"{setting}: unknown source(s) {unknown}; known: {[*source_names(), *extra]}")


@dataclass
class CandidatesSettings:
    """Per-user candidates from every source (the ``candidates`` section); source names are
    those of :mod:`recspark.sources` (built in or registered before the config loads)."""

    n: int = 100  # candidates per user and source
    sources: list[str] = field(default_factory=lambda: list(BUILT_IN))  # every built-in source
    popularity_window_days: float | None = None  # null: all-time popularity

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n: must be >= 1, got {self.n}")
        require_known_sources(self.sources, "sources")
        if self.popularity_window_days is not None and not self.popularity_window_days > 0:
            raise ValueError(f"popularity_window_days: must be > 0 or null, got {self.popularity_window_days}")


def as_candidates(recommendations: DataFrame, source: str) -> DataFrame:
    """A source's recommendations in the columns and types of :data:`recspark.schemas.CANDIDATES`
    (``because_item_idx`` null where the source gives none)."""
    because = F.col("because_item_idx") if "because_item_idx" in recommendations.columns else F.lit(None)
    return recommendations.select(
        F.col("user_idx").cast("int"), F.col("item_idx").cast("int"), F.lit(source).alias("source"),
        F.col("score").cast("double"), F.col("rank").cast("int"), because.cast("int").alias("because_item_idx"),
    ).select(*CANDIDATES.fieldNames())
