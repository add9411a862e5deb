"""Rerank stage: deep re-ranking and the hybrid blend -> more ``candidates`` partitions.

* One source per trained deep model (every model of ``deep.models`` with a checkpoint from
  train-deep): the union of the ``deep.rerank_sources`` candidates of each user (those present),
  scored in Spark by the model and cut at ``candidates.n``.
* ``hybrid``: the ``deep.hybrid_sources`` present (after the deep ones are added), min-max
  normalised per user, blended with the weights of ``deep.hybrid_weight_grid`` chosen on
  **validation**, cut at ``candidates.n``. The test split is never used for tuning:

  1. validation = the rows train-deep early-stopped on (:func:`recspark.featurize.splits.tuning_frames`
     with ``deep.validation_ratio``); fit rows = the other train rows;
  2. validation-time candidates: every retrieval source the hybrid needs is refit on the fit
     rows alone (:meth:`recspark.sources.CandidateSource.refit`) and recommends with the fit
     rows as seen history, so validation items can be proposed; the deep models re-rank them;
  3. the grid point with the best mean NDCG@``evaluation.k`` on the validation pairs is applied
     to the final candidates (the weights, their validation NDCG and the whole grid go to
     MLflow, ``hybrid_weights.json``).

Each source replaces its own ``source`` partition of ``candidates``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import CANDIDATES, INTERACTIONS_SPLIT, USER_INDEX
from recspark.deep.models import MODEL_NAMES
from recspark.deep.scoring import blend, deep_rerank, normalised_scores, tune_blend_weights
from recspark.deep.training import checkpoint_path, load_checkpoint
from recspark.featurize.splits import split_protocol, tuning_frames
from recspark.pipeline.stage import StageContext
from recspark.sources import SourceInputs, as_candidates, get_source, require_known_sources, source_names

log = logging.getLogger(__name__)

HYBRID_SOURCE = "hybrid"


@dataclass
class RerankSummary:
    deep_sources: int
    hybrid_sources: int
    hybrid_rows: int
    validation_users: int
    hybrid_validation_ndcg: float


def validation_candidates(ctx: StageContext, fit_rows: DataFrame, sources: list[str]) -> DataFrame:
    """Candidates (candidates-table columns) of the retrieval ``sources`` refit on ``fit_rows``,
    with ``fit_rows`` as the seen history; ``candidates.n`` per user and source."""
    n, seen = ctx.config.candidates.n, fit_rows.select("user_idx", "item_idx")
    users, inputs = ctx.tables.read(USER_INDEX).select("user_idx"), SourceInputs(ctx.config, ctx.tables)
    parts = [
        as_candidates(get_source(name).refit(fit_rows, inputs).recommend(users, n, seen), name).localCheckpoint()
        for name in sources
    ]
    return reduce(DataFrame.unionByName, parts)


def run_rerank(ctx: StageContext) -> RerankSummary:
    tables, tracker, config = ctx.tables, ctx.tracker, ctx.config
    dc, n, k = config.deep, config.candidates.n, config.evaluation.k
    require_known_sources(dc.rerank_sources, "deep.rerank_sources")
    require_known_sources(dc.hybrid_sources, "deep.hybrid_sources", extra=MODEL_NAMES)
    present = {r["source"] for r in tables.read(CANDIDATES).select("source").distinct().collect()}
    retrieval = [s for s in dc.rerank_sources if s in present]
    if not retrieval:
        raise ValueError(f"no candidates of deep.rerank_sources {dc.rerank_sources} to re-rank; present: {sorted(present)}")
    model_dir = config.deep_directory("model_dir")
    deep_sources = [name for name in dc.models if checkpoint_path(model_dir, name).exists()]
    missing = sorted(set(dc.models) - set(deep_sources))
    if missing:
        log.warning("no checkpoint for deep model(s) %s: run train-deep first; skipping them", missing)
    hybrid_sources = [s for s in dc.hybrid_sources if s in present | set(deep_sources)]
    if not hybrid_sources:
        raise ValueError(f"none of deep.hybrid_sources {dc.hybrid_sources} is present; present: {sorted(present)}")
    tracker.log_params({"rerank.retrieval_sources": ",".join(retrieval), "rerank.deep_sources": ",".join(deep_sources),
                        "hybrid.sources": ",".join(hybrid_sources)})
    ctx.spark.sparkContext.setCheckpointDir(config.checkpoint_dir())
    split = tables.read(INTERACTIONS_SPLIT)
    _, split_seed = split_protocol(tables.latest_metadata(INTERACTIONS_SPLIT))
    fit_rows, validation = tuning_frames(split, dc.validation_ratio, split_seed)
    fit_rows = fit_rows.cache()
    refit = [s for s in source_names() if s in hybrid_sources or (deep_sources and s in retrieval)]
    with ctx.measure("rerank.validation_candidates"):
        retrieval_validation = validation_candidates(ctx, fit_rows, refit)
    validation_parts = [retrieval_validation]

    def write(part: DataFrame, source: str) -> None:
        tables.write(part, CANDIDATES, replace_partition={"source": source}, metadata=ctx.commit_metadata())

    for name in deep_sources:
        model = load_checkpoint(checkpoint_path(model_dir, name))
        with ctx.measure(f"rerank.{name}"):
            ranked = deep_rerank(tables.read(CANDIDATES), retrieval, model, n, dc.scoring_batch_size, dc.device)
            write(as_candidates(ranked, name).withColumn("run_date", F.lit(ctx.run_date)).localCheckpoint(), name)
            validation_ranked = deep_rerank(retrieval_validation, retrieval, model, n, dc.scoring_batch_size, dc.device)
            validation_parts.append(as_candidates(validation_ranked, name).localCheckpoint())
    fit_rows.unpersist()
    with ctx.measure("rerank.hybrid"):
        truth = validation.select("user_idx", "item_idx")
        validation_scores = normalised_scores(reduce(DataFrame.unionByName, validation_parts), hybrid_sources)
        tuning = tune_blend_weights(validation_scores, truth, hybrid_sources, dc.hybrid_weight_grid, k)
        normalised = normalised_scores(tables.read(CANDIDATES), hybrid_sources)
        hybrid = as_candidates(blend(normalised, tuning.weights, n), HYBRID_SOURCE)
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
