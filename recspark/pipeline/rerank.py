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

Validation protocol (the test split is never used for any choice):

1. :func:`recspark.ranker.blend.validation_inputs`: validation = the rows train-deep early-stopped
   on (``deep.validation_ratio`` carve of train), fit rows = the other train rows; it fails when
   a test pair is among them;
2. validation-time candidates: every retrieval source a blend needs is refit on the fit rows
   (:meth:`recspark.sources.CandidateSource.refit`) with the fit rows as seen history; the deep
   models re-rank them;
3. the ranker learns on those candidates, the hybrid's grid point is the best on them;
4. champion: every refit source, the hybrid and the ranker scored by mean NDCG@``evaluation.k``
   over the ranker's held-out users (the validation users it did not train on; all validation
   users without a ranker). The best is the champion, lists within ``ranker.champion_tolerance``
   of it counting as tied (ties go to the ranker, the hybrid, then the hybrid's sources). It
   (``champion.json``, params/metrics ``champion``) is recorded in the commit metadata of this
   stage's writes as ``recspark.champion``,
   ``recspark.champion_validation_ndcg``, ``recspark.champion_model_version`` and
   ``recspark.champion_mlflow_run_id`` for publish.

Each source replaces its own ``source`` partition of ``candidates``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import CANDIDATES, INTERACTIONS_SPLIT, ITEM_EMBEDDINGS, USER_INDEX
from recspark.deep.models import MODEL_NAMES
from recspark.deep.scoring import blend, deep_rerank, normalised_scores, tune_blend_weights
from recspark.deep.training import checkpoint_path, load_checkpoint
from recspark.featurize.splits import split_protocol
from recspark.pipeline.stage import StageContext
from recspark.ranker.blend import choose_champion, validation_inputs, validation_ndcg
from recspark.ranker.features import FeatureSet, ranker_features
from recspark.sources import SourceInputs, as_candidates, get_source, require_known_sources, source_names

log = logging.getLogger(__name__)

HYBRID_SOURCE = "hybrid"
RANKER_SOURCE = "ranker"
BLENDS = (RANKER_SOURCE, HYBRID_SOURCE)
HISTORY_COLUMNS = ["user_idx", "item_idx", "event_ts", "split"]


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


def _ranker_sources(ctx: StageContext, available: set[str]) -> list[str]:
    rc = ctx.config.ranker
    if not rc.enabled:
        return []
    wanted = rc.sources or [s for s in (*source_names(), *MODEL_NAMES) if s in available]
    absent = sorted(set(wanted) - available)
    if absent:
        log.warning("ranker.sources %s have no candidates tonight; the ranker blends the others", absent)
    return [s for s in wanted if s in available]


def run_rerank(ctx: StageContext) -> RerankSummary:
    tables, tracker, config = ctx.tables, ctx.tracker, ctx.config
    dc, rc, n, k = config.deep, config.ranker, config.candidates.n, config.evaluation.k
    require_known_sources(dc.rerank_sources, "deep.rerank_sources")
    require_known_sources(dc.hybrid_sources, "deep.hybrid_sources", extra=MODEL_NAMES)
    require_known_sources(rc.sources, "ranker.sources", extra=MODEL_NAMES)
    present = {r["source"] for r in tables.read(CANDIDATES).select("source").distinct().collect()} - set(BLENDS)
    retrieval = [s for s in dc.rerank_sources if s in present]
    model_dir = config.deep_directory("model_dir")
    deep_sources = [name for name in dc.models if checkpoint_path(model_dir, name).exists()]
    missing = sorted(set(dc.models) - set(deep_sources))
    if missing:
        log.warning("no checkpoint for deep model(s) %s: run train-deep first; skipping them", missing)
    if deep_sources and not retrieval:
        raise ValueError(f"no candidates of deep.rerank_sources {dc.rerank_sources} to re-rank; present: {sorted(present)}")
    available = present | set(deep_sources)
    hybrid_sources = [s for s in dc.hybrid_sources if s in available]
    ranker_sources = _ranker_sources(ctx, available)
    if not hybrid_sources and not ranker_sources:
        raise ValueError(f"nothing to blend: none of deep.hybrid_sources {dc.hybrid_sources} is present and the "
                         f"ranker has no sources; present: {sorted(present)}")
    tracker.log_params({"rerank.retrieval_sources": ",".join(retrieval), "rerank.deep_sources": ",".join(deep_sources),
                        "hybrid.sources": ",".join(hybrid_sources), "ranker.blended_sources": ",".join(ranker_sources)})
    ctx.spark.sparkContext.setCheckpointDir(config.checkpoint_dir())
    split = tables.read(INTERACTIONS_SPLIT)
    _, split_seed = split_protocol(tables.latest_metadata(INTERACTIONS_SPLIT))
    inputs = validation_inputs(split, dc.validation_ratio, split_seed)
    fit_rows = inputs.fit_rows.cache()
    needed = set(hybrid_sources) | set(ranker_sources) | (set(retrieval) if deep_sources else set())
    refit = [s for s in source_names() if s in needed]
    with ctx.measure("rerank.validation_candidates"):
        retrieval_validation = validation_candidates(ctx, fit_rows, refit)
    validation_parts = [retrieval_validation]
    outputs: dict[str, DataFrame] = {}

    def write(part: DataFrame, source: str, metadata: dict[str, str]) -> None:
        tables.write(part, CANDIDATES, replace_partition={"source": source}, metadata=metadata)

    for name in deep_sources:
        model = load_checkpoint(checkpoint_path(model_dir, name))
        with ctx.measure(f"rerank.{name}"):
            ranked = deep_rerank(tables.read(CANDIDATES), retrieval, model, n, dc.scoring_batch_size, dc.device)
            write(as_candidates(ranked, name).withColumn("run_date", F.lit(ctx.run_date)).localCheckpoint(), name,
                  ctx.commit_metadata())
            validation_ranked = deep_rerank(retrieval_validation, retrieval, model, n, dc.scoring_batch_size, dc.device)
            validation_parts.append(as_candidates(validation_ranked, name).localCheckpoint())
    validation_lists = reduce(DataFrame.unionByName, validation_parts)
    truth = inputs.validation
    hybrid_ndcg = ranker_ndcg = None
    if hybrid_sources:
        with ctx.measure("rerank.hybrid"):
            validation_scores = normalised_scores(validation_lists, hybrid_sources)
            tuning = tune_blend_weights(validation_scores, truth, hybrid_sources, dc.hybrid_weight_grid, k)
            normalised = normalised_scores(tables.read(CANDIDATES), hybrid_sources)
            outputs[HYBRID_SOURCE] = as_candidates(blend(normalised, tuning.weights, n), HYBRID_SOURCE).withColumn(
                "run_date", F.lit(ctx.run_date)).localCheckpoint()
            validation_parts.append(
                as_candidates(blend(validation_scores, tuning.weights, k), HYBRID_SOURCE).localCheckpoint())
        tracker.log_dict({"weights": tuning.weights, f"validation_ndcg@{k}": tuning.validation_ndcg,
                          "grid": [{"weights": w, f"validation_ndcg@{k}": v} for w, v in tuning.grid_ndcg]},
                         "hybrid_weights.json")
        tracker.log_metrics({f"hybrid.weight.{s}": w for s, w in tuning.weights.items()}
                            | {f"hybrid.validation_ndcg_at_{k}": tuning.validation_ndcg})
    selection_users = None
    ranker = None
    if ranker_sources:
        from recspark.ranker.lambdarank import LearnedRanker

        embeddings = tables.read_if_exists(ITEM_EMBEDDINGS)
        features = FeatureSet(tuple(ranker_sources), n, content=embeddings is not None)
        with ctx.measure("rerank.ranker_fit"):
            training = ranker_features(validation_lists, fit_rows.select(*HISTORY_COLUMNS), features,
                                       item_embeddings=embeddings).localCheckpoint()
            ranker = LearnedRanker(rc).fit(training, inputs.labels, features.columns)
        selection_users = ranker.eval_users
        with ctx.measure("rerank.ranker_score"):
            history = split.where(F.col("split") != "test").select(*HISTORY_COLUMNS)
            tonight = ranker_features(tables.read(CANDIDATES), history, features, item_embeddings=embeddings)
            outputs[RANKER_SOURCE] = as_candidates(ranker.rank(tonight, n), RANKER_SOURCE).withColumn(
                "run_date", F.lit(ctx.run_date)).localCheckpoint()
            validation_parts.append(as_candidates(ranker.rank(training, k), RANKER_SOURCE).localCheckpoint())
        importances = {kind: ranker.feature_importances(kind) for kind in ("gain", "split")}
        tracker.log_dict(importances, "ranker_feature_importances.json")
        tracker.log_params({"ranker.base_feature": ranker.base_feature or "", "ranker.uses_trees": ranker.use_trees})
        tracker.log_metrics({"ranker.best_iteration": ranker.best_iteration, "ranker.eval_ndcg": ranker.eval_ndcg}
                            | ({"ranker.base_ndcg": ranker.base_ndcg} if ranker.base_ndcg is not None else {}))
        log.info("ranker feature importances (gain): %s",
                 ", ".join(f"{name} {value:.1f}" for name, value in list(importances["gain"].items())[:10]))
    fit_rows.unpersist()

    with ctx.measure("rerank.champion"):
        scores = validation_ndcg(reduce(DataFrame.unionByName, validation_parts), truth, k, selection_users)
    champion = choose_champion(scores, [*BLENDS, *hybrid_sources], rc.champion_tolerance)
    hybrid_ndcg, ranker_ndcg = scores.get(HYBRID_SOURCE), scores.get(RANKER_SOURCE)
    # lineage publish records: the registered ranker, "<source>:unregistered" for the hybrid or a
    # source without a registry entry, "" for ALS (publish then uses the ALS factors' version)
    champion_version = "" if champion == "als" else f"{champion}:unregistered"
    if ranker is not None:
        model_uri = tracker.log_lightgbm_model(ranker.booster, "ranker_model")
        tracker.log_text(ranker.to_string(), "ranker_model.json")
        if rc.register_model:
            tracker.register_if_better(model_uri, rc.model_name, rc.champion_alias, f"validation_ndcg_at_{k}",
                                       ranker_ndcg)
        if champion == RANKER_SOURCE and tracker.registered_version:
            champion_version = tracker.registered_version
    n_selection = len(selection_users) if selection_users is not None else truth.select("user_idx").distinct().count()
    tracker.log_params({"champion": champion})
    tracker.log_metrics({f"validation_ndcg_at_{k}.{s}": v for s, v in scores.items()})
    tracker.log_dict({"champion": champion, "selection_users": n_selection, f"validation_ndcg@{k}": scores},
                     "champion.json")
    metadata = ctx.commit_metadata({"champion": champion, "champion_validation_ndcg": f"{scores[champion]:.6f}",
                                    "champion_model_version": champion_version,
                                    "champion_mlflow_run_id": tracker.mlflow_run_id or ""})
    for name in (HYBRID_SOURCE, RANKER_SOURCE):
        if name in outputs:
            with ctx.measure(f"rerank.write_{name}"):
                write(outputs[name], name, metadata)
    summary = RerankSummary(
        len(deep_sources), len(hybrid_sources), len(ranker_sources), truth.select("user_idx").distinct().count(),
        n_selection, hybrid_ndcg, ranker_ndcg, scores[champion], champion,
    )
    log.info("rerank %s: %s; validation NDCG@%d %s", ctx.run_date, summary, k,
             ", ".join(f"{s} {v:.4f}" for s, v in sorted(scores.items(), key=lambda kv: -kv[1])))
    return summary
