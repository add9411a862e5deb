"""The blends fitted on validation, and what the nights apply: :func:`fit_blends` ->
:class:`BlendChoice` -> :func:`apply_blends`.

:func:`fit_blends` is the validation protocol (the test split is never used for any choice):

1. :func:`recspark.ranker.blend.validation_inputs`: validation = the ``validation_ratio`` carve of
   train, fit rows = the other train rows; it fails when a test pair is among them;
2. validation-time candidates: every retrieval source a blend needs is refit on the fit rows
   (:meth:`recspark.sources.CandidateSource.refit`) with the fit rows as seen history; the deep
   models re-rank them;
3. the learned ranker (:class:`recspark.ranker.lambdarank.LearnedRanker`) learns on those
   candidates, its features built only for the users its row caps let it train and judge on
   (:func:`recspark.ranker.lambdarank.training_users`; at 5M interactions night 1's rerank was
   stopped after about 8 minutes in the features of all 50,000 users, unfinished); the grid
   hybrid's weights are the best grid point on them;
4. champion: every refit source, the hybrid and the ranker scored by mean NDCG@k over the
   ranker's held-out users (all validation users without a ranker); the best wins, lists within
   ``ranker.champion_tolerance`` counting as tied (ties go to the ranker, the hybrid, then the
   hybrid's sources).

The weekly ``tune`` stage runs it and records the :class:`BlendChoice` (JSON, the ranker's
LightGBM model included) as the ``blends`` row of ``tuned_params``; nightly ``rerank`` applies the
newest row to tonight's candidates (:func:`apply_blends`) and fits in-stage only when there is
none or it no longer matches tonight's sources.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import CANDIDATES, INTERACTIONS_SPLIT, ITEM_EMBEDDINGS, USER_INDEX
from recspark.deep.models import MODEL_NAMES
from recspark.deep.scoring import blend, deep_rerank, normalised_scores, tune_blend_weights
from recspark.deep.training import checkpoint_path, load_checkpoint
from recspark.featurize.splits import split_carve
from recspark.io.session import materialize_on_disk
from recspark.ranker.blend import choose_champion, validation_inputs, validation_ndcg
from recspark.ranker.features import FeatureSet, ranker_features, source_features
from recspark.sources import SourceInputs, TableReader, as_candidates, get_source, require_known_sources, source_names

log = logging.getLogger(__name__)

HYBRID_SOURCE = "hybrid"
RANKER_SOURCE = "ranker"
BLENDS = (RANKER_SOURCE, HYBRID_SOURCE)
BLENDS_ALGORITHM = "blends"  # the algorithm key of the blends row of tuned_params
HISTORY_COLUMNS = ["user_idx", "item_idx", "event_ts", "split"]


@dataclass
class BlendChoice:
    """What validation chose. ``ranker_model``: :meth:`RankerModel.to_string` over the features of
    ``ranker_sources`` (``content``: with ``content_similarity``), None without a ranker;
    ``hybrid_weights`` over ``hybrid_sources`` (None without a hybrid); ``scores``: list ->
    validation NDCG@``k`` on the ``selection_users`` users; ``champion`` the list publish
    serves; ``ranker_model_version`` the ranker's registered version, when registered."""

    k: int
    n: int
    ranker_sources: list[str]
    hybrid_sources: list[str]
    deep_sources: list[str]
    content: bool
    ranker_model: str | None
    hybrid_weights: dict[str, float] | None
    scores: dict[str, float]
    champion: str
    selection_users: int
    validation_users: int
    ranker_model_version: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # logged, not needed to apply

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BlendChoice:
        """The choice of :meth:`to_json`; ValueError naming the missing or unknown keys."""
        stored = json.loads(text)
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        if not isinstance(stored, dict) or set(stored) - known or required - set(stored):
            raise ValueError(f"not a recorded blend choice: keys {sorted(stored) if isinstance(stored, dict) else stored}")
        return cls(**stored)

    @property
    def champion_ndcg(self) -> float:
        return self.scores[self.champion]

    def ranker(self) -> Any:
        """The :class:`RankerModel`, or None."""
        if self.ranker_model is None:
            return None
        from recspark.ranker.lambdarank import RankerModel

        return RankerModel.from_string(self.ranker_model)

    def feature_set(self) -> FeatureSet:
        return FeatureSet(tuple(self.ranker_sources), self.n, content=self.content)

    def mismatch(self, plan: BlendPlan, k: int, n: int) -> str | None:
        """Why this choice cannot blend tonight's ``plan`` with list length ``n`` and cut-off
        ``k``, or None when it can."""
        recorded = _blend_signature(self.ranker_sources, self.hybrid_sources, self.deep_sources, self.content,
                                    self.k, self.n)
        tonight = _blend_signature(plan.ranker, plan.hybrid, plan.deep, plan.content, k, n)
        differ = [f"{key} {recorded[key]} (tonight {value})" for key, value in tonight.items() if recorded[key] != value]
        return "; ".join(differ) or None

    def mlflow_params(self) -> dict[str, Any]:
        ranker = self.details.get("ranker")
        return {"champion": self.champion} | (
            {"ranker.base_feature": ranker["base_feature"], "ranker.uses_trees": ranker["uses_trees"]} if ranker else {})

    def mlflow_metrics(self) -> dict[str, float]:
        ranker, hybrid = self.details.get("ranker"), self.details.get("hybrid")
        metrics = {f"validation_ndcg_at_{self.k}.{s}": v for s, v in self.scores.items()}
        metrics |= {f"hybrid.weight.{s}": w for s, w in (self.hybrid_weights or {}).items()}
        if hybrid:
            metrics[f"hybrid.validation_ndcg_at_{self.k}"] = hybrid[f"validation_ndcg@{self.k}"]
        if ranker:
            metrics |= {f"ranker.{key}": ranker[key] for key in ("best_iteration", "eval_ndcg", "base_ndcg")
                        if ranker[key] is not None}
        return metrics

    def mlflow_dicts(self) -> dict[str, dict[str, Any]]:
        """Artifact name -> JSON content: ``champion.json``, ``hybrid_weights.json`` (the grid) and
        ``ranker_feature_importances.json`` (gain and split), those that apply."""
        dicts = {"champion.json": {"champion": self.champion, "selection_users": self.selection_users,
                                   f"validation_ndcg@{self.k}": self.scores}}
        if "hybrid" in self.details:
            dicts["hybrid_weights.json"] = self.details["hybrid"]
        if "ranker" in self.details:
            dicts["ranker_feature_importances.json"] = self.details["ranker"]["feature_importances"]
        return dicts

    def log(self, tracker: Any) -> None:
        """Params, metrics, JSON artifacts and ``ranker_model.json`` to a stage's MLflow run
        (:class:`recspark.io.tracking.StageRun`), and the ranker's top features to the log."""
        tracker.log_params(self.mlflow_params())
        tracker.log_metrics(self.mlflow_metrics())
        for name, content in self.mlflow_dicts().items():
            tracker.log_dict(content, name)
        if self.ranker_model is not None:
            tracker.log_text(self.ranker_model, "ranker_model.json")
        gain = self.details.get("ranker", {}).get("feature_importances", {}).get("gain", {})
        if gain:
            log.info("ranker feature importances (gain): %s",
                     ", ".join(f"{name} {value:.1f}" for name, value in list(gain.items())[:10]))


def _blend_signature(ranker: list[str], hybrid: list[str], deep: list[str], content: bool, k: int,
                     n: int) -> dict[str, Any]:
    """What a recorded choice and tonight's plan must share for the choice to apply."""
    return {"ranker sources": list(ranker), "hybrid sources": list(hybrid), "deep models": list(deep),
            "content features": bool(content) and bool(ranker), "evaluation.k": k, "candidates.n": n}


@dataclass
class BlendPlan:
    """The blends' sources: ``retrieval`` (what deep models re-rank), ``deep`` (models with a
    checkpoint), ``hybrid`` and ``ranker`` sources, and whether item embeddings exist."""

    retrieval: list[str]
    deep: list[str]
    hybrid: list[str]
    ranker: list[str]
    content: bool


def plan_blends(tables: TableReader, config: Any) -> BlendPlan:
    """The blend sources of the ``deep`` and ``ranker`` settings that are present in the
    ``candidates`` table (deep models: with a checkpoint in ``deep.model_dir``); ValueError when
    nothing can be blended."""
    dc, rc = config.deep, config.ranker
    require_known_sources(dc.rerank_sources, "deep.rerank_sources")
    require_known_sources(dc.hybrid_sources, "deep.hybrid_sources", extra=MODEL_NAMES)
    require_known_sources(rc.sources, "ranker.sources", extra=MODEL_NAMES)
    present = {r["source"] for r in tables.read(CANDIDATES).select("source").distinct().collect()} - set(BLENDS)
    retrieval = [s for s in dc.rerank_sources if s in present]
    model_dir = config.deep_directory("model_dir")
    deep = [name for name in dc.models if checkpoint_path(model_dir, name).exists()]
    missing = sorted(set(dc.models) - set(deep))
    if missing:
        log.warning("no checkpoint for deep model(s) %s: run train-deep first; skipping them", missing)
    if deep and not retrieval:
        raise ValueError(f"no candidates of deep.rerank_sources {dc.rerank_sources} to re-rank; present: {sorted(present)}")
    available = present | set(deep)
    hybrid = [s for s in dc.hybrid_sources if s in available]
    ranker: list[str] = []
    if rc.enabled:
        wanted = rc.sources or [s for s in (*source_names(), *MODEL_NAMES) if s in available]
        absent = sorted(set(wanted) - available)
        if absent:
            log.warning("ranker.sources %s have no candidates tonight; the ranker blends the others", absent)
        ranker = [s for s in wanted if s in available]
    if not hybrid and not ranker:
        raise ValueError(f"nothing to blend: none of deep.hybrid_sources {dc.hybrid_sources} is present and the "
                         f"ranker has no sources; present: {sorted(present)}")
    return BlendPlan(retrieval, deep, hybrid, ranker, tables.exists(ITEM_EMBEDDINGS))


@dataclass
class BlendInputs:
    """What :func:`fit_blends` reads: the ``interactions_split`` frame and its seed, the sources'
    :class:`SourceInputs`, the users to recommend for, the deep models by name (re-ranking the
    ``retrieval`` sources), the item embeddings (None: no content feature) and the settings."""

    split: DataFrame
    split_seed: int
    sources: SourceInputs
    users: DataFrame
    ranker_sources: list[str]
    hybrid_sources: list[str]
    retrieval: list[str]
    deep_models: dict[str, Any]
    item_embeddings: DataFrame | None
    deep_settings: Any
    ranker_settings: Any
    n: int
    k: int
    carve_stratify_by: str = "user"  # the validation carve's stratification (featurize.splits.split_carve)


@dataclass
class FittedBlends:
    """:func:`fit_blends`' result: the ``choice`` and the fitted ranker (None without one)."""

    choice: BlendChoice
    ranker: Any

    def log(self, tracker: Any, settings: Any) -> None:
        """:meth:`BlendChoice.log`, after logging the ranker (``mlflow.lightgbm``) and, with
        ``settings.register_model`` (:class:`RankerSettings`), registering it as
        ``settings.model_name`` (alias moved when its validation NDCG beats the holder's); the
        choice then carries the registered version."""
        if self.ranker is not None:
            model_uri = tracker.log_lightgbm_model(self.ranker.booster, "ranker_model")
            if settings.register_model:
                tracker.register_if_better(model_uri, settings.model_name, settings.champion_alias,
                                           f"validation_ndcg_at_{self.choice.k}", self.choice.scores[RANKER_SOURCE])
                self.choice.ranker_model_version = tracker.registered_version or ""
        self.choice.log(tracker)


def validation_candidates(fit_rows: DataFrame, sources: list[str], inputs: SourceInputs, users: DataFrame,
                          n: int) -> DataFrame:
    """Candidates (candidates-table columns) of the retrieval ``sources`` refit on ``fit_rows``,
    with ``fit_rows`` as the seen history; ``n`` per user and source, each source's lists
    materialised on local disk (:func:`recspark.io.session.materialize_on_disk`: at 20M one
    source's lists are 1.6 GB) for the rest of the stage's process."""
    seen = fit_rows.select("user_idx", "item_idx")
    parts = [
        materialize_on_disk(as_candidates(get_source(name).refit(fit_rows, inputs).recommend(users, n, seen), name))
        for name in sources
    ]
    return reduce(DataFrame.unionByName, parts)


def fit_blends(inputs: BlendInputs, measure: Callable[[str], AbstractContextManager[Any]]) -> FittedBlends:
    """Steps 1-4 of the module docstring; ``measure(step)`` times each step (``blends.*`` names)."""
    dc, rc, n, k = inputs.deep_settings, inputs.ranker_settings, inputs.n, inputs.k
    validation = validation_inputs(inputs.split, dc.validation_ratio, inputs.split_seed, inputs.carve_stratify_by)
    fit_rows = validation.fit_rows.cache()
    needed = set(inputs.hybrid_sources) | set(inputs.ranker_sources) | (
        set(inputs.retrieval) if inputs.deep_models else set())
    with measure("blends.validation_candidates"):
        retrieval = validation_candidates(fit_rows, [s for s in source_names() if s in needed], inputs.sources,
                                          inputs.users, n)
    parts = [retrieval]
    for name, model in inputs.deep_models.items():
        with measure(f"blends.{name}_validation"):
            ranked = deep_rerank(retrieval, inputs.retrieval, model, n, dc.scoring_batch_size, dc.device)
            parts.append(as_candidates(ranked, name).localCheckpoint())
    lists = reduce(DataFrame.unionByName, parts)
    truth = validation.validation
    details: dict[str, Any] = {}
    weights = None
    if inputs.hybrid_sources:
        with measure("blends.hybrid_fit"):
            scores = normalised_scores(lists, inputs.hybrid_sources)
            tuning = tune_blend_weights(scores, truth, inputs.hybrid_sources, dc.hybrid_weight_grid, k)
            parts.append(as_candidates(blend(scores, tuning.weights, k), HYBRID_SOURCE).localCheckpoint())
        weights = tuning.weights
        details["hybrid"] = {"weights": weights, f"validation_ndcg@{k}": tuning.validation_ndcg,
                             "grid": [{"weights": w, f"validation_ndcg@{k}": v} for w, v in tuning.grid_ndcg]}
    ranker = selection_users = None
    content = inputs.item_embeddings is not None
    if inputs.ranker_sources:
        from recspark.ranker.lambdarank import LearnedRanker, training_users

        features = FeatureSet(tuple(inputs.ranker_sources), n, content=content)
        with measure("blends.ranker_fit"):
            # features only for the users the ranker trains and is judged on (its row caps),
            # materialised (with lists' lineage each task binary was 6-37 MiB, a Spark WARN per
            # job) under a fresh attribute: a checkpoint keeps the attribute of lists' user_idx,
            # and Spark 3.5 cannot tell the two sides of the semi join apart
            users = training_users(lists.where(F.col("source").isin(list(inputs.ranker_sources))),
                                   validation.labels, rc).select(F.col("user_idx").alias("user_idx")).localCheckpoint()
            training = ranker_features(lists.join(F.broadcast(users), "user_idx", "left_semi"),
                                       fit_rows.select(*HISTORY_COLUMNS), features,
                                       item_embeddings=inputs.item_embeddings).localCheckpoint()
            ranker = LearnedRanker(rc).fit(training, validation.labels, features.columns)
            parts.append(as_candidates(ranker.rank(training, k), RANKER_SOURCE).localCheckpoint())
        selection_users = ranker.eval_users
        details["ranker"] = {
            "base_feature": ranker.base_feature or "", "uses_trees": ranker.use_trees,
            "best_iteration": ranker.best_iteration, "eval_ndcg": ranker.eval_ndcg, "base_ndcg": ranker.base_ndcg,
            "feature_importances": {kind: ranker.feature_importances(kind) for kind in ("gain", "split")},
        }
    with measure("blends.champion"):
        scores = validation_ndcg(reduce(DataFrame.unionByName, parts), truth, k, selection_users)
    fit_rows.unpersist()
    champion = choose_champion(scores, [*BLENDS, *inputs.hybrid_sources], rc.champion_tolerance)
    n_validation = truth.select("user_idx").distinct().count()
    choice = BlendChoice(
        k=k, n=n, ranker_sources=list(inputs.ranker_sources), hybrid_sources=list(inputs.hybrid_sources),
        deep_sources=list(inputs.deep_models), content=content,
        ranker_model=ranker.to_string() if ranker is not None else None, hybrid_weights=weights, scores=scores,
        champion=champion, selection_users=len(selection_users) if selection_users is not None else n_validation,
        validation_users=n_validation, details=details,
    )
    return FittedBlends(choice, ranker)


def fit_blends_on_tables(tables: TableReader, config: Any, plan: BlendPlan,
                         measure: Callable[[str], AbstractContextManager[Any]]) -> FittedBlends:
    """:func:`fit_blends` on the warehouse's ``interactions_split`` (its seed from the commit
    metadata), users, item embeddings and deep checkpoints, with ``config``'s settings."""
    model_dir = config.deep_directory("model_dir")
    split_seed, carve_stratify_by = split_carve(tables.latest_metadata(INTERACTIONS_SPLIT))
    inputs = BlendInputs(
        split=tables.read(INTERACTIONS_SPLIT), split_seed=split_seed, sources=SourceInputs(config, tables),
        users=tables.read(USER_INDEX).select("user_idx"), ranker_sources=plan.ranker, hybrid_sources=plan.hybrid,
        retrieval=plan.retrieval, deep_models={m: load_checkpoint(checkpoint_path(model_dir, m)) for m in plan.deep},
        item_embeddings=tables.read(ITEM_EMBEDDINGS) if plan.content else None, deep_settings=config.deep,
        ranker_settings=config.ranker, n=config.candidates.n, k=config.evaluation.k,
        carve_stratify_by=carve_stratify_by,
    )
    return fit_blends(inputs, measure)


def apply_blends(choice: BlendChoice, candidates: DataFrame, history: DataFrame, item_embeddings: DataFrame | None,
                 n: int) -> dict[str, DataFrame]:
    """Tonight's blend lists (candidates-table columns but ``run_date``), by name: the ranker over
    ``candidates`` (every source's rows, seen items excluded already) with ``history`` (non-test
    interactions_split rows) for its features, and the hybrid with the chosen weights. A ranker
    that serves its base source's ranking (no trees) reads only the per-source columns, so the
    history, content and popularity features are not built for it."""
    lists: dict[str, DataFrame] = {}
    if choice.hybrid_weights is not None:
        normalised = normalised_scores(candidates, choice.hybrid_sources)
        lists[HYBRID_SOURCE] = as_candidates(blend(normalised, choice.hybrid_weights, n), HYBRID_SOURCE)
    ranker = choice.ranker()
    if ranker is not None:
        if not ranker.use_trees:  # it serves the base source's ranking: the rank columns are all it reads
            tonight = source_features(candidates, tuple(choice.ranker_sources), choice.n)
        elif choice.content and item_embeddings is None:
            raise ValueError("the recorded ranker uses content_similarity but item_embeddings is missing")
        else:
            tonight = ranker_features(candidates, history.where(F.col("split") != "test").select(*HISTORY_COLUMNS),
                                      choice.feature_set(), item_embeddings=item_embeddings if choice.content else None)
        lists[RANKER_SOURCE] = as_candidates(ranker.rank(tonight, n), RANKER_SOURCE)
    return lists
