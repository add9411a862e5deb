"""The one configuration object of a run: assembles the settings and loads them from YAML.

Each section's settings are a dataclass declared beside the code it configures (``als`` is
:class:`recspark.recommenders.als.AlsSettings`, ``deep`` is
:class:`recspark.deep.settings.DeepSettings`, ...); this module only puts them together, loads
a YAML file (``conf/local.yaml`` by default) and applies command-line overrides given as dotted
``key=value`` pairs (``--set warehouse=/tmp/wh --set featurize.split.method=time``). Values
given with ``--set`` are parsed as YAML scalars, so ``true``, ``3`` and ``[1, 2]`` keep their
types. Unknown keys are errors, so a typo never silently falls back to a default, and every
section validates itself while loading (its ValueError becomes a :class:`ConfigError` naming
the dotted key), so a bad setting fails before any stage runs. Library modules never import
this one; only the CLI and the pipeline do.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recspark.content.embeddings import EmbeddingSettings
from recspark.content.recommend import ContentSettings
from recspark.deep.settings import DERIVED, FLATTEN, MODEL_NAMES, DeepSettings
from recspark.evaluation.suite import EvaluationSettings
from recspark.featurize.features import FeaturizeSettings
from recspark.ingest.settings import IngestSettings
from recspark.io.delta import DeltaSettings
from recspark.io.session import SparkSettings
from recspark.io.tracking import MlflowSettings
from recspark.publish import PublishSettings
from recspark.recommenders.als import AlsSettings
from recspark.recommenders.item_similarity import SimilaritySettings
from recspark.recommenders.ease import EaseSettings
from recspark.recommenders.user_knn import UserKnnSettings
from recspark.ranker.settings import RankerSettings
from recspark.report import ReportSettings
from recspark.serve import ServeSettings
from recspark.sources import CandidatesSettings, require_known_sources
from recspark.synthetic import GenerateSettings

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "local.yaml"


class ConfigError(ValueError):
    """Raised for a configuration that cannot be loaded or is inconsistent."""


@dataclass
class Config:
    warehouse: str = "warehouse"
    run_date: str | None = None  # YYYY-MM-DD; today (UTC) when unset
    spark: SparkSettings = field(default_factory=SparkSettings)
    delta: DeltaSettings = field(default_factory=DeltaSettings)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    tables: dict[str, str] = field(default_factory=dict)  # logical name -> table name
    table_locations: dict[str, str] = field(default_factory=dict)  # logical name -> full URI
    ingest: IngestSettings = field(default_factory=IngestSettings)
    featurize: FeaturizeSettings = field(default_factory=FeaturizeSettings)
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    als: AlsSettings = field(default_factory=AlsSettings)
    similarity: SimilaritySettings = field(default_factory=SimilaritySettings)
    user_knn: UserKnnSettings = field(default_factory=UserKnnSettings)
    ease: EaseSettings = field(default_factory=EaseSettings)
    candidates: CandidatesSettings = field(default_factory=CandidatesSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    content: ContentSettings = field(default_factory=ContentSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    deep: DeepSettings = field(default_factory=DeepSettings)
    ranker: RankerSettings = field(default_factory=RankerSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)

    def __post_init__(self) -> None:
        """Cross-section checks and derived values (each section checked itself already)."""
        if self.run_date is not None:
            self.effective_run_date()
        if not str(self.warehouse).strip():
            raise ConfigError("warehouse: must not be empty")
        try:
            require_known_sources(self.deep.rerank_sources, "deep.rerank_sources")
            require_known_sources(self.deep.hybrid_sources, "deep.hybrid_sources", extra=MODEL_NAMES)
            require_known_sources(self.ranker.sources, "ranker.sources", extra=MODEL_NAMES)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.deep.train = dataclasses.replace(self.deep.train, k=self.evaluation.k)

    def table_location(self, name: str) -> str:
        """Location of a logical table: an explicit ``table_locations`` entry, else
        ``<warehouse>/<table name>``."""
        if name in self.table_locations:
            return self.table_locations[name]
        return f"{self._warehouse_uri()}/{self.tables.get(name, name)}"

    def checkpoint_dir(self) -> str:
        """Spark checkpoint directory: ``als.checkpoint_dir``, else ``<warehouse>/_checkpoints``."""
        return self.als.checkpoint_dir or f"{self._warehouse_uri()}/_checkpoints"

    def deep_directory(self, name: str) -> str:
        """``deep.petastorm_cache_dir`` / ``export_dir`` / ``model_dir``, defaulting to
        ``<warehouse>/_petastorm``, ``_deep_export``, ``_deep_models``."""
        explicit = getattr(self.deep, name)
        if explicit:
            return explicit
        default = {"petastorm_cache_dir": "_petastorm", "export_dir": "_deep_export", "model_dir": "_deep_models"}[name]
        return f"{self._warehouse_uri()}/{default}"

    def effective_run_date(self) -> dt.date:
        """The run date as a date; today (UTC) when unset."""
        if self.run_date is None:
            return dt.datetime.now(dt.timezone.utc).date()
        try:
            return dt.date.fromisoformat(str(self.run_date))
        except ValueError as exc:
            raise ConfigError(f"run_date must be YYYY-MM-DD, got {self.run_date!r}") from exc

    def _warehouse_uri(self) -> str:
        warehouse = self.warehouse if "://" in self.warehouse else os.path.abspath(self.warehouse)
        return warehouse.rstrip("/")


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type, raising ConfigError with the key path."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | globals())  # resolve postponed annotations
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(value, non_none[0], where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(annotation, value, where)
    if origin is list:
        if not isinstance(value, list):
            value = [value]
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if annotation is int and float(value) != int(value):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return annotation(value)
    if annotation is str:
        if value is None:
            raise ConfigError(f"{where}: must not be empty")
        return str(value)
    return value


def _build(cls: type, data: dict, where: str) -> Any:
    """``cls(**data)`` with every value converted to its field's type; unknown and derived keys,
    type errors and the section's own validation errors become ConfigError naming the key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    data = _unflattened(data, fields, hints, where)
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {sorted(unknown)}; known: {sorted(fields)}")
    for key in data:
        if DERIVED in fields[key].metadata:
            raise ConfigError(f"{_dotted(where, key)}: set from {fields[key].metadata[DERIVED]}, not here")
    kwargs = {k: _convert(v, hints[k], _dotted(where, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(_located(str(exc), where, fields)) from exc


def _dotted(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _unflattened(data: dict, fields: dict, hints: dict, where: str) -> dict:
    """``data`` with the keys of a flattened nested field (metadata ``FLATTEN``) written flat in
    the section moved under that field (``deep.epochs`` -> ``deep.train.epochs``)."""
    data = dict(data)
    for name, f in fields.items():
        if not f.metadata.get(FLATTEN):
            continue
        nested_keys = {g.name for g in dataclasses.fields(hints[name])}
        flat = {key: data.pop(key) for key in list(data) if key in nested_keys and key not in fields}
        if not flat:
            continue
        nested = data.get(name) or {}
        if not isinstance(nested, dict):
            raise ConfigError(f"{_dotted(where, name)}: expected a mapping, got {nested!r}")
        both = sorted(set(flat) & set(nested))
        if both:
            raise ConfigError(f"{where}: {both} given both flat and under {name}; give each once")
        data[name] = {**nested, **flat}
    return data


def _located(message: str, where: str, fields: dict) -> str:
    """A section's validation message prefixed with its dotted key: ``losses: ...`` raised by
    the ``deep`` section reads ``deep.losses: ...``."""
    if not where or message.startswith(where):
        return message
    parent, _, last = where.rpartition(".")
    if message.startswith(f"{last}."):  # "split.test_ratio ..." raised by featurize.split
        return f"{parent}.{message}" if parent else message
    field_name = message.split(":", 1)[0]
    if field_name in fields:
        return f"{where}.{message}"
    return f"{where}: {message}"


def _mapping_depth(parts: list[str]) -> int | None:
    """How many leading ``parts`` name a free-form mapping setting (a ``dict`` field such as
    ``spark.conf``: 2), whose own keys contain dots; None when the path names none."""
    cls: Any = Config
    for depth, part in enumerate(parts, start=1):
        if not dataclasses.is_dataclass(cls):
            return None
        hint = typing.get_type_hints(cls).get(part)
        if hint is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)] if _is_optional(hint) else [hint]
        if len(options) == 1 and typing.get_origin(options[0]) is dict:
            return depth
        cls = options[0] if len(options) == 1 else None
    return None


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _set_dotted(data: dict, key: str, value: Any) -> None:
    """Set ``key`` (dotted) in the nested ``data``; below a free-form mapping the rest of the key
    is one entry: ``spark.conf.spark.driver.memory`` sets ``spark.driver.memory`` of ``spark.conf``."""
    parts = key.split(".")
    depth = _mapping_depth(parts)
    if depth is not None and len(parts) > depth:
        parts = [*parts[:depth], ".".join(parts[depth:])]
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """``["a.b=1", "c=x"]`` -> ``[("a.b", 1), ("c", "x")]`` with YAML-typed values."""
    parsed = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError):  # e.g. 2024-13-01 looks like a date but is none
            value = raw
        parsed.append((key.strip(), value))
    return parsed


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file and apply ``key=value`` overrides (dotted keys)."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    for key, value in parse_overrides(overrides or []):
        _set_dotted(data, key, value)
    return _build(Config, data, "")
