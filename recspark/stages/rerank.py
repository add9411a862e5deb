"""Rerank stage: deep re-ranking and the hybrid blend -> more ``candidates`` partitions.

* One source per trained deep model (``neumf``, ``two_tower``: every model of ``deep.models``
  with a checkpoint from train-deep): the union of the ``deep.rerank_sources`` candidates of each
  user (those present), scored in Spark by the model and cut at ``candidates.n``.
* ``hybrid``: the ``deep.hybrid_sources`` present (after the deep ones are added), min-max
  normalised per user, blended with the weights of ``deep.hybrid_weight_grid`` chosen on
  **validation**, cut at ``candidates.n``. The test split is never used for tuning:

  1. validation = the rows train-deep early-stopped on (:func:`recspark.stages.train_deep.validation_frames`:
     the split's validation pairs, or a seeded ``deep.validation_ratio`` share of each user's
     train pairs); fit rows = the other train rows, the ones the deep models were trained on;
  2. validation-time candidates: every retrieval source the hybrid needs is refit on the fit
     rows alone (ALS with the params of the current ``user_factors``, co-occurrence similarity
     with ``similarity.*``, popularity, content) and recommends with the fit rows as seen
     history, so validation items can be proposed; the deep models re-rank those candidates;
  3. the grid point with the best mean NDCG@``evaluation.k`` on the validation pairs is applied
     to the final candidates (the chosen weights, their validation NDCG and the whole grid go to
     MLflow, ``hybrid_weights.json``).

Each source replaces its own ``source`` partition of ``candidates`` (same columns as the
candidates stage), so the evaluate stage compares them with the other sources.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.deep.models import MODEL_NAMES
from recspark.deep.scoring import blend, deep_rerank, normalised_scores, tune_blend_weights
from recspark.deep.training import load_checkpoint
from recspark.io.delta import DeltaTables
from recspark.stages.candidates import (
    SOURCES,
    als_candidates,
    candidate_columns,
    content_candidates,
    item_item_candidates,
    popularity_candidates,
    require_item_embeddings,
)
from recspark.stages.common import StageContext, require_known_names
from recspark.stages.similarity import similarity_estimator
from recspark.stages.train_als import als_estimator, factor_params
from recspark.stages.train_deep import checkpoint_path, validation_frames
from recspark.io.tracking import StageRun

log = logging.getLogger(__name__)

HYBRID_SOURCE = "hybrid"


@dataclass
class RerankSummary:
    deep_sources: int
    hybrid_sources: int
    hybrid_rows: int
    validation_users: int
    hybrid_validation_ndcg: float


def ranked_candidates(ranked: DataFrame, source: str) -> DataFrame:
    """``ranked`` (user_idx, item_idx, score, rank) in the columns of the candidates table, less
    run_date."""
    return candidate_columns(ranked.withColumn("because_item_idx", F.lit(None)), source)


def validation_candidates(config: Config, tables: DeltaTables, fit_rows: DataFrame, sources: list[str]) -> DataFrame:
    """Candidates (candidates-table columns less run_date) of the retrieval ``sources`` from
    models refit on ``fit_rows`` (interactions_split rows), with ``fit_rows`` as the seen
    history; ``candidates.n`` per user and source."""
    n, history = config.candidates.n, fit_rows.select("user_idx", "item_idx", "event_ts")

    def als() -> DataFrame:
        model = als_estimator(config.als).copy(**factor_params(tables)).fit(fit_rows)
        return als_candidates(model.user_factors, model.item_factors, history, n)

    def item_item() -> DataFrame:
        similarities = similarity_estimator(config.similarity).fit(fit_rows).similarities
        return item_item_candidates(similarities, history, n)

    builders = {
        "als": als,
        "item_item": item_item,
        "popularity": lambda: popularity_candidates(history, n, config.candidates.popularity_window_days),
        "content": lambda: content_candidates(
            require_item_embeddings(tables), tables.read("user_index"), history, n, config.content
        ),
    }
    parts = [candidate_columns(builders[source](), source).localCheckpoint() for source in sources]
    return reduce(DataFrame.unionByName, parts)


def run_rerank(
    spark: SparkSession, config: Config, tables: DeltaTables, ctx: StageContext, tracker: StageRun
) -> RerankSummary:
    dc, n, k = config.deep, config.candidates.n, config.evaluation.k
    require_known_names(dc.rerank_sources, SOURCES, "deep.rerank_sources")
    require_known_names(dc.hybrid_sources, SOURCES + MODEL_NAMES, "deep.hybrid_sources")
    present = {r["source"] for r in tables.read("candidates").select("source").distinct().collect()}
    retrieval = [s for s in dc.rerank_sources if s in present]
    if not retrieval:
        raise ValueError(f"no candidates of deep.rerank_sources {dc.rerank_sources} to re-rank; present: {sorted(present)}")
    deep_sources = [name for name in dc.models if checkpoint_path(config, name).exists()]
    missing = sorted(set(dc.models) - set(deep_sources))
    if missing:
        log.warning("no checkpoint for deep model(s) %s: run train-deep first; skipping them", missing)
    hybrid_sources = [s for s in dc.hybrid_sources if s in present | set(deep_sources)]
    if not hybrid_sources:
        raise ValueError(f"none of deep.hybrid_sources {dc.hybrid_sources} is present; present: {sorted(present)}")
    tracker.log_params({"rerank.retrieval_sources": ",".join(retrieval), "rerank.deep_sources": ",".join(deep_sources),
                        "hybrid.sources": ",".join(hybrid_sources), "hybrid.weight_grid": dc.hybrid_weight_grid})
    spark.sparkContext.setCheckpointDir(config.checkpoint_dir())
    fit_rows, validation = validation_frames(tables.read("interactions_split"), config)
    fit_rows = fit_rows.cache()
    refit = [s for s in SOURCES if s in hybrid_sources or (deep_sources and s in retrieval)]
    with ctx.measure("rerank.validation_candidates"):
        retrieval_validation = validation_candidates(config, tables, fit_rows, refit)
    validation_parts = [retrieval_validation]

    def write(part: DataFrame, source: str) -> None:
        tables.write(part, "candidates", partition_by=["source"], replace_partition={"source": source},
                     metadata=ctx.commit_metadata("rerank"))

    for name in deep_sources:
        model = load_checkpoint(checkpoint_path(config, name))
        with ctx.measure(f"rerank.{name}"):
            ranked = deep_rerank(tables.read("candidates"), retrieval, model, n, dc.scoring_batch_size, dc.device)
            write(ranked_candidates(ranked, name).withColumn("run_date", F.lit(ctx.run_date)).localCheckpoint(), name)
            validation_ranked = deep_rerank(retrieval_validation, retrieval, model, n, dc.scoring_batch_size, dc.device)
            validation_parts.append(ranked_candidates(validation_ranked, name).localCheckpoint())
    fit_rows.unpersist()
    with ctx.measure("rerank.hybrid"):
        truth = validation.select("user_idx", "item_idx")
        validation_scores = normalised_scores(reduce(DataFrame.unionByName, validation_parts), hybrid_sources)
        tuning = tune_blend_weights(validation_scores, truth, hybrid_sources, dc.hybrid_weight_grid, k)
        normalised = normalised_scores(tables.read("candidates"), hybrid_sources)
        hybrid = ranked_candidates(blend(normalised, tuning.weights, n), HYBRID_SOURCE)
        hybrid = hybrid.withColumn("run_date", F.lit(ctx.run_date)).localCheckpoint()
        write(hybrid, HYBRID_SOURCE)
    tracker.log_dict({"weights": tuning.weights, f"validation_ndcg@{k}": tuning.validation_ndcg,
                      "grid": [{"weights": w, f"validation_ndcg@{k}": v} for w, v in tuning.grid_ndcg]},
                     "hybrid_weights.json")
    tracker.log_metrics({f"hybrid.weight.{s}": w for s, w in tuning.weights.items()}
                        | {f"hybrid.validation_ndcg_at_{k}": tuning.validation_ndcg})
    summary = RerankSummary(len(deep_sources), len(hybrid_sources), hybrid.count(),
                            truth.select("user_idx").distinct().count(), tuning.validation_ndcg)
    log.info("rerank %s: %s, hybrid weights %s", ctx.run_date, summary, tuning.weights)
    return summary
