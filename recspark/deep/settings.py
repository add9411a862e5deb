"""Settings of the deep recommenders, torch-free so that loading a config never imports torch.

:class:`TrainSettings` configures the optimisation loop (:mod:`recspark.deep.training`) and is
also the argument parser of the torch-only entry point (:mod:`recspark.deep.standalone`, through
:func:`add_settings_arguments`); :class:`DeepSettings` is the ``deep`` config section (train-deep,
rerank) and holds one :class:`TrainSettings` whose keys sit flat in the section
(``deep.epochs``, ``deep.mixed_precision``; ``deep.train.epochs`` works too).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from recspark.cutoff import DEFAULT_K

MODEL_NAMES = ("neumf", "two_tower")
# Constructor parameters of each model (besides num_users, num_items, item_features); a test
# checks them against the model classes' signatures.
MODEL_PARAMS = {"neumf": ("embedding_dim", "mlp_layers", "dropout"), "two_tower": ("embedding_dim", "hidden_dim")}
LOSSES = ("bce", "in_batch_softmax")
IN_BATCH_MODELS = ("two_tower",)  # models whose forward takes in_batch=True (separate towers)
USE_GPU = ("auto", "true", "false")

# Metadata of a field a config does not set directly: its value comes from the named key.
DERIVED = "derived"
# Metadata of a nested settings field whose keys may also be written flat in the parent section.
FLATTEN = "flatten"


@dataclass
class TrainSettings:
    """Optimisation settings.

    ``batch_size`` is for the batch producers (Petastorm reader, standalone loader); the loop
    itself takes whatever batches it is given. ``patience``: epochs without a better validation
    ``ndcg@k`` before stopping. ``device``: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``
    or ``"cuda:N"``. ``mixed_precision``: autocast on CUDA (bf16 when the GPU supports it, else
    fp16 with gradient scaling); CPU training is always fp32. ``cpu_threads``: torch intra-op
    threads when training on CPU (process-wide ``torch.set_num_threads``); None keeps torch's
    default (one per core) on one process and gives each process ``cores // LOCAL_WORLD_SIZE``
    under torch.distributed. Small models gain little from more threads, and oversubscribed
    cores make OpenMP spin: on the shared 2-core machine a NeuMF step took 4 ms with 1 thread
    and 140-200 ms with 2. ``k``: the validation cut-off; under a config it is ``evaluation.k``.
    ``loss``: ``"bce"`` (binary cross-entropy on the labelled pairs, i.e. with the sampled
    negatives) or ``"in_batch_softmax"`` (models whose ``forward`` takes ``in_batch=True``, i.e.
    the two-tower: softmax of each positive pair against the other positives' items in the
    batch, the same item elsewhere in the batch masked; rows labelled 0 are ignored); under a
    config it is the model's entry in ``deep.losses``. ``time_budget_s``: wall seconds one model's
    training may take (validation included); no epoch starts that would, at the mean epoch time
    so far, end past it (the first epoch always runs). None: no budget, only ``epochs`` and
    ``patience`` bound the training.
    """

    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 2
    seed: int = 42
    device: str = "auto"
    k: int = field(default=DEFAULT_K, metadata={DERIVED: "evaluation.k"})
    mixed_precision: bool = True
    cpu_threads: int | None = None
    loss: str = field(default="bce", metadata={DERIVED: "deep.losses"})
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s: must be > 0 or null, got {self.time_budget_s}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads: must be >= 1 or null, got {self.cpu_threads}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: must be one of {list(LOSSES)}, got {self.loss!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: must be >= 0, got {self.weight_decay}")
        if self.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", self.device):
            raise ValueError(f"device: must be auto, cpu, cuda or cuda:N, got {self.device!r}")


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainSettings))


@dataclass
class DeepSettings:
    """Deep recommenders (the ``deep`` config section: train-deep, rerank); see :mod:`recspark.deep`.

    Training examples: the train pairs of ``interactions_split`` minus a seeded per-user
    ``validation_ratio`` share (early stopping on full-catalogue ``ndcg@evaluation.k``), each
    with ``negatives_ratio`` sampled negatives (probability ~ popularity ** ``negatives_popularity_alpha``;
    0 is uniform). Directories default to ``<warehouse>/_petastorm``, ``_deep_export``, ``_deep_models``.
    The fields of ``train`` also read as attributes of this object (``deep.epochs``).
    """

    # empty by default: NeuMF and the two-tower trail ALS on MovieLens (BENCHMARKS.md); train-deep
    # then returns at once and rerank blends the retrieval sources only
    models: list[str] = field(default_factory=list)
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # model name -> constructor kwargs
    losses: dict[str, str] = field(default_factory=dict)  # model name -> bce (default) | in_batch_softmax
    # epochs, batch_size, learning_rate, weight_decay, patience, seed, device, mixed_precision,
    # cpu_threads; written flat in the section (k is evaluation.k, loss comes from losses)
    train: TrainSettings = field(default_factory=TrainSettings, metadata={FLATTEN: True})
    validation_ratio: float = 0.1
    negatives_ratio: int = 4
    negatives_popularity_alpha: float = 0.0
    num_processes: int = 2  # TorchDistributor processes
    local_mode: bool = True  # processes on the driver (true) or as a barrier stage on executors
    use_gpu: str = "auto"  # auto | true | false
    petastorm_cache_dir: str | None = None
    export_dir: str | None = None  # Parquet shards for ``python -m recspark.deep.standalone``
    model_dir: str | None = None  # checkpoints the rerank stage loads
    # Start each model from the previous night's checkpoint (tensors that still fit; new users'
    # and items' rows start fresh); false trains from scratch every night.
    warm_start: bool = True
    scoring_batch_size: int = 65536
    rerank_sources: list[str] = field(default_factory=lambda: ["als", "item_item", "content", "popularity"])
    hybrid_sources: list[str] = field(
        default_factory=lambda: ["als", "item_item", "content", "popularity", "neumf", "two_tower"]
    )
    # per-source weight values; the combination best on the validation rows is kept (see rerank)
    hybrid_weight_grid: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])

    def __post_init__(self) -> None:
        _require_models("models", self.models)
        _require_models("losses", self.losses)
        for model, loss in self.losses.items():
            if loss not in LOSSES:
                raise ValueError(f"losses: unknown loss {loss!r} for model {model!r}; known: {list(LOSSES)}")
            if loss == "in_batch_softmax" and model not in IN_BATCH_MODELS:
                raise ValueError(
                    f"losses: in_batch_softmax needs a model with separate towers {list(IN_BATCH_MODELS)}, "
                    f"not {model!r}"
                )
        _require_models("model_params", self.model_params)
        for model, params in self.model_params.items():
            unknown = sorted(set(params) - set(MODEL_PARAMS[model]))
            if unknown:
                known = list(MODEL_PARAMS[model])
                raise ValueError(f"model_params: unknown parameter(s) {unknown} for model {model!r}; known: {known}")
        if not 0.0 < self.validation_ratio < 1.0:
            raise ValueError(f"validation_ratio: must be in (0, 1), got {self.validation_ratio}")
        for name in ("negatives_ratio", "num_processes", "scoring_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.negatives_popularity_alpha < 0:
            raise ValueError(f"negatives_popularity_alpha: must be >= 0, got {self.negatives_popularity_alpha}")
        if self.use_gpu not in USE_GPU:
            raise ValueError(f"use_gpu: must be one of {list(USE_GPU)}, got {self.use_gpu!r}")
        if not self.hybrid_weight_grid or min(self.hybrid_weight_grid) < 0:
            raise ValueError(f"hybrid_weight_grid: needs values >= 0, got {self.hybrid_weight_grid}")

    def __getattr__(self, name: str) -> Any:
        """``deep.epochs`` etc.: the fields of ``train`` read as attributes of the section."""
        train = self.__dict__.get("train")
        if train is not None and name in TRAIN_FIELDS:
            return getattr(train, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def settings_for(self, model: str) -> TrainSettings:
        """The training settings of ``model``: ``train`` with the model's loss from ``losses``."""
        return dataclasses.replace(self.train, loss=self.losses.get(model, "bce"))


def _require_models(key: str, names: typing.Iterable[str]) -> None:
    unknown = sorted(set(names) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"{key}: unknown model(s) {unknown}; known: {list(MODEL_NAMES)}")


def add_settings_arguments(parser: argparse.ArgumentParser, settings_class: type = TrainSettings) -> None:
    """One ``--field-name`` option per field of ``settings_class`` with its type and default
    (``--mixed-precision`` / ``--no-mixed-precision`` for booleans), so the torch-only entry
    point and the config share one declaration."""
    hints = typing.get_type_hints(settings_class)
    for f in dataclasses.fields(settings_class):
        option = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=f.default)
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        choices = LOSSES if f.name == "loss" else None
        parser.add_argument(option, type=base, default=f.default, choices=choices, help=f"default: {f.default}")


def settings_from_args(args: argparse.Namespace, settings_class: type = TrainSettings) -> Any:
    """``settings_class`` built from the options :func:`add_settings_arguments` added."""
    return settings_class(**{f.name: getattr(args, f.name) for f in dataclasses.fields(settings_class)})
