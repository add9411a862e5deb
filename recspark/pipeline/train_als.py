"""Train-als stage: interactions_split (+ tuned_params) -> user_factors, item_factors (+ factor
neighbours).

0. Engine: ``als.engine`` (auto | mllib | implicit, :mod:`recspark.recommenders.als_engines`) is
   resolved once on the non-test pairs; auto picks the implicit library on the driver when the
   pairs fit ``als.memory_budget_mb``. The choice and its reason are logged (one line, MLflow
   params ``als.engine_used`` / ``als.engine_reason``) and every implicit fit of the stage uses it;
   explicit points always run on MLlib.
1. Params: the newest ``als`` row of ``tuned_params`` (written by the weekly ``tune`` stage) when
   there is one and ``als.use_tuned_params`` is on: no grid runs. Otherwise (a fresh warehouse)
   the stage searches itself as tune does (:func:`recspark.recommenders.als_tuning.search_on_split`:
   ``als.grid`` on the validation carve, scored by ``als.selection_metric`` at ``evaluation.k``;
   the test split is never used). MLflow param ``als.params_from`` says which.
2. Refit: those params on all non-test pairs (train + validation). Between full refits (fold-in
   nights) steps 1-3 are replaced by a fold-in, see below.
3. Write ``user_factors`` and ``item_factors`` (user_idx / item_idx, features array<float>; the
   params in their commit metadata as ``als.<param>``), the ``als_factors`` partition of
   ``item_similarity`` (exact cosine neighbours of the item factors), and log trials (nested
   MLflow runs), the model (``mlflow.spark``) and, with ``als.register_model``, register it and
   move the champion alias only if its validation metric beats the champion's.

Fold-in nights: when the last full fit is younger than ``als.full_retrain_every_days`` (0: a full
refit every night), fitted implicit ALS with the params tonight would use (no newer tune), and
the split it read (its Delta version is in the factors' metadata) is still readable, the users
whose non-test pairs changed since then (new users included) get factors by one regularised
least-squares solve each against the saved item factors
(:func:`recspark.recommenders.fold_in.fold_in_users`, the same objective as the full fit's engine)
and replace or join their rows of ``user_factors``; ``item_factors`` is rewritten unchanged (both
tables of one night carry one run id). A full refit is due instead when more than
``als.max_share_folded_in`` of the users would be folded in (drift). MLflow param ``als.night``
and one log line say which and why. Items new since the full fit get factors at the next full
refit.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import functions as F

from recspark.catalog import INTERACTIONS_SPLIT, ITEM_FACTORS, ITEM_SIMILARITY, TUNED_PARAMS, USER_FACTORS
from recspark.featurize.splits import split_carve
from recspark.pipeline.stage import StageContext
from recspark.recommenders.als import als_estimator, als_params_from_metadata, als_params_metadata
from recspark.recommenders.als_engines import engine_fit, pick_engine
from recspark.recommenders.als_tuning import (
    ALS_ALGORITHM,
    metric_label,
    search_on_split,
    search_summary,
    trial_runs,
    tuned_params_from_json,
)
from recspark.recommenders.fold_in import (
    FoldInSettings,
    changed_users,
    fold_in_users,
    merge_user_factors,
    needs_full_retrain,
)
from recspark.recommenders.item_similarity import FACTOR_SIMILARITY_METHOD, factor_similarity
from recspark.tuned_params import newest_tuned_row

log = logging.getLogger(__name__)

IN_STAGE_SEARCH = "in-stage search"  # ChosenParams.source of the params train-als searched itself


@dataclass
class AlsTrainingResult:
    trials: int  # grid points fitted by this stage (0 with tuned params)
    best_rank: int
    best_reg_param: float
    best_alpha: float
    best_implicit: int  # 1 implicit, 0 explicit
    validation_metric: float
    users_with_factors: int
    items_with_factors: int
    promoted: int  # 1 when the champion alias moved to this model
    implicit_engine: int  # 1 when the implicit library fitted the implicit points, 0 MLlib
    tuned_params_used: int  # 1 when the params came from tuned_params, 0 from the in-stage search
    full_fit: int  # 1 a full refit, 0 a fold-in night
    folded_in_users: int  # users given factors by fold-in tonight (0 on a full refit)
    share_folded_in: float  # folded-in users / users with factors (0 on a full refit)


@dataclass
class ChosenParams:
    """The searched ALS params the refit uses, their validation metric and where they came from."""

    params: dict[str, Any]
    metric_label: str  # e.g. ndcg_at_10
    validation_metric: float
    trials: int
    source: str  # "tuned_params <run_date> <run_id>" or IN_STAGE_SEARCH


def tuned_als_params(ctx: StageContext) -> ChosenParams | None:
    """The newest ``als`` row of tuned_params, or None when there is none (or it is switched off)."""
    if not ctx.config.als.use_tuned_params:
        return None
    row = newest_tuned_row(ctx.tables.read_if_exists(TUNED_PARAMS), ALS_ALGORITHM)
    if row is None:
        return None
    return ChosenParams(tuned_params_from_json(row["params"]), row["selection_metric"], row["validation_metric"], 0,
                        f"tuned_params {row['run_date']} {row['run_id']}")


def searched_als_params(ctx: StageContext, split, fit) -> ChosenParams:
    """The in-stage search (what tune does), logged as nested MLflow runs and als_search.json."""
    ac, k, tracker = ctx.config.als, ctx.config.evaluation.k, ctx.tracker
    split_seed, stratify_by = split_carve(ctx.tables.latest_metadata(INTERACTIONS_SPLIT))
    with ctx.measure("als.search"):
        search = search_on_split(split, ac, k, split_seed, fit, stratify_by)
    for name, params, metrics in trial_runs(search, k):
        tracker.log_child_run(name, params, metrics)
    tracker.log_dict(search_summary(search, k), "als_search.json")
    best = search.best
    return ChosenParams(best.params, metric_label(ac.selection_metric, k), best.metrics[ac.selection_metric],
                        len(search.trials), IN_STAGE_SEARCH)


@dataclass
class FoldInPlan:
    """A fold-in night: the users to fold in, their share of the users with factors, the saved
    factors and the metadata of the full fit they come from (``recspark.`` prefix removed)."""

    users: Any  # DataFrame (user_idx)
    n_users: int
    share: float
    user_factors: Any  # DataFrame
    item_factors: Any  # DataFrame
    fit_metadata: dict[str, str]


def full_fit_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The ``als.*`` keys (and model_version) of the factors' commit metadata, without ``recspark.``."""
    unprefixed = {key.removeprefix("recspark."): value for key, value in metadata.items()}
    return {key: value for key, value in unprefixed.items() if key.startswith("als.") or key == "model_version"}


def full_refit_reason(ctx: StageContext, fit_metadata: dict[str, str], params_source: str) -> str | None:
    """Why tonight needs a full refit without looking at the data (None: fold-in may do)."""
    ac = ctx.config.als
    if ac.full_retrain_every_days == 0:
        return "fold-in is off (als.full_retrain_every_days: 0)"
    if "als.full_fit_date" not in fit_metadata:
        return "no earlier full fit"
    full_fit_date = dt.date.fromisoformat(fit_metadata["als.full_fit_date"])
    days = (ctx.run_date - full_fit_date).days
    if days >= ac.full_retrain_every_days:
        return f"{days} days since the full fit of {full_fit_date} (als.full_retrain_every_days: {ac.full_retrain_every_days})"
    if fit_metadata.get("als.implicit_prefs") != "True":
        return "the full fit is explicit ALS, which has no fold-in"
    if fit_metadata.get("als.params_from") != params_source:
        return f"new params ({params_source}; the full fit used {fit_metadata.get('als.params_from')})"
    return None


def plan_fold_in(ctx: StageContext, history, params_source: str) -> tuple[FoldInPlan | None, str]:
    """(plan, reason): a fold-in plan when tonight may fold in, else None and why not."""
    tables, ac = ctx.tables, ctx.config.als
    fit_metadata = full_fit_metadata(tables.latest_metadata(USER_FACTORS))
    reason = full_refit_reason(ctx, fit_metadata, params_source)
    if reason:
        return None, reason
    settings = FoldInSettings(implicit_rating_col=ac.implicit_rating_col)
    columns = ["user_idx", "item_idx", ac.implicit_rating_col]
    version = int(fit_metadata["als.full_fit_split_version"])
    try:
        before = tables.read(INTERACTIONS_SPLIT, version=version).where(F.col("split") != "test").select(columns)
        users = changed_users(before, history.select(columns), settings).localCheckpoint()
    except Exception as exc:  # a vacuumed or unreadable version: refit rather than fail the night
        return None, f"the split of the full fit (version {version}) is unreadable: {str(exc).splitlines()[0]}"
    user_factors, item_factors = tables.read(USER_FACTORS), tables.read(ITEM_FACTORS)
    n_users = users.count()
    with_factors = user_factors.select("user_idx").union(users).distinct().count()
    share = n_users / with_factors if with_factors else 0.0
    if needs_full_retrain(share, ac.max_share_folded_in):
        return None, f"drift: {share:.1%} of the users changed since the full fit > {ac.max_share_folded_in:.1%}"
    return FoldInPlan(users, n_users, share, user_factors, item_factors, fit_metadata), \
        f"{n_users} users new or changed since the full fit of {fit_metadata['als.full_fit_date']} ({share:.1%})"


def fold_in_night(ctx: StageContext, plan: FoldInPlan, history) -> AlsTrainingResult:
    """Fold the plan's users in against the full fit's item factors and rewrite both tables."""
    ac, meta = ctx.config.als, plan.fit_metadata
    params = als_params_from_metadata(meta, prefix="")
    implicit_engine = meta.get("als.engine") == "implicit"
    settings = FoldInSettings(
        reg_param=float(meta["als.implicit_regularization"]) if implicit_engine else params["reg_param"],
        alpha=params["alpha"], reg_scaling="none" if implicit_engine else "mllib",
        implicit_rating_col=ac.implicit_rating_col, max_share_folded_in=ac.max_share_folded_in,
    )
    with ctx.measure("als.fold_in"):
        folded = fold_in_users(history.join(plan.users, "user_idx", "left_semi"), plan.item_factors, settings)
        user_factors = merge_user_factors(plan.user_factors, folded).localCheckpoint()
        item_factors = plan.item_factors.localCheckpoint()
    factors_meta = ctx.commit_metadata(meta | {
        "als.fit": "fold_in", "als.folded_in_users": plan.n_users, "mlflow_run_id": ctx.tracker.mlflow_run_id or "",
    })
    ctx.tables.write(user_factors, USER_FACTORS, metadata=factors_meta, overwrite_schema=True)
    ctx.tables.write(item_factors, ITEM_FACTORS, metadata=factors_meta, overwrite_schema=True)
    return AlsTrainingResult(
        trials=0, best_rank=params["rank"], best_reg_param=params["reg_param"], best_alpha=params["alpha"],
        best_implicit=int(params["implicit_prefs"]), validation_metric=float(meta.get("als.validation_metric", "nan")),
        users_with_factors=user_factors.count(), items_with_factors=item_factors.count(), promoted=0,
        implicit_engine=int(implicit_engine), tuned_params_used=int(meta.get("als.params_from") != IN_STAGE_SEARCH),
        full_fit=0, folded_in_users=plan.n_users, share_folded_in=plan.share,
    )


def run_train_als(ctx: StageContext) -> AlsTrainingResult:
    tables, tracker, ac = ctx.tables, ctx.tracker, ctx.config.als
    ctx.spark.sparkContext.setCheckpointDir(ctx.config.checkpoint_dir())
    split = tables.read(INTERACTIONS_SPLIT)
    split_version = tables.read_versions[INTERACTIONS_SPLIT.name]
    history = split.where(F.col("split") != "test")
    chosen = tuned_als_params(ctx)
    plan, why = plan_fold_in(ctx, history, chosen.source if chosen else IN_STAGE_SEARCH)
    log.info("train-als: %s (%s)", "fold-in" if plan else "full refit", why)
    tracker.log_params({"als.night": f"{'fold-in' if plan else 'full refit'}: {why}"})
    if plan:
        result = fold_in_night(ctx, plan, history)
        log.info("train-als %s: %s", ctx.run_date, result)
        return result

    base = als_estimator(ac)
    probe = base.copy(rank=chosen.params["rank"] if chosen else max(ac.grid.rank), implicit_prefs=True)
    engine, reason = pick_engine(probe, history, ac.engine_settings())
    log.info("train-als: ALS engine %s (%s)", engine, reason)
    tracker.log_params({"als.engine_used": engine, "als.engine_reason": reason})
    fit = engine_fit(engine, ac.engine_settings())
    if chosen is None:
        chosen = searched_als_params(ctx, split, fit)
    else:
        log.info("train-als: refit with the params of %s (no grid search): %s", chosen.source, chosen.params)
    tracker.log_params({"als.params_from": chosen.source} | {f"best.{key}": v for key, v in chosen.params.items()})
    tracker.log_metrics({f"validation_{chosen.metric_label}": chosen.validation_metric})

    with ctx.measure("als.refit"):
        final = fit(base.copy(**chosen.params), history)
        user_factors = final.user_factors.localCheckpoint()
        item_factors = final.item_factors.localCheckpoint()
    with ctx.measure("als.log_model"):
        model_uri = tracker.log_spark_model(final.als_model, "als_model")
    promoted = False
    if ac.register_model:
        promoted = tracker.register_if_better(
            model_uri, ac.model_name, ac.champion_alias, f"validation_{chosen.metric_label}", chosen.validation_metric
        )
    # Lineage for the published lists: the refit's params, registered model and MLflow run; and
    # what the fold-in nights until the next full refit need (engine, split version, params source).
    fitted_engine = final.params.get("engine", "mllib")
    factors_meta = ctx.commit_metadata(als_params_metadata(final.params) | {
        "model_version": tracker.registered_version or "unregistered",
        "mlflow_run_id": tracker.mlflow_run_id or "",
        "als.fit": "full", "als.full_fit_date": ctx.run_date.isoformat(), "als.full_fit_split_version": split_version,
        "als.engine": fitted_engine, "als.params_from": chosen.source,
        "als.validation_metric": chosen.validation_metric,
    } | ({"als.implicit_regularization": final.params["implicit_regularization"]} if fitted_engine == "implicit" else {}))
    tables.write(user_factors, USER_FACTORS, metadata=factors_meta, overwrite_schema=True)
    tables.write(item_factors, ITEM_FACTORS, metadata=factors_meta, overwrite_schema=True)
    if ac.factor_similarity_top_n > 0:
        with ctx.measure("als.factor_similarity"):
            neighbours = factor_similarity(item_factors, ac.factor_similarity_top_n).withColumn(
                "method", F.lit(FACTOR_SIMILARITY_METHOD)
            )
            tables.write(neighbours, ITEM_SIMILARITY, replace_partition={"method": FACTOR_SIMILARITY_METHOD},
                         metadata=ctx.commit_metadata())

    params = chosen.params
    result = AlsTrainingResult(
        trials=chosen.trials, best_rank=params["rank"], best_reg_param=params["reg_param"],
        best_alpha=params["alpha"], best_implicit=int(params["implicit_prefs"]),
        validation_metric=chosen.validation_metric, users_with_factors=user_factors.count(),
        items_with_factors=item_factors.count(), promoted=int(promoted), implicit_engine=int(engine == "implicit"),
        tuned_params_used=int(chosen.source != IN_STAGE_SEARCH), full_fit=1, folded_in_users=0, share_folded_in=0.0,
    )
    log.info("train-als %s: %s", ctx.run_date, result)
    return result
