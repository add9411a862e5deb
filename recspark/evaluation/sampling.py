"""Seeded user samples for metrics that are means over users (cold-start cohorts, diversity,
serendipity, the EASE search): the same users on every run and partitioning, so the sources (or
grid points) compared in one run are scored on the same users."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def require_user_cap(value: object, name: str) -> None:
    """ValueError naming ``name`` unless ``value`` is a positive integer or None (no cap): the
    ``max_users`` settings that feed :func:`sample_users`."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}: must be a positive integer or null, got {value!r}")


def sample_users(frame: DataFrame, max_users: int | None, seed: int, user_col: str = "user_idx") -> DataFrame:
    """The distinct ``user_col`` values of ``frame``, at most ``max_users`` of them (those with
    the smallest seeded xxhash64, ties by id; None: all), materialised."""
    users = frame.select(user_col).distinct()
    if max_users is not None:
        users = users.orderBy(F.xxhash64(F.col(user_col), F.lit(seed + 1)), user_col).limit(max_users)
    return users.localCheckpoint()
