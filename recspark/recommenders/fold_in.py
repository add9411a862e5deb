"""Fold-in: factors for new or changed users against fixed ALS item factors, without a refit.

One regularised least-squares solve per user of the implicit-ALS objective (Hu, Koren &
Volinsky 2008), with the item factors ``Y`` of the last full fit held fixed:

    x_u = (Y^T C_u Y + lambda_u I)^-1 Y^T C_u p_u,   C_u = diag(1 + alpha * r_ui),

computed as ``Y^T Y + sum_i (alpha * |r_ui|) y_i y_i^T`` (``Y^T Y`` once for all users, then
only the user's own items) and ``Y^T C_u p_u = sum_{i: r_ui > 0} (1 + alpha * r_ui) y_i``.
This is exactly the user step of Spark MLlib's implicit ALS (``ALS.computeFactors``), including
its two extensions: ``r <= 0`` adds confidence ``alpha * |r|`` with preference 0, and
``lambda_u = reg_param * n_u`` with ``n_u`` the user's pairs with ``r > 0`` (ALS-WR scaling;
``reg_scaling="none"`` uses ``lambda_u = reg_param``, the objective of the ``implicit`` library).
Since MLlib's last sweep computes user factors from the final item factors, folding in a
training user with the same params reproduces its fitted factors.

The solve runs in Spark: each user's (item, r) pairs are gathered into one row, ``Y`` and
``Y^T Y`` are broadcast once, and ``mapInPandas`` solves a batch of users per Arrow batch with
one stacked ``numpy.linalg.solve``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

REG_SCALINGS = ("mllib", "none")


@dataclass
class FoldInSettings:
    """Params of the fold-in solve; use the params of the full ALS fit the item factors come from.

    reg_param: L2 regularisation, as ``ALSRecommender.reg_param``.
    alpha: confidence = 1 + alpha * r, as ``ALSRecommender.alpha``.
    reg_scaling: "mllib" (lambda * n_u, matches ALSRecommender / the mllib engine) or "none"
        (lambda, matches the implicit library's objective).
    implicit_rating_col: the ``r`` column of the interactions (default ``confidence``).
    user_col, item_col: integer id columns.
    max_share_folded_in: drift rule, a full retrain is due when more than this share of the
        users with factors were folded in since the last full fit (see needs_full_retrain).
    """

    reg_param: float = 0.1
    alpha: float = 1.0
    reg_scaling: str = "mllib"
    implicit_rating_col: str = "confidence"
    user_col: str = "user_idx"
    item_col: str = "item_idx"
    max_share_folded_in: float = 0.2

    def __post_init__(self) -> None:
        if self.reg_param < 0:
            raise ValueError(f"fold_in.reg_param must be >= 0, got {self.reg_param!r}")
        if self.alpha < 0:
            raise ValueError(f"fold_in.alpha must be >= 0, got {self.alpha!r}")
        if self.reg_scaling not in REG_SCALINGS:
            raise ValueError(f"fold_in.reg_scaling must be one of {list(REG_SCALINGS)}, got {self.reg_scaling!r}")
        if not 0.0 <= self.max_share_folded_in <= 1.0:
            raise ValueError(f"fold_in.max_share_folded_in must be in [0, 1], got {self.max_share_folded_in!r}")


def solve_user_factors(
    item_matrix: np.ndarray,
    gram: np.ndarray,
    item_positions: list[np.ndarray],
    ratings: list[np.ndarray],
    settings: FoldInSettings,
) -> np.ndarray:
    """Factors of a batch of users (n_users x rank, float64), numpy only.

    item_matrix: Y (n_items x rank); gram: Y^T Y; item_positions[u]: row numbers in Y of user
    u's items; ratings[u]: their r values (same length). A user with no pair with r > 0 gets
    the solution of its system anyway (zero when it has no pairs at all).
    """
    rank = item_matrix.shape[1]
    lhs = np.empty((len(item_positions), rank, rank))
    rhs = np.empty((len(item_positions), rank))
    for u, (positions, r) in enumerate(zip(item_positions, ratings)):
        y = item_matrix[positions]
        extra_confidence = settings.alpha * np.abs(r)
        positive = r > 0
        lhs[u] = gram + (y * extra_confidence[:, None]).T @ y
        rhs[u] = ((1.0 + extra_confidence[positive])[:, None] * y[positive]).sum(axis=0)
        n_u = int(positive.sum()) if settings.reg_scaling == "mllib" else 1
        lhs[u][np.diag_indices(rank)] += settings.reg_param * n_u
    return np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0]


def fold_in_users(interactions: DataFrame, item_factors: DataFrame, settings: FoldInSettings) -> DataFrame:
    """Factors of the users in ``interactions`` against fixed ``item_factors``.

    interactions: (user_col, item_col, implicit_rating_col) rows, one per pair; pass all the
        current pairs of the users to fold in (new and old), not only the new ones.
    item_factors: (item_col int, ``features`` array<float>), e.g. ``ALSRecommenderModel.item_factors``.
    Output: (user_col int, ``features`` array<float>), one row per user with at least one
    pair on an item that has factors (pairs on other items are ignored), the same schema as
    ``ALSRecommenderModel.user_factors``.
    """
    user_col, item_col, r_col = settings.user_col, settings.item_col, settings.implicit_rating_col
    missing = [c for c in (user_col, item_col, r_col) if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lack column(s) {missing}; they have {interactions.columns}")
    spark = interactions.sparkSession
    factors = item_factors.select(item_col, "features").toPandas()
    if factors.empty:
        raise ValueError("item_factors is empty")
    item_ids = factors[item_col].to_numpy(dtype=np.int64)
    item_matrix = np.stack(factors["features"].to_list()).astype(np.float64)
    position_of = np.full(int(item_ids.max()) + 1, -1, dtype=np.int64)
    position_of[item_ids] = np.arange(len(item_ids))
    shared = spark.sparkContext.broadcast((item_matrix, item_matrix.T @ item_matrix, position_of))

    def solve_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        matrix, gram, lookup = shared.value
        for batch in batches:
            positions, ratings = [], []
            for items, r in zip(batch["items"], batch["r"]):
                items = np.asarray(items, dtype=np.int64)
                known = (items >= 0) & (items < len(lookup))
                known[known] = lookup[items[known]] >= 0
                positions.append(lookup[items[known]])
                ratings.append(np.asarray(r, dtype=np.float64)[known])
            solved = solve_user_factors(matrix, gram, positions, ratings, settings)
            has_items = np.array([len(p) > 0 for p in positions], dtype=bool)
            yield pd.DataFrame(
                {
                    user_col: batch[user_col].to_numpy()[has_items],
                    "features": list(solved[has_items].astype(np.float32)),
                }
            )

    per_user = (
        interactions.where(F.col(r_col).isNotNull())
        .groupBy(F.col(user_col).cast("int").alias(user_col))
        .agg(
            F.collect_list(F.col(item_col).cast("long")).alias("items"),
            F.collect_list(F.col(r_col).cast("double")).alias("r"),
        )
    )
    return per_user.mapInPandas(solve_batches, f"{user_col} int, features array<float>")


def changed_users(before: DataFrame, after: DataFrame, settings: FoldInSettings) -> DataFrame:
    """(user_col) of the users whose pairs differ between two interaction frames (user_col,
    item_col, implicit_rating_col): a pair added, removed or with another r, and users present in
    only one of them (new users)."""
    columns = [settings.user_col, settings.item_col, settings.implicit_rating_col]
    old, new = before.select(columns), after.select(columns)
    return old.subtract(new).select(settings.user_col).union(new.subtract(old).select(settings.user_col)).distinct()


def merge_user_factors(user_factors: DataFrame, folded_in: DataFrame, user_col: str = "user_idx") -> DataFrame:
    """``user_factors`` with the rows of the users in ``folded_in`` replaced by (or added from)
    ``folded_in``; both (user_col int, features array<float>)."""
    kept = user_factors.join(folded_in.select(user_col), user_col, "left_anti")
    return kept.unionByName(folded_in.select(user_col, "features"))


def needs_full_retrain(
    share_folded_in: float,
    threshold: float,
    validation_ndcg_drop: float | None = None,
    max_ndcg_drop: float | None = None,
) -> bool:
    """Drift rule: True when more than ``threshold`` of the users with factors were folded in
    since the last full fit, or when the validation NDCG has dropped by more than
    ``max_ndcg_drop`` (absolute) since then (both given, otherwise ignored)."""
    if not 0.0 <= share_folded_in <= 1.0:
        raise ValueError(f"share_folded_in must be in [0, 1], got {share_folded_in!r}")
    if share_folded_in > threshold:
        log.info("full ALS retrain due: %.1f%% of users folded in > %.1f%%", 100 * share_folded_in, 100 * threshold)
        return True
    if validation_ndcg_drop is not None and max_ndcg_drop is not None and validation_ndcg_drop > max_ndcg_drop:
        log.info("full ALS retrain due: validation NDCG dropped %.4f > %.4f", validation_ndcg_drop, max_ndcg_drop)
        return True
    return False
