"""Train-deep stage: interactions_split -> one checkpoint per model in ``deep.models``.

1. Validation: :func:`recspark.featurize.splits.tuning_frames` with ``deep.validation_ratio`` and
   the split seed of ``interactions_split``'s commit (the split's own validation pairs when it
   has any). The test split is never seen. The models are trained on the rest (no refit after
   early stopping); rerank tunes the hybrid blend on the same validation rows.
2. Examples: those pairs with ``deep.negatives_ratio`` sampled negatives each
   (:func:`recspark.deep.examples.training_examples`), materialised once through Petastorm
   (cache under ``deep.petastorm_cache_dir``) and exported for the torch-only entry point
   (``deep.export_dir``, layout in :mod:`recspark.deep.export`).
3. Each model is trained by ``deep.num_processes`` TorchDistributor processes, one Petastorm
   shard each, early-stopped on full-catalogue ``ndcg@evaluation.k``. The two-tower model uses
   the ``item_embeddings`` table as item features when it exists.
4. MLflow: per-epoch ``<model>.<metric>`` (loss, samples/s, loader and step time, validation
   metrics) at step = epoch, the model via ``mlflow.pytorch`` (its URI in the param
   ``<model>.model_uri``). The checkpoint goes to ``<deep.model_dir>/<model>.pt``
   (:func:`recspark.deep.training.checkpoint_path`).

``deep.models`` is empty by default (NeuMF and the two-tower trail ALS on MovieLens; see
BENCHMARKS.md, "Deep models in the pipeline"): the stage then returns at once, touching no table.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import functions as F

from recspark.catalog import INTERACTIONS_SPLIT, ITEM_EMBEDDINGS, ITEM_INDEX, USER_INDEX
from recspark.deep.distributed import TrainJob, train_distributed, use_gpu_for
from recspark.deep.examples import item_feature_matrix, pairs_array, training_examples
from recspark.deep.export import export_training_data
from recspark.deep.training import checkpoint_path, previous_night_state, save_checkpoint
from recspark.featurize.splits import split_carve, tuning_frames
from recspark.io.petastorm import delete_converter, make_converter
from recspark.pipeline.stage import StageContext

log = logging.getLogger(__name__)


@dataclass
class DeepTrainingSummary:
    models: int
    examples: int
    validation_pairs: int
    item_feature_dim: int  # 0 without item embeddings


def run_train_deep(ctx: StageContext) -> DeepTrainingSummary:
    tables, tracker, config = ctx.tables, ctx.tracker, ctx.config
    dc = config.deep
    if not dc.models:
        log.info("train-deep %s: deep.models is empty (the default), nothing to train", ctx.run_date)
        return DeepTrainingSummary(models=0, examples=0, validation_pairs=0, item_feature_dim=0)
    settings = dc.train
    use_gpu = use_gpu_for(dc.use_gpu)
    num_users = tables.read(USER_INDEX).agg(F.max("user_idx")).first()[0] + 1
    item_index = tables.read(ITEM_INDEX)
    num_items = item_index.agg(F.max("item_idx")).first()[0] + 1
    split = tables.read(INTERACTIONS_SPLIT)
    split_seed, stratify_by = split_carve(tables.latest_metadata(INTERACTIONS_SPLIT))
    train_pairs, validation = tuning_frames(split, dc.validation_ratio, split_seed, stratify_by)
    train_pairs = train_pairs.select("user_idx", "item_idx").localCheckpoint()
    validation = validation.select("user_idx", "item_idx").localCheckpoint()
    embeddings = tables.read_if_exists(ITEM_EMBEDDINGS)
    if embeddings is not None and embeddings.isEmpty():
        embeddings = None
    item_features = None if embeddings is None else item_feature_matrix(embeddings, num_items)
    with ctx.measure("deep.examples"):
        examples = training_examples(
            train_pairs, item_index, dc.negatives_ratio, dc.seed, dc.negatives_popularity_alpha
        ).localCheckpoint()
        n_examples = examples.count()
        converter = make_converter(
            ctx.spark, examples, config.deep_directory("petastorm_cache_dir"), min_row_groups=2 * dc.num_processes
        )
        val_pairs, seen_pairs = pairs_array(validation), pairs_array(train_pairs)
    with ctx.measure("deep.export"):
        export_training_data(
            config.deep_directory("export_dir"), examples, validation, train_pairs, num_users, num_items, item_features
        )
    tracker.log_params({"deep.use_gpu_resolved": use_gpu, "deep.examples": n_examples,
                        "deep.item_feature_dim": 0 if item_features is None else item_features.shape[1]})
    model_dir = config.deep_directory("model_dir")
    try:
        for name in dc.models:
            model_settings = dc.settings_for(name)
            path = checkpoint_path(model_dir, name)
            initial = previous_night_state(path, name, ctx.run_date.isoformat()) if dc.warm_start else None
            tracker.log_params({f"{name}.warm_start": initial is not None})
            job = TrainJob(
                name, dict(dc.model_params.get(name, {})), num_users, num_items, model_settings, converter, val_pairs,
                seen_pairs, item_features=item_features if name == "two_tower" else None, initial_state=initial,
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
            save_checkpoint(result.model, path, best_epoch=result.best_epoch, metric=result.best_metric,
                            run_id=ctx.run_id, run_date=ctx.run_date.isoformat())
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
