"""The blend chosen on validation: the ranker's inputs cut from the split, and the champion.

* :func:`validation_inputs` -> the rows everything validation-time is built from: ``fit_rows``
  (the train rows minus the validation carve, :func:`recspark.featurize.splits.tuning_frames`),
  the ``validation`` pairs and the ranker's ``labels`` (those pairs with split ``validation``).
  It checks that no test pair of the split is among them, so a change that let test rows reach
  the ranker fails loudly instead of inflating its numbers.
* :func:`validation_ndcg` / :func:`choose_champion`: every candidate list (single sources, the
  grid hybrid, the ranker) scored by mean NDCG@k over the same validation users, users without a
  list counting 0; the best is the champion publish serves. The users should be ones the ranker
  did not learn from (:attr:`recspark.ranker.lambdarank.RankerModel.eval_users`).
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.evaluation.ranking import ranking_metrics_by
from recspark.featurize.splits import tuning_frames
from recspark.ranker.features import KEYS

VALIDATION = "validation"
TEST = "test"


@dataclass
class ValidationInputs:
    """``fit_rows``: interactions_split rows (train only) the validation-time sources fit on;
    ``validation``: (user_idx, item_idx) pairs the blends are tuned on; ``labels``: the same
    pairs with ``split`` = ``validation`` (what :meth:`LearnedRanker.fit` accepts)."""

    fit_rows: DataFrame
    validation: DataFrame
    labels: DataFrame


class LeakedTestRowsError(ValueError):
    """Test pairs reached the validation-time inputs."""


def validation_inputs(split: DataFrame, tuning_ratio: float, split_seed: int,
                      stratify_by: str = "user") -> ValidationInputs:
    """:class:`ValidationInputs` of an ``interactions_split`` frame (user_idx, item_idx, split,
    event_ts, ...); raises :class:`LeakedTestRowsError` when a test pair is among the fit rows or the
    validation pairs."""
    fit_rows, validation = tuning_frames(split, tuning_ratio, split_seed, stratify_by)
    pairs = validation.select(*KEYS).distinct()
    test = split.where(F.col("split") == TEST).select(*KEYS)
    for name, frame in (("fit rows", fit_rows), ("validation pairs", pairs)):
        if frame.select(*KEYS).join(test, KEYS, "left_semi").limit(1).count():
            raise LeakedTestRowsError(f"{name} contain test pairs of interactions_split: the test split must never "
                                 "reach the validation-time models or the ranker")
    return ValidationInputs(fit_rows, pairs, pairs.withColumn("split", F.lit(VALIDATION)))


def validation_ndcg(lists: DataFrame, truth: DataFrame, k: int, users: list[int] | None = None) -> dict[str, float]:
    """``source`` -> mean NDCG@k of its lists (user_idx, item_idx, source, rank) over the users of
    ``truth`` (user_idx, item_idx; restricted to ``users`` when given), a user without a list of
    that source counting 0."""
    if users is not None:
        wanted = truth.sparkSession.createDataFrame([(u,) for u in users], "user_idx int")
        truth = truth.join(F.broadcast(wanted), "user_idx", "left_semi")
    metrics = ranking_metrics_by(lists.where(F.col("rank") <= k), "source", truth.select(*KEYS), k,
                                 "user_idx", "item_idx")
    return {source: m["ndcg@k"] * m["user_coverage"] for source, m in metrics.items()}


def choose_champion(scores: dict[str, float], preference: list[str], tolerance: float = 0.0) -> str:
    """The list with the best validation NDCG; lists within ``tolerance`` of the best count as
    tied, and ties go to the earlier name of ``preference`` (then the higher score, then
    alphabetical)."""
    if not scores:
        raise ValueError("no validation scores to choose a champion from")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    best = max(scores.values())
    tied = [name for name, value in scores.items() if value >= best - tolerance]
    order = {name: i for i, name in enumerate(preference)}
    return min(tied, key=lambda s: (order.get(s, len(order)), -scores[s], s))
