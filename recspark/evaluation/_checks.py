"""Input checks shared by the evaluation functions (schema only, they run no Spark job)."""
from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import DataFrame


def require_columns(frame: DataFrame, columns: Iterable[str], frame_name: str) -> None:
    """Raise ValueError naming the columns of ``columns`` that ``frame`` lacks."""
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{frame_name} lacks column(s) {missing}; it has {frame.columns}")


def require_same_types(
    left: DataFrame, right: DataFrame, columns: Iterable[str], left_name: str, right_name: str
) -> None:
    """Raise ValueError when a join column has different types in the two frames.

    Spark would otherwise cast silently (``"1" = 1`` matches, ``"01" = 1`` too), so a string id
    frame joined with an int id frame is treated as a caller error.
    """
    for name in columns:
        left_type, right_type = left.schema[name].dataType, right.schema[name].dataType
        if left_type != right_type:
            raise ValueError(
                f"column {name!r} is {left_type.simpleString()} in {left_name} "
                f"but {right_type.simpleString()} in {right_name}"
            )
