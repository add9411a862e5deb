"""The nightly recommendation lists and their quality gate (pure: no table I/O).

:func:`final_recommendations` turns the candidates table into one ranked list per user,
:func:`attach_because_items` finds a "because you liked" item for recommendations without
one, :func:`with_explanations` maps ids to the published columns, and :func:`gate_breaches`
compares a run's :class:`PublishStats` with the last published run's.

Reliability pieces: :func:`gate_baseline` picks the last *unforced* publish as the baseline,
:func:`evaluate_gate` reports every check it could not make (a missing metric is a breach or a
warning by :class:`GateSettings`, and so is a catalog-coverage drop on the first night after a
retune), :func:`latest_source` / :func:`latest_in_step` pair
``recommendations_latest`` with the dated table, and :func:`require_same_fit` refuses user and
item factors of different fits.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.io.delta.common import Commit
from recspark.recommenders.item_similarity import NEIGHBOR_COL
from recspark.recommenders.sparse_topk import known_positions, list_elements


# Fill order after the champion: the blends, then single sources by their MovieLens test NDCG
# (BENCHMARKS.md), content and popularity last (they serve every known user).
DEFAULT_SOURCES = ("ranker", "hybrid", "ease", "als", "user_knn", "item_item", "content", "popularity")
GATE_ACTIONS = ("breach", "warn")  # what a gate check that is not a plain breach becomes
CATALOG_COVERAGE = "catalog coverage"


@dataclass
class PublishSettings:
    """Nightly lists and the quality gate in front of them (the ``publish`` config section)."""

    k: int = 10  # items per user
    # priority order; content, then popularity, last: every known user gets a full list
    sources: list[str] = field(default_factory=lambda: list(DEFAULT_SOURCES))
    # serve the validated champion (rerank's commit metadata) first when it is one of ``sources``
    champion: bool = True
    metric: str = "ndcg"  # metrics-table metric (at evaluation.k) of the first source, compared by the gate
    min_user_coverage: float = 0.99  # share of known users that must get a list
    max_relative_drop: float = 0.2  # users, rows, coverage, metric may fall at most this much
    on_missing_metric: str = "breach"  # no evaluation metric tonight: breach (refuse) | warn
    # catalog coverage fell past max_relative_drop on the first night of other blends (a retune):
    # warn (default; the tune chose on validation NDCG, not coverage) | breach
    on_retuned_coverage_drop: str = "warn"
    force: bool = False  # publish despite gate breaches (``--force``)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k: must be >= 1, got {self.k}")
        if not self.sources:
            raise ValueError("sources: needs at least one source")
        self.gate()

    def gate(self) -> GateSettings:
        """The gate thresholds as :class:`GateSettings` (which validates them)."""
        return GateSettings(
            min_user_coverage=self.min_user_coverage,
            max_relative_drop=self.max_relative_drop,
            on_missing_metric=self.on_missing_metric,
            on_retuned_coverage_drop=self.on_retuned_coverage_drop,
        )


def publish_order(sources: list[str], champion: str | None) -> list[str]:
    """``sources`` with ``champion`` moved to the front when it is one of them (the fill order
    of the others kept); ``sources`` unchanged otherwise."""
    if champion is None or champion not in sources:
        return list(sources)
    return [champion, *(s for s in sources if s != champion)]


def final_recommendations(candidates: DataFrame, sources: list[str], k: int) -> DataFrame:
    """``k`` items per user from ``candidates`` (user_idx, item_idx, source, score, rank,
    because_item_idx), sources in priority order: a user's list is the first source's top items,
    filled up from the next sources when it has fewer than ``k`` (or none: a user unknown to
    ALS still gets popular items). An item listed by two sources keeps the earlier source.

    Output: user_idx, rank (1..k), item_idx, score, source, because_item_idx.
    """
    if not sources:
        raise ValueError("publish needs at least one candidate source")
    priority = F.create_map(*[F.lit(v) for i, s in enumerate(sources) for v in (s, i)])[F.col("source")]
    pool = candidates.where(F.col("source").isin(sources) & (F.col("rank") <= k)).withColumn(
        "_priority", priority
    )
    first_source = Window.partitionBy("user_idx", "item_idx").orderBy("_priority", "rank")
    deduplicated = pool.withColumn("_n", F.row_number().over(first_source)).where(F.col("_n") == 1)
    in_list = Window.partitionBy("user_idx").orderBy("_priority", "rank", "item_idx")
    return (
        deduplicated.withColumn("_final_rank", F.row_number().over(in_list))
        .where(F.col("_final_rank") <= k)
        .select(
            "user_idx",
            F.col("_final_rank").cast("int").alias("rank"),
            "item_idx",
            "score",
            "source",
            "because_item_idx",
        )
    )


BECAUSE_USERS_PER_CHUNK = 2_048  # users whose links are expanded in one numpy step (memory bound)


def attach_because_items(
    recommendations: DataFrame, history: DataFrame, similarities: DataFrame
) -> DataFrame:
    """Fill a null ``because_item_idx`` with the user's history item most similar to the
    recommended item (largest ``score`` in ``similarities``, ties by smaller id); it stays null
    when no history item has the recommended item among its neighbours.

    Inputs: ``recommendations`` (user_idx, item_idx, because_item_idx, ...), ``history``
    (user_idx, item_idx), ``similarities`` (item_idx, neighbor_idx, score: item_idx lists
    neighbor_idx). The links are collected and broadcast, grouped by their history-side item
    (``links x 20`` bytes: 100 MB for 100,000 items x 50 neighbours); each user's
    recommendations and history travel as one row, and a task expands the user's history items'
    links (history length x top-N, bounded) and keeps, per recommendation, the best one reaching
    it. Grouping the links by recommended item instead expanded a popular item's thousands of
    incoming links for every user it was recommended to (slower than a join at 20M)."""
    sim = similarities.select(F.col("item_idx").cast("long").alias("h"), F.col(NEIGHBOR_COL).cast("long").alias("j"),
                              F.col("score").cast("double").alias("s"))
    links = sim.where(F.col("h").isNotNull() & F.col("j").isNotNull() & F.col("s").isNotNull()).toPandas()
    links = links.sort_values(["h", "j"], kind="stable")
    sources, starts = np.unique(links["h"].to_numpy(np.int64), return_index=True)
    ends = np.append(starts[1:], len(links)).astype(np.int64)
    shared = recommendations.sparkSession.sparkContext.broadcast(
        (sources, starts.astype(np.int64), ends, links["j"].to_numpy(np.int64), links["s"].to_numpy(np.float64)))
    per_user = (
        recommendations.where(F.col("because_item_idx").isNull())
        .groupBy("user_idx").agg(F.collect_set(F.col("item_idx").cast("long")).alias("_recs"))
        .join(history.groupBy("user_idx").agg(F.collect_set(F.col("item_idx").cast("long")).alias("_history")),
              "user_idx")
    )

    def best_links(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        linked = shared.value
        for whole in batches:
            for offset in range(0, whole.num_rows, BECAUSE_USERS_PER_CHUNK):
                yield _because_of_chunk(whole.slice(offset, BECAUSE_USERS_PER_CHUNK), *linked)

    best = per_user.mapInArrow(best_links, "user_idx int, item_idx int, _because int")
    return recommendations.join(best, ["user_idx", "item_idx"], "left").select(
        *[c for c in recommendations.columns if c != "because_item_idx"],
        F.coalesce("because_item_idx", "_because").alias("because_item_idx"),
    )


def _because_of_chunk(batch: pa.RecordBatch, sources: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                      neighbours: np.ndarray, scores: np.ndarray) -> pa.RecordBatch:
    """(user_idx, item_idx, _because) of one batch of (user_idx, _recs, _history) rows: each
    history item's links (at most the similarity's top-N) are matched against the user's
    recommendations, and per recommendation the best link (largest score, then smaller history
    item) wins; see :func:`attach_because_items`."""
    rec_user, recs = list_elements(batch.column("_recs"))
    history_user, history = list_elements(batch.column("_history"))
    recs, history = recs.to_numpy(zero_copy_only=False), history.to_numpy(zero_copy_only=False)
    stride = int(max(neighbours.max(initial=0), recs.max(initial=0))) + 1  # (user, item) -> one int64 key
    wanted = np.sort(rec_user * stride + recs)
    found, at = known_positions(history, sources)
    counts = ends[at] - starts[at]
    owner = np.repeat(np.flatnonzero(found), counts)  # the history entry each expanded link comes from
    link = np.repeat(starts[at] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    keys = history_user[owner] * stride + neighbours[link]
    hit, _ = known_positions(keys, wanted)
    keys, because, score = keys[hit], history[owner[hit]], scores[link[hit]]
    order = np.lexsort((because, -score, keys))
    keys, because = keys[order], because[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else np.empty(0, dtype=np.int64)
    users = batch.column("user_idx").to_numpy(zero_copy_only=False)[keys[first] // stride]
    return pa.RecordBatch.from_arrays(
        [pa.array(users, pa.int32()), pa.array(keys[first] % stride, pa.int32()), pa.array(because[first], pa.int32())],
        names=["user_idx", "item_idx", "_because"])


def with_explanations(recommendations: DataFrame, user_index: DataFrame, items: DataFrame) -> DataFrame:
    """Published columns: user_id, rank, item_id, title, score, source and ``explanation``
    ("because you liked <title>" when there is a because item, else null).

    ``user_index`` (user_id, user_idx); ``items`` (item_id, item_idx, title).
    """
    titles = items.select("item_id", "item_idx", "title")
    because = titles.select(F.col("item_idx").alias("because_item_idx"), F.col("title").alias("_because_title"))
    return (
        recommendations.join(user_index.select("user_id", "user_idx"), "user_idx")
        .join(titles, "item_idx")
        .join(because, "because_item_idx", "left")
        .select(
            "user_id",
            "rank",
            "item_id",
            "title",
            F.col("score").cast("double").alias("score"),
            "source",
            F.when(
                F.col("_because_title").isNotNull(), F.concat(F.lit("because you liked "), F.col("_because_title"))
            ).alias("explanation"),
        )
    )


@dataclass
class PublishStats:
    """What the quality gate compares between runs. ``metric`` is the evaluation metric of
    the primary source (None when this run was not evaluated); ``blends`` names where the
    night's blends came from (rerank's ``blends_from``: the tune run or an in-stage fit; "" when
    not recorded), so the gate can tell a retune from a regression."""

    users: int
    known_users: int
    rows: int
    catalog_coverage: float
    metric: float | None
    blends: str = ""

    @property
    def user_coverage(self) -> float:
        return self.users / self.known_users if self.known_users else 0.0

    def as_metadata(self) -> dict[str, str]:
        return {
            "gate.users": str(self.users),
            "gate.known_users": str(self.known_users),
            "gate.rows": str(self.rows),
            "gate.catalog_coverage": repr(self.catalog_coverage),
            "gate.metric": "" if self.metric is None else repr(self.metric),
            "gate.blends": self.blends,
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> PublishStats | None:
        """Read back :meth:`as_metadata` (keys with or without the ``recspark.`` prefix)."""
        values = {key.removeprefix("recspark."): value for key, value in metadata.items()}
        if "gate.users" not in values:
            return None
        metric = values.get("gate.metric") or None
        return cls(
            users=int(values["gate.users"]),
            known_users=int(values["gate.known_users"]),
            rows=int(values["gate.rows"]),
            catalog_coverage=float(values["gate.catalog_coverage"]),
            metric=None if metric is None else float(metric),
            blends=values.get("gate.blends", ""),
        )


def relative_drops(current: PublishStats, previous: PublishStats, max_relative_drop: float) -> dict[str, str]:
    """Check name -> reason for each of users, rows, catalog coverage and the metric that fell
    more than ``max_relative_drop`` (a fraction) below ``previous``; a value missing on either
    side, or a baseline <= 0, is not compared."""
    pairs = {
        "users with recommendations": (current.users, previous.users),
        "rows": (current.rows, previous.rows),
        CATALOG_COVERAGE: (current.catalog_coverage, previous.catalog_coverage),
        "evaluation metric": (current.metric, previous.metric),
    }
    return {
        name: f"{name} fell from {before:g} to {now:g} (more than {max_relative_drop:.0%} below the last published run)"
        for name, (now, before) in pairs.items()
        if now is not None and before is not None and before > 0 and now < before * (1 - max_relative_drop)
    }


def gate_breaches(
    current: PublishStats,
    previous: PublishStats | None,
    min_user_coverage: float,
    max_relative_drop: float,
) -> list[str]:
    """Reasons not to publish, empty when the run passes: user coverage below
    ``min_user_coverage`` (:func:`user_coverage_breaches`), and users, rows, catalog coverage or
    the metric more than ``max_relative_drop`` (a fraction) below the last published run
    (:func:`relative_drops`)."""
    breaches = user_coverage_breaches(current, min_user_coverage)
    if previous is None:
        return breaches
    return breaches + list(relative_drops(current, previous, max_relative_drop).values())


def user_coverage_breaches(current: PublishStats, min_user_coverage: float) -> list[str]:
    """The reason not to publish when fewer than ``min_user_coverage`` of the known users got a
    list (an empty list otherwise)."""
    if current.user_coverage >= min_user_coverage:
        return []
    return [f"user coverage {current.user_coverage:.4f} ({current.users} of {current.known_users} known users) "
            f"is below the minimum {min_user_coverage}"]


@dataclass
class GateSettings:
    """The quality gate: ``min_user_coverage`` (share of known users), ``max_relative_drop`` (a
    fraction), what a check that cannot be made because the evaluation metric is missing
    becomes (``on_missing_metric``), and what a catalog-coverage drop becomes on the first night
    whose blends differ from the baseline's, i.e. after a retune (``on_retuned_coverage_drop``):
    ``breach`` (refuse unless forced) or ``warn`` (a loud warning).

    Why a retune's coverage drop warns by default: the tune picks the blends with the best
    validation NDCG, and a more accurate ranker often concentrates on fewer items (at 5M the
    tuned ranker's coverage fell 27% while its NDCG rose), so refusing would block every first
    night after a tune for a change the operator asked for. Users, rows, user coverage and the
    metric stay gated across a retune: a tune must never lose users or accuracy."""

    min_user_coverage: float = 0.99
    max_relative_drop: float = 0.2
    on_missing_metric: str = "breach"
    on_retuned_coverage_drop: str = "warn"

    def __post_init__(self):
        if not 0 <= self.min_user_coverage <= 1:
            raise ValueError(f"publish.min_user_coverage must be in [0, 1], got {self.min_user_coverage}")
        if not 0 <= self.max_relative_drop <= 1:
            raise ValueError(f"publish.max_relative_drop must be in [0, 1], got {self.max_relative_drop}")
        if self.on_missing_metric not in GATE_ACTIONS:
            raise ValueError(
                f"publish.on_missing_metric must be one of {GATE_ACTIONS}, got {self.on_missing_metric!r}"
            )
        if self.on_retuned_coverage_drop not in GATE_ACTIONS:
            raise ValueError(
                f"publish.on_retuned_coverage_drop must be one of {GATE_ACTIONS}, "
                f"got {self.on_retuned_coverage_drop!r}"
            )


@dataclass
class GateVerdict:
    """``breaches`` refuse the publish (unless forced); ``warnings`` must be logged loudly;
    ``skipped`` names every check that was not made, whichever of the two it became."""

    breaches: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _unprefixed(metadata: dict[str, str]) -> dict[str, str]:
    return {key.removeprefix("recspark."): value for key, value in metadata.items()}


def gate_baseline(history: list[Commit], run_date: str) -> PublishStats | None:
    """The stats to compare tonight (``run_date``, ISO) with: those of the newest unforced
    publish of another run date in ``history`` (newest first), its metric replaced by that of the
    newest unforced publish that has one (a night published without evaluation does not erase
    the metric baseline). A ``--force``d publish is never a baseline. None when there is none."""
    baseline, metric = None, None
    for commit in history:
        values = _unprefixed(commit.metadata)
        if values.get("run_date") == run_date or values.get("forced", "False") == "True":
            continue
        stats = PublishStats.from_metadata(values)
        if stats is None:
            continue
        baseline = baseline or stats
        if stats.metric is not None:
            metric = stats.metric
            break
    if baseline is None:
        return None
    return PublishStats(baseline.users, baseline.known_users, baseline.rows, baseline.catalog_coverage, metric,
                        baseline.blends)


def gate_skipped_checks(current: PublishStats, previous: PublishStats | None) -> tuple[list[str], list[str]]:
    """Checks :func:`gate_breaches` could not make, as (missing metric checks, other checks)."""
    if previous is None:
        return [], ["no earlier unforced publish to compare with: only the user coverage was checked"]
    metric, other = [], []
    if current.metric is None:
        metric.append("evaluation metric: this run date has no evaluation (did evaluate run?)")
    elif previous.metric is None:
        other.append("evaluation metric: no earlier unforced publish has one to compare with")
    for name, before in (("users with recommendations", previous.users), ("rows", previous.rows),
                         (CATALOG_COVERAGE, previous.catalog_coverage)):
        if before <= 0:
            other.append(f"{name}: the baseline has {before:g}")
    return metric, other


def retuned(current: PublishStats, previous: PublishStats | None) -> bool:
    """Tonight's blends differ from the baseline's (both recorded): the first night after a tune."""
    return previous is not None and bool(current.blends) and bool(previous.blends) and current.blends != previous.blends


def evaluate_gate(current: PublishStats, previous: PublishStats | None, settings: GateSettings) -> GateVerdict:
    """:func:`gate_breaches` plus every skipped check: a missing metric is a breach or a warning
    by ``settings.on_missing_metric``; the other skips (first publish, empty baseline) are
    warnings; a catalog-coverage drop after a retune (:func:`retuned`) is a warning unless
    ``settings.on_retuned_coverage_drop`` is ``breach``."""
    missing_metric, other = gate_skipped_checks(current, previous)
    breaches = user_coverage_breaches(current, settings.min_user_coverage)
    warnings = list(other)
    if previous is not None:
        drops = relative_drops(current, previous, settings.max_relative_drop)
        if CATALOG_COVERAGE in drops and retuned(current, previous) and settings.on_retuned_coverage_drop == "warn":
            warnings.append(f"{drops.pop(CATALOG_COVERAGE)}; allowed on the first night after a retune "
                            f"(blends {previous.blends!r} -> {current.blends!r})")
        breaches.extend(drops.values())
    verdict = GateVerdict(breaches=breaches, warnings=warnings, skipped=missing_metric + other)
    if settings.on_missing_metric == "breach":
        verdict.breaches.extend(f"check not made: {m}" for m in missing_metric)
    else:
        verdict.warnings.extend(f"check not made: {m}" for m in missing_metric)
    return verdict


@dataclass(frozen=True)
class LatestSource:
    """The ``recommendations`` commit that ``recommendations_latest`` must hold: its version and
    run date (ISO)."""

    version: int
    run_date: str

    def as_metadata(self) -> dict[str, str]:
        return {"latest.source_version": str(self.version), "latest.source_run_date": self.run_date}


def latest_source(recommendations_history: list[Commit]) -> LatestSource | None:
    """The newest commit (history newest first) of the newest published run date, or None."""
    dated = [(_unprefixed(c.metadata).get("run_date"), c.version) for c in recommendations_history]
    dated = [(run_date, version) for run_date, version in dated if run_date]
    if not dated:
        return None
    run_date, version = max(dated)
    return LatestSource(version, run_date)


def latest_in_step(latest_metadata: dict[str, str] | None, expected: LatestSource | None) -> bool:
    """Whether ``recommendations_latest`` (the metadata of its newest commit; None when the table
    does not exist) was copied from ``expected``. When False, the publish stage rewrites it from
    the dated table's ``expected.run_date`` partition."""
    if expected is None:
        return latest_metadata is None
    values = _unprefixed(latest_metadata or {})
    return values.get("latest.source_version") == str(expected.version) and values.get(
        "latest.source_run_date"
    ) == expected.run_date


class QualityGateError(RuntimeError):
    """The run's recommendations are worse than the last published ones; nothing was published."""


class MismatchedFactorsError(ValueError):
    """``user_factors`` and ``item_factors`` come from different fits."""


def require_same_fit(user_metadata: dict[str, str], item_metadata: dict[str, str]) -> None:
    """Raise :class:`MismatchedFactorsError` unless both factor tables' newest commits were
    written by the same fit (equal ``run_id`` and ``mlflow_run_id`` commit metadata)."""
    user, item = _unprefixed(user_metadata), _unprefixed(item_metadata)
    for key in ("run_id", "mlflow_run_id"):
        if user.get(key) != item.get(key) or user.get(key) is None:
            raise MismatchedFactorsError(
                f"user_factors and item_factors come from different fits ({key} {user.get(key)!r} vs "
                f"{item.get(key)!r}): a train-als run was interrupted between the two writes; re-run train-als"
            )
