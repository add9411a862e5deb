"""Deep training stage: interactions_split -> one checkpoint per model in ``deep.models``.

1. Validation: a seeded per-user ``deep.validation_ratio`` share of the train pairs (seed = split
   seed + 1, the carve of train-als; the split's own validation pairs when it has any). The
   test split is never seen. The models are trained on the rest (no refit after early stopping).
2. Examples: those pairs with ``deep.negatives_ratio`` sampled negatives each
   (:func:`recspark.deep.examples.training_examples`), materialised once through Petastorm
   (cache under ``deep.petastorm_cache_dir``) and exported for the torch-only entry point
   (``deep.export_dir``, layout in :mod:`recspark.deep.export`).
3. Each model is trained by ``deep.num_processes`` TorchDistributor processes, one Petastorm
   shard each, early-stopped on full-catalogue ``ndcg@evaluation.k``. The two-tower model uses
   the ``item_embeddings`` table as item features when it exists.
4. MLflow: params, per-epoch ``<model>.<metric>`` (loss, samples/s, loader and step time,
   validation metrics) at step = epoch, the model via ``mlflow.pytorch`` (its URI in the param
   ``<model>.model_uri``). The checkpoint goes to
   ``<deep.model_dir>/<model>.pt`` for the rerank stage.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.deep.distributed import TrainJob, train_distributed, use_gpu_for
from recspark.deep.examples import item_feature_matrix, pairs_array, training_examples
from recspark.deep.export import export_training_data
from recspark.deep.models import MODEL_NAMES
from recspark.deep.training import TrainSettings, save_checkpoint
from recspark.io.delta import DeltaTables
from recspark.io.petastorm import delete_converter, make_converter
from recspark.stages.common import StageContext, require_known_names
from recspark.stages.train_als import tuning_frames
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)

ITEM_EMBEDDINGS_TABLE = "item_embeddings"


@dataclass
class DeepTrainingSummary:
    models: int
    examples: int
    validation_pairs: int
    item_feature_dim: int  # 0 without item embeddings


def checkpoint_path(config: Config, model_name: str) -> Path:
    """Where train-deep stores and rerank loads the checkpoint of ``model_name``."""
    return Path(config.deep.directory(config, "model_dir").removeprefix("file://")) / f"{model_name}.pt"


def validation_frames(split: DataFrame, config: Config) -> tuple[DataFrame, DataFrame]:
    """(fit rows, validation rows) of ``interactions_split``: the split's validation pairs when it
    has any, else a seeded per-user ``deep.validation_ratio`` share of its train pairs (split
    seed + 1). The deep models are trained on the fit rows and early-stopped on the validation
    rows; the rerank stage tunes the hybrid on the same validation rows."""
    return tuning_frames(split, config.deep.validation_ratio, config.featurize.split.seed + 1)


def train_settings(config: Config) -> TrainSettings:
    dc = config.deep
    return TrainSettings(
        epochs=dc.epochs, batch_size=dc.batch_size, learning_rate=dc.learning_rate, weight_decay=dc.weight_decay,
        patience=dc.patience, seed=dc.seed, device=dc.device, k=config.evaluation.k, cpu_threads=dc.cpu_threads,
    )


def run_train_deep(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> DeepTrainingSummary:
    dc = config.deep
    require_known_names(dc.models, tuple(MODEL_NAMES), "deep.models")
    settings = train_settings(config)
    use_gpu = use_gpu_for(dc.use_gpu)
    num_users = tables.read("user_index").agg(F.max("user_idx")).first()[0] + 1
    item_index = tables.read("item_index")
    num_items = item_index.agg(F.max("item_idx")).first()[0] + 1
    split = tables.read("interactions_split")
    train_pairs, validation = validation_frames(split, config)
    train_pairs = train_pairs.select("user_idx", "item_idx").localCheckpoint()
    validation = validation.select("user_idx", "item_idx").localCheckpoint()
    item_features = None
    if tables.exists(ITEM_EMBEDDINGS_TABLE):
        item_features = item_feature_matrix(tables.read(ITEM_EMBEDDINGS_TABLE), num_items)
    with ctx.measure("deep.examples"):
        examples = training_examples(
            train_pairs, item_index, dc.negatives_ratio, dc.seed, dc.negatives_popularity_alpha
        ).localCheckpoint()
        n_examples = examples.count()
        converter = make_converter(
            spark, examples, dc.directory(config, "petastorm_cache_dir"), min_row_groups=2 * dc.num_processes
        )
        val_pairs, seen_pairs = pairs_array(validation), pairs_array(train_pairs)
    with ctx.measure("deep.export"):
        export_training_data(
            dc.directory(config, "export_dir"), examples, validation, train_pairs, num_users, num_items, item_features
        )
    tracker.log_params({
        "deep.models": ",".join(dc.models), "deep.num_processes": dc.num_processes, "deep.local_mode": dc.local_mode,
        "deep.use_gpu": use_gpu, "deep.negatives_ratio": dc.negatives_ratio,
        "deep.negatives_popularity_alpha": dc.negatives_popularity_alpha, "deep.validation_ratio": dc.validation_ratio,
        "deep.examples": n_examples, "deep.item_feature_dim": 0 if item_features is None else item_features.shape[1],
        **{f"deep.{key}": value for key, value in dataclasses.asdict(settings).items()},
    })
    try:
        for name in dc.models:
            params = dict(dc.model_params.get(name, {}))
            model_settings = dataclasses.replace(settings, loss=dc.losses.get(name, "bce"))
            job = TrainJob(
                name, params, num_users, num_items, model_settings, converter, val_pairs, seen_pairs,
                item_features=item_features if name == "two_tower" else None,
            )
            with ctx.measure(f"deep.train.{name}"):
                result = train_distributed(job, dc.num_processes, dc.local_mode, use_gpu)
            for record in result.history:
                tracker.log_metrics(
                    {f"{name}.{key.replace('@', '_at_')}": value for key, value in record.items() if key != "epoch"},
                    step=record["epoch"],
                )
            tracker.log_params({f"{name}.{key}": value for key, value in result.model.init_args.items()}
                               | {f"{name}.loss_function": model_settings.loss})
            tracker.log_metrics({f"{name}.best_epoch": result.best_epoch,
                                 f"{name}.best_ndcg_at_{settings.k}": result.best_metric})
            path = checkpoint_path(config, name)
            save_checkpoint(result.model, path, best_epoch=result.best_epoch, metric=result.best_metric,
                            run_id=ctx.run_id)
            model_uri = tracker.log_pytorch_model(result.model, f"{name}_model")
            if model_uri:
                tracker.log_params({f"{name}.model_uri": model_uri})
            log.info("train-deep %s: best epoch %d, ndcg@%d %.4f -> %s", name, result.best_epoch, settings.k,
                     result.best_metric, path)
    finally:
        delete_converter(converter)
    return DeepTrainingSummary(
        len(dc.models), n_examples, len(val_pairs), 0 if item_features is None else item_features.shape[1]
    )
