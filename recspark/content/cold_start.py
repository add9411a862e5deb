"""Cold-start evaluation: how content and popularity serve new items and near-empty users.

Two cohorts, drawn by a seeded hash of the id (deterministic, independent of partitioning):

``cold_items``
    A share of the items is treated as new: every interaction with them is removed from the
    training history (so no profile, popularity or seen list knows them). Each user with an
    interaction on a cold item is recommended ``k`` items from the whole catalogue; relevant
    are all their pairs on cold items (train and test: to the model every one is in the future).
    Popularity can never reach a new item, so its metrics are 0 by construction; content can.
``cold_users``
    A share of the users keeps only their earliest ``keep`` history items (by event time, then
    item id); other users keep everything. The cohort's users are recommended ``k`` items from
    models fitted on that reduced history, and scored against their test pairs.

:func:`cold_start_results` returns ``{"<cohort>/<model>": metrics}`` in the shape of
:func:`recspark.evaluation.suite.evaluate_recommendations`; the evaluate stage writes them to
the metrics table with those labels as ``model``.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.content.recommend import ContentRecommender
from recspark.evaluation.sampling import sample_users
from recspark.evaluation.suite import evaluate_recommendations_by
from recspark.recommenders.popularity import PopularityRecommender

_HASH_BUCKETS = 10_000


def pick_share(ids: DataFrame, id_col: str, ratio: float, seed: int) -> DataFrame:
    """The distinct ``id_col`` values whose seeded xxhash64 falls in the first ``ratio`` of
    :data:`_HASH_BUCKETS` buckets (about ``ratio`` of them)."""
    if not 0 <= ratio < 1:
        raise ValueError(f"cold-start ratio must be in [0, 1), got {ratio!r}")
    bucket = F.pmod(F.xxhash64(F.col(id_col), F.lit(seed)), F.lit(_HASH_BUCKETS))
    return ids.select(id_col).distinct().where(bucket < F.lit(int(round(ratio * _HASH_BUCKETS))))


def cold_item_cohort(history: DataFrame, test: DataFrame, cold_items: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(history without the cold items, truth = every (user_idx, item_idx) pair on a cold item)."""
    warm_history = history.join(cold_items.select("item_idx"), "item_idx", "left_anti")
    pairs = history.select("user_idx", "item_idx").unionByName(test.select("user_idx", "item_idx"))
    return warm_history, pairs.join(cold_items.select("item_idx"), "item_idx").distinct()


def near_empty_history(history: DataFrame, cold_users: DataFrame, keep: int) -> DataFrame:
    """``history`` where each cold user keeps only their earliest ``keep`` items (event time,
    then item id); other users' rows are unchanged."""
    if keep < 0:
        raise ValueError(f"cold_user_history must be >= 0, got {keep!r}")
    order = Window.partitionBy("user_idx").orderBy("event_ts", "item_idx")
    flagged = history.join(cold_users.select("user_idx").withColumn("_cold", F.lit(True)), "user_idx", "left")
    return (
        flagged.withColumn("_n", F.row_number().over(order))
        .where(F.col("_cold").isNull() | (F.col("_n") <= keep))
        .drop("_cold", "_n")
    )


MODEL_COL = "model"


def _labelled_lists(content_lists: DataFrame, popularity_lists: DataFrame) -> DataFrame:
    """Both models' (user_idx, item_idx, rank) lists with a ``model`` column, materialised."""
    columns = ["user_idx", "item_idx", "rank"]
    return content_lists.select(*columns, F.lit("content").alias(MODEL_COL)).unionByName(
        popularity_lists.select(*columns, F.lit("popularity").alias(MODEL_COL))
    ).localCheckpoint()


def cold_start_results(
    history: DataFrame,
    test: DataFrame,
    embeddings: DataFrame,
    k: int,
    n_items: int,
    *,
    cold_item_ratio: float,
    cold_user_ratio: float,
    cold_user_history: int,
    seed: int,
    popularity_shrinkage: float,
    half_life_days: float | None,
    center_embeddings: bool = True,
    new_item_neighbours: int = 1,
    embedding_dimensions: int | None = None,
    item_vectors: DataFrame | None = None,
    max_users: int | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of content and popularity on the cold cohorts (see the module docstring).

    Inputs: ``history`` and ``test`` (user_idx, item_idx, event_ts), ``embeddings`` (item_idx,
    embedding); ``item_vectors`` (item_idx, features) for diversity. A ratio of 0 skips its
    cohort; a cohort without relevant pairs is skipped too. ``max_users``: each cohort is
    scored on at most this many of its users (:func:`sample_users`; None: all).
    """
    results: dict[str, dict[str, float]] = {}
    content = ContentRecommender(k, popularity_shrinkage, half_life_days, center_embeddings, new_item_neighbours,
                                 embedding_dimensions)
    popularity = PopularityRecommender(k=k)

    def cohort(label: str, cohort_history: DataFrame, users: DataFrame, truth: DataFrame) -> None:
        """Both models fit on ``cohort_history`` and recommend to ``users``; scored on ``truth``."""
        lists = _labelled_lists(
            content.fit(cohort_history, embeddings).recommend(users, seen=cohort_history),
            popularity.fit(cohort_history).recommend(users, seen=cohort_history),
        )
        scored = evaluate_recommendations_by(lists, MODEL_COL, truth, cohort_history, k, n_items, item_vectors)
        results.update({f"{label}/{model}": values for model, values in scored.items()})

    if cold_item_ratio > 0:
        cold_items = pick_share(embeddings, "item_idx", cold_item_ratio, seed)
        warm_history, truth = (frame.localCheckpoint() for frame in cold_item_cohort(history, test, cold_items))
        users = sample_users(truth, max_users, seed)
        truth = truth.join(users, "user_idx", "left_semi")
        if users.limit(1).count():
            cohort("cold_items", warm_history, users, truth)
    if cold_user_ratio > 0:
        cold_users = sample_users(pick_share(history, "user_idx", cold_user_ratio, seed), max_users, seed)
        reduced = near_empty_history(history, cold_users, cold_user_history).localCheckpoint()
        truth = test.join(cold_users, "user_idx").select("user_idx", "item_idx").localCheckpoint()
        if truth.limit(1).count():
            cohort("cold_users", reduced, cold_users, truth)
    return results
