"""Rerank stage: deep re-ranking and the hybrid blend -> more ``candidates`` partitions.

* One source per trained deep model (``neumf``, ``two_tower``: every model of ``deep.models``
  with a checkpoint from train-deep): the union of the ``deep.rerank_sources`` candidates of each
  user (those present), scored in Spark by the model and cut at ``candidates.n``.
* ``hybrid``: the ``deep.hybrid_sources`` present (after the deep ones are added), min-max
  normalised per user, blended with weights from ``deep.hybrid_weight_grid`` tuned by user-fold
  cross-fitting against the test pairs (see :mod:`recspark.deep.scoring`: a user's weights are
  always chosen on other users), cut at ``candidates.n``. The chosen weights per fold go to MLflow.

Each source replaces its own ``source`` partition of ``candidates`` (same columns as the
candidates stage), so the evaluate stage compares them with the other sources.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.deep.scoring import blend, deep_rerank, normalised_scores, tune_blend_weights
from recspark.deep.training import load_checkpoint
from recspark.delta import DeltaTables
from recspark.stages.common import StageContext
from recspark.stages.train_deep import checkpoint_path
from recspark.tracking import StageRun

log = logging.getLogger(__name__)

HYBRID_SOURCE = "hybrid"


@dataclass
class RerankSummary:
    deep_sources: int
    hybrid_sources: int
    hybrid_rows: int


def candidate_rows(ranked: DataFrame, source: str, run_date) -> DataFrame:
    """``ranked`` (user_idx, item_idx, score, rank) in the columns of the candidates table."""
    return ranked.select(
        F.col("user_idx").cast("int"), F.col("item_idx").cast("int"), F.lit(source).alias("source"),
        F.col("score").cast("double"), F.col("rank").cast("int"), F.lit(None).cast("int").alias("because_item_idx"),
        F.lit(run_date).alias("run_date"),
    )


def run_rerank(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> RerankSummary:
    dc, n, k = config.deep, config.candidates.n, config.evaluation.k
    present = {r["source"] for r in tables.read("candidates").select("source").distinct().collect()}
    retrieval = [s for s in dc.rerank_sources if s in present]
    if not retrieval:
        raise ValueError(f"no candidates of deep.rerank_sources {dc.rerank_sources} to re-rank; present: {sorted(present)}")
    deep_sources = [name for name in dc.models if checkpoint_path(config, name).exists()]
    missing = sorted(set(dc.models) - set(deep_sources))
    if missing:
        log.warning("no checkpoint for deep model(s) %s: run train-deep first; skipping them", missing)

    def write(part: DataFrame, source: str) -> None:
        tables.write(part, "candidates", partition_by=["source"], replace_partition={"source": source},
                     metadata=ctx.commit_metadata("rerank"))

    for name in deep_sources:
        model = load_checkpoint(checkpoint_path(config, name))
        with ctx.measure(f"rerank.{name}"):
            ranked = deep_rerank(tables.read("candidates"), retrieval, model, n, dc.scoring_batch_size, dc.device)
            write(candidate_rows(ranked, name, ctx.run_date).localCheckpoint(), name)
    present |= set(deep_sources)
    hybrid_sources = [s for s in dc.hybrid_sources if s in present]
    tracker.log_params({"rerank.retrieval_sources": ",".join(retrieval), "rerank.deep_sources": ",".join(deep_sources),
                        "hybrid.sources": ",".join(hybrid_sources), "hybrid.folds": dc.hybrid_folds,
                        "hybrid.weight_grid": dc.hybrid_weight_grid})
    with ctx.measure("rerank.hybrid"):
        normalised = normalised_scores(tables.read("candidates"), hybrid_sources).localCheckpoint()
        truth = tables.read("interactions_split").where(F.col("split") == "test").select("user_idx", "item_idx")
        tuning = tune_blend_weights(normalised, truth, hybrid_sources, dc.hybrid_weight_grid, k, dc.hybrid_folds, dc.seed)
        hybrid = candidate_rows(blend(normalised, tuning, dc.hybrid_folds, dc.seed, n), HYBRID_SOURCE, ctx.run_date)
        hybrid = hybrid.localCheckpoint()
        write(hybrid, HYBRID_SOURCE)
    tracker.log_dict({"folds": {str(f): {"weights": w, f"other_folds_ndcg@{k}": tuning.validation_ndcg[f]}
                                for f, w in tuning.weights.items()}}, "hybrid_weights.json")
    for fold, weights in tuning.weights.items():
        tracker.log_metrics({f"hybrid.fold{fold}.weight.{s}": w for s, w in weights.items()}
                            | {f"hybrid.fold{fold}.other_folds_ndcg_at_{k}": tuning.validation_ndcg[fold]})
    summary = RerankSummary(len(deep_sources), len(hybrid_sources), hybrid.count())
    log.info("rerank %s: %s, hybrid weights %s", ctx.run_date, summary, tuning.weights)
    return summary
