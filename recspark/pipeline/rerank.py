"""Rerank stage: deep re-ranking, the grid hybrid and the learned ranker -> more ``candidates``
partitions, and the validated champion that publish serves.

* One source per trained deep model (every model of ``deep.models`` with a checkpoint from
  train-deep): the union of the ``deep.rerank_sources`` candidates of each user (those present),
  scored in Spark by the model and cut at ``candidates.n``.
* ``ranker`` (the default blend; ``ranker.enabled``): LightGBM lambdarank
  (:mod:`recspark.ranker.lambdarank`) over the features of the ``ranker.sources`` candidates
  (default: every source present, deep ones included; :mod:`recspark.ranker.features`: each
  source's score and rank, item popularity and recency, user activity, content similarity to the
  user's profile when ``item_embeddings`` exists). Trained on the validation-time candidates
  labelled by the validation pairs; it then scores tonight's candidates and keeps ``candidates.n``
  per user. Feature importances (``ranker_feature_importances.json``) and the model
  (``mlflow.lightgbm``, registered as ``ranker.model_name`` with ``ranker.champion_alias`` moved
  on improvement, like ALS) go to MLflow; the booster alone lacks the base prior the ranker adds
  (``ranker.base_feature``, ``ranker.uses_trees``), so ``ranker_model.json``
  (:meth:`recspark.ranker.lambdarank.RankerModel.to_string`) is the complete model.
* ``hybrid`` (the baseline blend): the ``deep.hybrid_sources`` present, min-max normalised per
  user, blended with the weights of ``deep.hybrid_weight_grid`` chosen on validation
  (``hybrid_weights.json``).

Tonight's blends: the newest ``blends`` row of ``tuned_params`` (the weekly ``tune``,
:mod:`recspark.ranker.tuning`) when ``ranker.use_tuned`` is on and it was fitted for tonight's
sources and settings: its ranker model and hybrid weights score tonight's candidates and its
champion is served; no source is refit. Otherwise (a fresh warehouse, or the sources changed) the
stage fits them itself exactly as tune does (:func:`recspark.ranker.tuning.fit_blends`: sources
refit on the validation carve, ranker and hybrid fitted there, champion chosen on the ranker's
held-out users; the test split is never used). MLflow param ``blends.from`` says which; the
champion (``champion.json``, params/metrics ``champion``) is recorded in the commit metadata of
this stage's writes as ``recspark.champion``, ``recspark.champion_validation_ndcg``,
``recspark.champion_model_version`` and ``recspark.champion_mlflow_run_id`` for publish, with
``recspark.blends_from`` (the tune run, or "in-stage fit") so publish's gate can tell a retune.

Each source replaces its own ``source`` partition of ``candidates``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import CANDIDATES, INTERACTIONS_SPLIT, ITEM_EMBEDDINGS, TUNED_PARAMS
from recspark.deep.scoring import deep_rerank
from recspark.deep.training import checkpoint_path, load_checkpoint
from recspark.io.session import materialize_on_disk
from recspark.pipeline.stage import StageContext
from recspark.ranker.tuning import (
    BLENDS,
    BLENDS_ALGORITHM,
    HYBRID_SOURCE,
    RANKER_SOURCE,
    BlendChoice,
    BlendPlan,
    apply_blends,
    fit_blends_on_tables,
    plan_blends,
)
from recspark.sources import as_candidates
from recspark.tuned_params import newest_tuned_row

log = logging.getLogger(__name__)

IN_STAGE_FIT = "in-stage fit"


@dataclass
class RerankSummary:
    deep_sources: int
    hybrid_sources: int
    ranker_sources: int
    validation_users: int
    selection_users: int
    hybrid_validation_ndcg: float | None
    ranker_validation_ndcg: float | None
    champion_validation_ndcg: float
    champion: str
    tuned_blends_used: int  # 1: the weekly tune's blends applied; 0: fitted in this stage


def tuned_blends(ctx: StageContext, plan: BlendPlan) -> tuple[BlendChoice | None, str]:
    """The newest ``blends`` row of tuned_params when it fits tonight's ``plan`` (else None), and
    where tonight's blends come from / why they are fitted here."""
    if not ctx.config.ranker.use_tuned:
        return None, "ranker.use_tuned is off"
    row = newest_tuned_row(ctx.tables.read_if_exists(TUNED_PARAMS), BLENDS_ALGORITHM)
    if row is None:
        return None, "no tuned blends yet (the weekly tune records them)"
    choice = BlendChoice.from_json(row["params"])
    why = choice.mismatch(plan, ctx.config.evaluation.k, ctx.config.candidates.n)
    if why:
        return None, f"the tuned blends of {row['run_date']} do not fit tonight: {why}"
    return choice, f"tuned_params {row['run_date']} {row['run_id']}"


def run_rerank(ctx: StageContext) -> RerankSummary:
    tables, tracker, config = ctx.tables, ctx.tracker, ctx.config
    dc, n = config.deep, config.candidates.n
    plan = plan_blends(tables, config)
    tracker.log_params({"rerank.retrieval_sources": ",".join(plan.retrieval), "rerank.deep_sources": ",".join(plan.deep),
                        "hybrid.sources": ",".join(plan.hybrid), "ranker.blended_sources": ",".join(plan.ranker)})
    ctx.spark.sparkContext.setCheckpointDir(config.checkpoint_dir())
    choice, source = tuned_blends(ctx, plan)
    fitted_here = choice is None
    if fitted_here:
        log.info("rerank: fitting the blends on validation in this stage (%s)", source)
        fitted = fit_blends_on_tables(tables, config, plan, ctx.measure)
        fitted.log(tracker, config.ranker)
        choice, source = fitted.choice, f"{IN_STAGE_FIT}: {source}"
    else:
        log.info("rerank: the blends of %s (no refit); champion %s", source, choice.champion)
        choice.log(tracker)
    tracker.log_params({"blends.from": source})

    def write(part: DataFrame, name: str, metadata: dict[str, str]) -> None:
        rows = materialize_on_disk(part.withColumn("run_date", F.lit(ctx.run_date)))
        tables.write(rows, CANDIDATES, replace_partition={"source": name}, metadata=metadata)
        rows.unpersist()

    model_dir = config.deep_directory("model_dir")
    for name in plan.deep:
        model = load_checkpoint(checkpoint_path(model_dir, name))
        with ctx.measure(f"rerank.{name}"):
            ranked = deep_rerank(tables.read(CANDIDATES), plan.retrieval, model, n, dc.scoring_batch_size, dc.device)
            write(as_candidates(ranked, name), name, ctx.commit_metadata())
    # lineage publish records: the registered ranker, "<source>:unregistered" for the hybrid or a
    # source without a registry entry, "" for ALS (publish then uses the ALS factors' version)
    champion = choice.champion
    champion_version = "" if champion == "als" else f"{champion}:unregistered"
    if champion == RANKER_SOURCE and choice.ranker_model_version:
        champion_version = choice.ranker_model_version
    metadata = ctx.commit_metadata({"champion": champion, "champion_validation_ndcg": f"{choice.champion_ndcg:.6f}",
                                    "champion_model_version": champion_version,
                                    "champion_mlflow_run_id": tracker.mlflow_run_id or "",
                                    "blends_from": IN_STAGE_FIT if fitted_here else source})
    embeddings = tables.read(ITEM_EMBEDDINGS) if choice.content else None
    with ctx.measure("rerank.blends"):
        lists = apply_blends(choice, tables.read(CANDIDATES), tables.read(INTERACTIONS_SPLIT), embeddings, n)
        for name in BLENDS:
            if name in lists:
                write(lists[name], name, metadata)
    summary = RerankSummary(
        len(plan.deep), len(plan.hybrid), len(plan.ranker), choice.validation_users, choice.selection_users,
        choice.scores.get(HYBRID_SOURCE), choice.scores.get(RANKER_SOURCE), choice.champion_ndcg, champion,
        int(not fitted_here),
    )
    log.info("rerank %s: %s; validation NDCG@%d %s", ctx.run_date, summary, choice.k,
             ", ".join(f"{s} {v:.4f}" for s, v in sorted(choice.scores.items(), key=lambda kv: -kv[1])))
    return summary
