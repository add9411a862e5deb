"""Train / validation / test splits of the aggregated (user, item) frame.

Splits operate on one row per (user_id, item_id) (the output of
:func:`recspark.featurize.features.aggregate_user_item`), so a pair never lands in two splits;
its ``event_ts`` is the time of its last event. Every method is deterministic: the same input
and config give the same assignment on every run and for any partitioning.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLIT_METHODS = ("time", "leave_last_n", "random_stratified")
TIME_ORDERED_METHODS = ("time", "leave_last_n")  # need event times that differ
STRATIFY_COLUMNS = {"user": ("user_id", "item_id"), "item": ("item_id", "user_id")}
# percentile_approx accuracy for computed time cutoffs: rank error at most 1e-5 of the rows.
PERCENTILE_ACCURACY = 100_000


@dataclass
class SplitSettings:
    """Train/validation/test split (the ``featurize.split`` config section); every method is
    deterministic for a given seed. Validated on construction: only the fields of ``method``
    are checked, so switching methods never trips over another method's settings."""

    method: str = "random_stratified"  # time | leave_last_n | random_stratified
    seed: int = 42
    # random_stratified: per-group fractions (train gets the rest)
    stratify_by: str = "user"  # user | item
    validation_ratio: float = 0.0
    test_ratio: float = 0.25
    # leave_last_n: the last n events of each user go to test, the n before them to validation
    n: int = 1
    leave_last_n_validation: bool = True  # false: no validation split, only the n test events
    min_user_interactions: int = 3  # users with fewer events stay entirely in train
    # time: explicit ISO cutoffs, or fractions of the event-time range when cutoffs are unset
    validation_start: str | None = None
    test_start: str | None = None
    validation_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise ValueError(f"unknown split method {self.method!r}; expected one of {list(SPLIT_METHODS)}")
        if self.method == "random_stratified":
            if self.stratify_by not in STRATIFY_COLUMNS:
                raise ValueError(
                    f"split.stratify_by must be one of {sorted(STRATIFY_COLUMNS)}, got {self.stratify_by!r}"
                )
            _check_fractions(self.test_ratio, self.validation_ratio, "test_ratio", "validation_ratio")
        elif self.method == "leave_last_n":
            if self.n < 1:
                raise ValueError(f"split.n must be >= 1, got {self.n}")
            held_out = self.n * (2 if self.leave_last_n_validation else 1)
            if self.min_user_interactions <= held_out:
                raise ValueError(
                    f"split.min_user_interactions must be > {held_out} (the pairs held out per user) "
                    f"so every split user keeps a training pair, got {self.min_user_interactions}"
                )
        elif self.test_start is not None:
            test_start = _parse_cutoff(self.test_start, "test_start")
            validation_start = self.validation_start and _parse_cutoff(self.validation_start, "validation_start")
            if validation_start is not None and validation_start >= test_start:
                raise ValueError(
                    f"split.validation_start ({self.validation_start}) must be earlier than "
                    f"split.test_start ({self.test_start})"
                )
        elif self.validation_start is not None:
            raise ValueError("split.validation_start is set but split.test_start is not; set both")
        else:
            _check_fractions(self.test_fraction, self.validation_fraction, "test_fraction", "validation_fraction")


def split_interactions(user_item: DataFrame, split: SplitSettings) -> DataFrame:
    """Add a ``split`` column (``train`` | ``validation`` | ``test``) to ``user_item``.

    ``user_item`` needs ``user_id``, ``item_id`` and ``event_ts``; its other columns are kept.
    ``split.method`` picks :func:`time_split`, :func:`leave_last_n_split` or
    :func:`random_stratified_split` (``split`` was validated when it was built). The time-ordered
    methods refuse data whose pairs all share one ``event_ts`` (:func:`require_event_time_spread`).
    """
    methods = {"time": time_split, "leave_last_n": leave_last_n_split, "random_stratified": random_stratified_split}
    if split.method in TIME_ORDERED_METHODS:
        require_event_time_spread(user_item, f"featurize.split.method {split.method}")
    return methods[split.method](user_item, split)


def require_event_time_spread(user_item: DataFrame, needed_by: str) -> None:
    """ValueError naming ``needed_by`` when every row of ``user_item`` has the same ``event_ts``
    (or none): the case of a source without event times whose ``event_ts`` was filled with one
    value (``event_time: run_date`` or ``constant``), where "earlier" and "later" mean nothing.
    One small Spark job (at most two distinct values are looked for)."""
    values = user_item.where(F.col("event_ts").isNotNull()).select("event_ts").distinct().limit(2).count()
    if values < 2:
        raise ValueError(
            f"{needed_by} orders pairs by event time, but every pair has the same event_ts (a source "
            f"without event times, filled by event_time: run_date or constant?); use featurize.split.method "
            f"random_stratified, or give the source its event times"
        )


def _parse_cutoff(value: str, name: str) -> float:
    """Epoch seconds of an ISO date or datetime; without a time zone it is read as UTC."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"split.{name} must be an ISO date or datetime, got {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _check_fractions(first: float, second: float, first_name: str, second_name: str) -> None:
    for value, name in ((first, first_name), (second, second_name)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"split.{name} must be in [0, 1), got {value}")
    if first + second >= 1.0:
        raise ValueError(
            f"split.{first_name} + split.{second_name} must be < 1 to leave training data, "
            f"got {first} + {second}"
        )


def _label(is_test: Column, is_validation: Column) -> Column:
    return F.when(is_test, TEST).when(is_validation, VALIDATION).otherwise(TRAIN)


def time_split(user_item: DataFrame, split: SplitSettings) -> DataFrame:
    """Global time split on ``event_ts``.

    Explicit cutoffs when ``split.test_start`` is set (ISO date/datetime, UTC when no zone is
    given): ``event_ts >= test_start`` is test, ``validation_start <= event_ts < test_start`` is
    validation (no validation when ``validation_start`` is unset), the rest train.

    Otherwise cutoffs are quantiles of the pairs' ``event_ts``: with ``q(p)`` the p-quantile,
    ``event_ts > q(1 - test_fraction)`` is test and
    ``q(1 - test_fraction - validation_fraction) < event_ts <= q(1 - test_fraction)`` is
    validation, so roughly the last ``test_fraction`` of pairs are test and the
    ``validation_fraction`` before them validation (pairs tied at a cutoff go to the earlier
    split). Quantiles use ``percentile_approx`` with accuracy ``PERCENTILE_ACCURACY``: exact for
    frames below that many rows, else within a rank error of 1/accuracy of the row count; set
    explicit cutoffs when the boundary must be exactly reproducible on large data.
    """
    event_seconds = F.col("event_ts").cast("double")
    if split.test_start is not None:
        test_start = _parse_cutoff(split.test_start, "test_start")
        if split.validation_start is None:
            return user_item.withColumn("split", _label(event_seconds >= test_start, F.lit(False)))
        validation_start = _parse_cutoff(split.validation_start, "validation_start")
        return user_item.withColumn(
            "split", _label(event_seconds >= test_start, event_seconds >= validation_start)
        )
    # Rounded so float noise does not move a quantile (1 - 0.2 - 0.2 is 0.6000000000000001).
    test_quantile = round(1.0 - split.test_fraction, 12)
    validation_quantile = round(1.0 - split.test_fraction - split.validation_fraction, 12)
    cutoffs = user_item.agg(
        F.percentile_approx(
            event_seconds, [validation_quantile, test_quantile], PERCENTILE_ACCURACY
        ).alias("_cutoffs")
    )
    return (
        user_item.crossJoin(F.broadcast(cutoffs))
        .withColumn(
            "split",
            _label(event_seconds > F.col("_cutoffs")[1], event_seconds > F.col("_cutoffs")[0]),
        )
        .drop("_cutoffs")
    )


def leave_last_n_split(user_item: DataFrame, split: SplitSettings) -> DataFrame:
    """Per user, the last ``n`` pairs go to test and, when ``split.leave_last_n_validation``,
    the ``n`` before them to validation; the rest is train.

    "Last" orders a user's pairs by ``event_ts`` then ``item_id`` (of two pairs with the same
    time, the larger item_id counts as later). Users with fewer than
    ``split.min_user_interactions`` pairs stay entirely in train; that threshold must leave
    every split user at least one training pair (``> n``, or ``> 2n`` with validation).
    """
    held_out = split.n * (2 if split.leave_last_n_validation else 1)
    latest_first = Window.partitionBy("user_id").orderBy(
        F.col("event_ts").desc(), F.col("item_id").desc()
    )
    position = F.row_number().over(latest_first)
    user_pairs = F.count(F.lit(1)).over(Window.partitionBy("user_id"))
    eligible = user_pairs >= split.min_user_interactions
    is_validation = F.lit(split.leave_last_n_validation) & (position <= held_out)
    return user_item.withColumn(
        "split", _label(eligible & (position <= split.n), eligible & is_validation)
    )


def _exact_ratio(ratio: float) -> Column:
    """The ratio as a decimal literal, so ``0.15 * 10`` is 1.5 (rounds to 2), not 1.4999..."""
    return F.lit(float(ratio)).cast("decimal(20,10)")


def random_stratified_split(user_item: DataFrame, split: SplitSettings) -> DataFrame:
    """Seeded per-group random split (per user, or per item with ``stratify_by: item``).

    Within each group of n pairs, pairs are shuffled by ``xxhash64(seed, user_id, item_id)``
    (ties by the other id), not ``rand()``, so the order depends only on the seed and the ids,
    never on partitioning. The first ``round(test_ratio * n)`` pairs are test, the next
    ``round(validation_ratio * n)`` validation, the rest train; rounding is half-up on the
    exact decimal ratio (0.25 * 2 = 0.5 -> 1). This is the per-user protocol of Microsoft
    Recommenders' ``python_stratified_split`` (default 75/25), with its cumulative rounding
    replaced by per-split rounding.
    """
    group_col, other_col = STRATIFY_COLUMNS[split.stratify_by]
    shuffle_key = F.xxhash64(F.lit(split.seed).cast("long"), F.col("user_id"), F.col("item_id"))
    shuffled = Window.partitionBy(group_col).orderBy(shuffle_key, F.col(other_col))
    position = F.row_number().over(shuffled)
    group_size = F.count(F.lit(1)).over(Window.partitionBy(group_col))
    n_test = F.round(_exact_ratio(split.test_ratio) * group_size)
    n_validation = F.round(_exact_ratio(split.validation_ratio) * group_size)
    return user_item.withColumn(
        "split", _label(position <= n_test, position <= n_test + n_validation)
    )


def attach_indexes(df: DataFrame, user_index: DataFrame, item_index: DataFrame) -> DataFrame:
    """Add ``user_idx`` and ``item_idx`` to a frame with ``user_id`` and ``item_id``.

    Inner joins: every id is indexed because the index tables are built from the same
    interactions (and items) that produced ``df``; a row whose id is missing from an index is
    dropped rather than given a null index.
    """
    with_users = df.join(user_index, on="user_id", how="inner")
    return with_users.join(item_index, on="item_id", how="inner")


def describe_split(split: SplitSettings) -> str:
    """A short label of the evaluation protocol a split implements, for the metrics table:
    ``random_stratified(by=user,test=0.25,validation=0.0,seed=42)``, ``leave_last_n(n=1)``,
    ``time(validation_start=...,test_start=...)`` or ``time(validation=0.1,test=0.1)``."""
    if split.method == "random_stratified":
        return (
            f"random_stratified(by={split.stratify_by},test={split.test_ratio},"
            f"validation={split.validation_ratio},seed={split.seed})"
        )
    if split.method == "leave_last_n":
        return f"leave_last_n(n={split.n},validation={str(split.leave_last_n_validation).lower()})"
    if split.validation_start or split.test_start:
        return f"time(validation_start={split.validation_start},test_start={split.test_start})"
    return f"time(validation={split.validation_fraction},test={split.test_fraction})"


def tuning_frames(split: DataFrame, tuning_ratio: float, split_seed: int,
                  stratify_by: str = "user") -> tuple[DataFrame, DataFrame]:
    """(tuning train, validation) rows of an ``interactions_split`` frame (user_idx, item_idx,
    split, ...): its ``validation`` rows when it has any, else a ``tuning_ratio`` share of its
    ``train`` rows per ``stratify_by`` (``user`` or ``item``: the test split's stratification, see
    :func:`carve_stratification`) drawn with seed ``split_seed + 1``. The test rows are never
    returned, and equal arguments give equal carves, so ALS and EASE tuning, deep early stopping
    and the blends all see the same validation rows."""
    validation = split.where(F.col("split") == VALIDATION)
    if validation.limit(1).count():
        return split.where(F.col("split") == TRAIN), validation
    carved = random_stratified_split(
        split.where(F.col("split") == TRAIN).drop("split"),
        SplitSettings(method="random_stratified", stratify_by=stratify_by, test_ratio=tuning_ratio, seed=split_seed + 1),
    )
    return carved.where(F.col("split") == TRAIN), carved.where(F.col("split") == TEST)


def carve_stratification(split: SplitSettings) -> str:
    """How a validation carve of train mirrors the test ``split``: per item under a per-item
    random split (the carve then holds out a share of each item's pairs, as test does), per user
    under every other protocol."""
    return split.stratify_by if split.method == "random_stratified" else "user"


def split_protocol(metadata: dict[str, str]) -> tuple[str, int]:
    """(protocol label, split seed) from ``interactions_split``'s latest commit ``metadata``
    (``recspark.split.protocol`` / ``recspark.split.seed``, written by featurize); ValueError
    when the table was written by an older featurize."""
    try:
        return metadata["recspark.split.protocol"], int(metadata["recspark.split.seed"])
    except KeyError:
        raise ValueError("interactions_split's latest commit lacks the split protocol in its metadata; "
                         "re-run the featurize stage") from None


def split_carve(metadata: dict[str, str]) -> tuple[int, str]:
    """(split seed, carve stratification) for :func:`tuning_frames` from ``interactions_split``'s
    latest commit ``metadata``; a table written before featurize recorded
    ``recspark.split.carve_stratify_by`` is carved per user."""
    _, seed = split_protocol(metadata)
    return seed, metadata.get("recspark.split.carve_stratify_by", "user")
