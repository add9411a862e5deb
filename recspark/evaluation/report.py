"""Rows of the ``metrics`` table and a plain-text model comparison (pure; no table I/O).

A result key ending in ``@k`` (``"ndcg@k"``) is stored as metric ``"ndcg"`` with the cut-off
in the ``k`` column; any other key (``"map"``, ``"rmse"``, ``"n_users"``) is stored as is with
a null ``k``. So ``WHERE metric = 'ndcg' AND k = 10`` selects NDCG@10.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from pyspark.sql import DataFrame, SparkSession

from recspark.schemas import METRICS


_AT_K = "@k"


def metrics_rows(
    results: Mapping[str, float], model: str, k: int, protocol: str, dataset: str, run_id: str
) -> list[tuple]:
    """One :data:`METRICS` tuple per result, sorted by metric name; ``k`` fills the ``k`` column
    of ``@k`` metrics only."""
    rows = []
    for name, value in sorted(results.items()):
        has_cutoff = name.endswith(_AT_K)
        metric = name[: -len(_AT_K)] if has_cutoff else name
        rows.append(
            (run_id, model, metric, k if has_cutoff else None, float(value), protocol, dataset)
        )
    return rows


def metrics_frame(spark: SparkSession, rows: Iterable[Sequence]) -> DataFrame:
    """The :data:`METRICS` DataFrame of ``rows`` (from :func:`metrics_rows`)."""
    return spark.createDataFrame(list(rows), METRICS)


def metric_bar_chart(rows: Iterable[Sequence], metrics: Sequence[str], k: int):
    """A matplotlib figure with one bar group per model and one bar per metric at ``k`` (e.g.
    ``["ndcg", "precision", "recall"]``) from :data:`METRICS` rows; the caller saves or logs it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    field_index = {name: i for i, name in enumerate(METRICS.fieldNames())}
    values: dict[str, dict[str, float]] = {}
    for row in rows:
        model, metric, row_k = (row[field_index[name]] for name in ("model", "metric", "k"))
        if metric in metrics and row_k == k:
            values.setdefault(model, {})[metric] = row[field_index["value"]]
    models = sorted(values)
    figure = Figure(figsize=(1.5 + 1.2 * len(models) * max(1, len(metrics)) / 2, 3.5))
    axes = figure.subplots()
    width = 0.8 / max(1, len(metrics))
    for j, metric in enumerate(metrics):
        heights = [values[model].get(metric, 0.0) for model in models]
        axes.bar([i + j * width for i in range(len(models))], heights, width, label=f"{metric}@{k}")
    axes.set_xticks([i + width * (len(metrics) - 1) / 2 for i in range(len(models))], models)
    axes.set_ylabel("value")
    axes.legend()
    figure.tight_layout()
    return figure


def _format_value(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4f}"


def comparison_table(rows: Iterable[Sequence]) -> str:
    """Plain-text table of :data:`METRICS` rows (tuples or Rows): one line per model (sorted),
    one column per metric (``ndcg@10``, ``map``, ...; sorted by metric then k). Whole numbers
    print without decimals, others with 4; a missing cell prints ``-``.

    Raises ValueError when a model has two values for one column (rows from several runs,
    protocols or datasets): filter to one of each first.
    """
    field_index = {name: i for i, name in enumerate(METRICS.fieldNames())}
    cells: dict[str, dict[tuple[str, int], float]] = {}
    for row in rows:
        model, metric, k = (row[field_index[name]] for name in ("model", "metric", "k"))
        column = (metric, -1 if k is None else k)
        model_cells = cells.setdefault(model, {})
        if column in model_cells:
            label = metric if k is None else f"{metric}@{k}"
            raise ValueError(f"model {model!r} has more than one value for {label!r}")
        model_cells[column] = row[field_index["value"]]

    columns = sorted({column for model_cells in cells.values() for column in model_cells})
    header = ["model"] + [metric if k < 0 else f"{metric}@{k}" for metric, k in columns]
    body = [
        [model] + [
            _format_value(cells[model][column]) if column in cells[model] else "-"
            for column in columns
        ]
        for model in sorted(cells)
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(line: list[str]) -> str:
        first = line[0].ljust(widths[0])
        return " | ".join([first] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])])

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in body)])
