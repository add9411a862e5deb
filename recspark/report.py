"""The run report: one self-contained HTML page (plots inlined as PNG) from small pandas frames.

Pure: the ``report`` stage collects the inputs (a few thousand rows at most) and writes the page.
Sections, each present when its input is:

1. model comparison at the newest run date (bar chart + table of every metric at ``k``);
2. NDCG@k per model across run dates (how the nightly runs trend);
3. stage wall times and driver peak memory of the newest run date;
4. what was published: share of recommendations per item-popularity decile (popularity bias),
   catalog coverage and the share of each source;
5. compression trade-off (throughput vs NDCG relative to the fp32 model), when measured.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import pandas as pd


@dataclass
class ReportSettings:
    """The HTML run report (the ``report`` config section)."""

    output_dir: str = "reports"  # the page goes to <output_dir>/recspark-report-<run date>.html

    def __post_init__(self) -> None:
        if not self.output_dir.strip():
            raise ValueError("output_dir: must not be empty")


@dataclass
class ReportInputs:
    """Inputs of :func:`render_report`.

    metrics: the ``metrics`` table (run_date, model, metric, k, value, protocol, dataset).
    stage_runs: the ``stage_runs`` table (run_date, stage, step, wall_time_s, peak_rss_mib).
    recommendations: the published lists of one date (item_id, source), or None.
    item_popularity: training interactions per item (item_id, n_users), or None.
    compression: one row per variant (variant, size_mib, samples_per_s, relative_ndcg), or None.
    """

    metrics: pd.DataFrame
    stage_runs: pd.DataFrame
    k: int
    recommendations: pd.DataFrame | None = None
    item_popularity: pd.DataFrame | None = None
    compression: pd.DataFrame | None = None


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(7.5, 3.6))


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=96)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, classes="grid", na_rep="-")


def model_comparison(metrics: pd.DataFrame, k: int) -> tuple[str, pd.DataFrame]:
    """(bar chart, wide table) of the newest run date: one row per model evaluated at ``k``, one
    column per metric at ``k`` plus the metrics without a cut-off (stage efficiency rows, which
    have no ranking metric, are left to :func:`stage_timings`)."""
    newest = metrics[metrics["run_date"] == metrics["run_date"].max()]
    ranked_models = newest.loc[newest["k"] == k, "model"].unique()
    newest = newest[newest["model"].isin(ranked_models)]
    at_k = newest[(newest["k"] == k) | newest["k"].isna()].copy()
    at_k["column"] = [m if pd.isna(c) else f"{m}@{int(c)}" for m, c in zip(at_k["metric"], at_k["k"])]
    wide = at_k.pivot_table(index="model", columns="column", values="value", aggfunc="last").reset_index()
    figure = _figure()
    axes = figure.subplots()
    shown = [c for c in (f"ndcg@{k}", f"precision@{k}", f"recall@{k}", f"map@{k}") if c in wide.columns]
    width = 0.8 / max(1, len(shown))
    for j, column in enumerate(shown):
        axes.bar([i + j * width for i in range(len(wide))], wide[column].fillna(0.0), width, label=column)
    axes.set_xticks([i + width * (len(shown) - 1) / 2 for i in range(len(wide))], wide["model"], rotation=20)
    axes.set_ylabel("value")
    axes.legend(fontsize="small")
    return _png(figure), wide


def metric_trend(metrics: pd.DataFrame, k: int, metric: str = "ndcg") -> str | None:
    """Line chart of ``metric@k`` per model over run dates; None with fewer than two dates."""
    series = metrics[(metrics["metric"] == metric) & (metrics["k"] == k)]
    if series["run_date"].nunique() < 2:
        return None
    figure = _figure()
    axes = figure.subplots()
    for model, rows in series.sort_values("run_date").groupby("model"):
        axes.plot(pd.to_datetime(rows["run_date"]), rows["value"], marker="o", label=model)
    axes.set_ylabel(f"{metric}@{k}")
    axes.legend(fontsize="small")
    figure.autofmt_xdate()
    return _png(figure)


def stage_timings(stage_runs: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """(horizontal bar chart, table) of whole-stage wall time (s) and driver peak RSS (MiB) on
    the newest run date; a stage run twice that day shows its last run."""
    newest = stage_runs[stage_runs["run_date"] == stage_runs["run_date"].max()]
    stages = (
        newest[newest["step"] == newest["stage"]]
        .sort_values("finished_at")
        .groupby("stage", sort=False)
        .last()
        .reset_index()[["stage", "wall_time_s", "peak_rss_mib"]]
    )
    figure = _figure()
    axes = figure.subplots()
    axes.barh(stages["stage"], stages["wall_time_s"])
    axes.invert_yaxis()
    axes.set_xlabel("wall time (s)")
    return _png(figure), stages


def popularity_bias(recommendations: pd.DataFrame, item_popularity: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """(bar chart, table): the share of recommendation slots going to each decile of items by
    training popularity (decile 1 = the most popular tenth of the catalog); unbiased lists give
    0.1 each."""
    ranked = item_popularity.sort_values(["n_users", "item_id"], ascending=[False, True]).reset_index(drop=True)
    ranked["decile"] = (ranked.index * 10 // max(1, len(ranked))) + 1
    slots = recommendations[["item_id"]].merge(ranked[["item_id", "decile"]], on="item_id", how="left")
    shares = (
        slots["decile"].fillna(10).astype(int).value_counts(normalize=True)
        .reindex(range(1, 11), fill_value=0.0).rename_axis("popularity_decile").reset_index(name="share")
    )
    figure = _figure()
    axes = figure.subplots()
    axes.bar(shares["popularity_decile"], shares["share"])
    axes.axhline(0.1, color="grey", linestyle="--", linewidth=1)
    axes.set_xlabel("item popularity decile (1 = most popular)")
    axes.set_ylabel("share of recommendations")
    axes.set_xticks(range(1, 11))
    return _png(figure), shares


def compression_tradeoff(compression: pd.DataFrame) -> str:
    """Scatter of inference throughput vs NDCG relative to the fp32 model, one point per variant."""
    figure = _figure()
    axes = figure.subplots()
    axes.scatter(compression["samples_per_s"], compression["relative_ndcg"])
    for _, row in compression.iterrows():
        axes.annotate(str(row["variant"]), (row["samples_per_s"], row["relative_ndcg"]), fontsize="small")
    axes.set_xlabel("inference throughput (samples/s)")
    axes.set_ylabel("NDCG relative to fp32")
    return _png(figure)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table.grid { border-collapse: collapse; font-size: 0.85em; } table.grid td, table.grid th
{ padding: 0.25em 0.6em; border-bottom: 1px solid #eee; text-align: right; }
img { max-width: 100%; } .note { color: #666; font-size: 0.9em; }
"""


def render_report(inputs: ReportInputs, title: str) -> str:
    """The whole HTML page (no external files, scripts or fonts)."""
    sections = []
    if inputs.metrics.empty:
        sections.append("<h2>Models</h2><p class='note'>No evaluation has run yet (metrics table is empty).</p>")
    else:
        chart, wide = model_comparison(inputs.metrics, inputs.k)
        newest = inputs.metrics["run_date"].max()
        protocol = ", ".join(sorted(inputs.metrics.loc[inputs.metrics["run_date"] == newest, "protocol"].unique()))
        sections.append(
            f"<h2>Models on {html.escape(str(newest))}</h2><p class='note'>protocol: {html.escape(protocol)}</p>"
            f"{chart}{_table(wide)}"
        )
        trend = metric_trend(inputs.metrics, inputs.k)
        sections.append(
            f"<h2>NDCG@{inputs.k} across runs</h2>"
            + (trend or "<p class='note'>One run date so far: the trend appears from the second night.</p>")
        )
    if not inputs.stage_runs.empty:
        chart, stages = stage_timings(inputs.stage_runs)
        sections.append(f"<h2>Stage timings</h2>{chart}{_table(stages)}")
    if inputs.recommendations is not None and inputs.item_popularity is not None and not inputs.recommendations.empty:
        chart, shares = popularity_bias(inputs.recommendations, inputs.item_popularity)
        coverage = inputs.recommendations["item_id"].nunique() / max(1, len(inputs.item_popularity))
        sources = inputs.recommendations["source"].value_counts(normalize=True).rename_axis("source").reset_index(name="share")
        sections.append(
            f"<h2>Published recommendations</h2><p>{len(inputs.recommendations):,} rows, "
            f"catalog coverage {coverage:.1%} of {len(inputs.item_popularity):,} items.</p>"
            f"{chart}{_table(shares)}<h3>Sources</h3>{_table(sources)}"
        )
    if inputs.compression is not None and not inputs.compression.empty:
        sections.append(
            f"<h2>Compression trade-off</h2>{compression_tradeoff(inputs.compression)}{_table(inputs.compression)}"
        )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )
