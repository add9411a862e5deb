"""Every stage declared once: name, run function, tables read and written, settings, time limit.

The CLI's sub-commands, ``recspark run``'s order (:data:`NIGHTLY`), the Airflow DAG's tasks and
dependencies (:func:`pipeline_spec`, written to ``airflow_dags/recspark_pipeline.json``), the
``jobs/submit.py`` entry point and the lineage logged to MLflow all come from :data:`STAGES`.
A stage's upstream stages are derived: the nightly stages before it that write a table it
reads, plus its ``after``.
"""
from __future__ import annotations

import datetime as dt
import json
import sys

from recspark import catalog as c
from recspark.pipeline.stage import Stage
from recspark.sources import SOURCE_TABLES

_P = "recspark.pipeline"
STAGES: dict[str, Stage] = {
    stage.name: stage for stage in (
        Stage("generate", f"{_P}.generate:run_generate", "synthetic interaction and item CSV files",
              settings=("generate",), nightly=False),
        Stage("ingest", f"{_P}.ingest:run_ingest", "source files -> bronze, silver, quarantine, items",
              writes=(c.INTERACTIONS_BRONZE, c.INTERACTIONS_SILVER, c.INTERACTIONS_QUARANTINE, c.ITEMS_BRONZE,
                      c.ITEMS, c.INGEST_MANIFEST),
              settings=("ingest",)),
        Stage("featurize", f"{_P}.featurize:run_featurize", "stable ids, features, train/validation/test split",
              reads=(c.INTERACTIONS_SILVER, c.ITEMS),
              writes=(c.USER_INDEX, c.ITEM_INDEX, c.USER_FEATURES, c.ITEM_FEATURES, c.INTERACTIONS_SPLIT),
              settings=("featurize",)),
        Stage("tune", f"{_P}.tune:run_tune", "weekly search of ALS and EASE params and the blends on the validation carve",
              reads=(c.INTERACTIONS_SPLIT, c.CANDIDATES, c.USER_INDEX, *SOURCE_TABLES), writes=(c.TUNED_PARAMS,),
              settings=("als", "ease", "evaluation", "candidates", "deep", "ranker"),
              time_limit=dt.timedelta(hours=4), nightly=False),
        Stage("train-als", f"{_P}.train_als:run_train_als", "ALS refit with the tuned params, factor neighbours",
              reads=(c.INTERACTIONS_SPLIT, c.TUNED_PARAMS), writes=(c.USER_FACTORS, c.ITEM_FACTORS, c.ITEM_SIMILARITY),
              settings=("als", "evaluation"), time_limit=dt.timedelta(hours=3)),
        Stage("item-similarity", f"{_P}.item_similarity:run_item_similarity", "co-occurrence item neighbours",
              reads=(c.INTERACTIONS_SPLIT,), writes=(c.ITEM_SIMILARITY,), settings=("similarity",),
              time_limit=dt.timedelta(hours=2)),
        Stage("embed-items", f"{_P}.embed_items:run_embed_items", "item text embeddings (new or changed items)",
              reads=(c.ITEMS, c.ITEM_INDEX), writes=(c.ITEM_EMBEDDINGS,), settings=("embedding",),
              time_limit=dt.timedelta(hours=2)),
        Stage("train-deep", f"{_P}.train_deep:run_train_deep", "Petastorm + TorchDistributor deep models",
              reads=(c.INTERACTIONS_SPLIT, c.USER_INDEX, c.ITEM_INDEX, c.ITEM_EMBEDDINGS),
              settings=("deep", "evaluation"), time_limit=dt.timedelta(hours=4)),
        Stage("candidates", f"{_P}.candidates:run_candidates", "top-N per user from every candidate source",
              reads=(c.INTERACTIONS_SPLIT, c.USER_INDEX, *SOURCE_TABLES), writes=(c.CANDIDATES,),
              settings=("candidates", "content"), time_limit=dt.timedelta(hours=2)),
        Stage("rerank", f"{_P}.rerank:run_rerank", "deep re-ranking, the learned ranker and the hybrid blend; champion",
              reads=(c.CANDIDATES, c.INTERACTIONS_SPLIT, c.USER_INDEX, *SOURCE_TABLES), writes=(c.CANDIDATES,),
              after=("train-deep",), settings=("deep", "ranker"), time_limit=dt.timedelta(hours=2)),
        Stage("evaluate", f"{_P}.evaluate:run_evaluate", "offline metrics of every source on the test split",
              reads=(c.INTERACTIONS_SPLIT, c.CANDIDATES, c.ITEM_INDEX, c.ITEM_FEATURES, c.STAGE_RUNS,
                     c.ITEM_EMBEDDINGS, c.USER_FACTORS, c.ITEM_FACTORS),
              writes=(c.METRICS,), settings=("evaluation", "content")),
        Stage("publish", f"{_P}.publish:run_publish", "nightly recommendation lists behind the quality gate",
              reads=(c.CANDIDATES, c.INTERACTIONS_SPLIT, c.ITEM_SIMILARITY, c.ITEM_INDEX, c.ITEMS, c.USER_INDEX,
                     c.METRICS, c.ITEM_FACTORS),
              writes=(c.RECOMMENDATIONS, c.RECOMMENDATIONS_LATEST), settings=("publish",),
              time_limit=dt.timedelta(minutes=30)),
        Stage("report", f"{_P}.report:run_report", "HTML run report",
              reads=(c.METRICS, c.STAGE_RUNS, c.RECOMMENDATIONS, c.INTERACTIONS_SPLIT, c.ITEM_INDEX),
              settings=("report",), nightly=False),
    )
}

NIGHTLY: tuple[str, ...] = tuple(name for name, stage in STAGES.items() if stage.nightly)
# The weekly tuning run (its own Airflow DAG): searches hyperparameters on the split the nightly
# wrote and records them in tuned_params, which the following nights refit with.
WEEKLY: tuple[str, ...] = ("tune",)


def stage(name: str) -> Stage:
    """The declared stage ``name``; ValueError listing the stages otherwise."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages: {list(STAGES)}") from None


def upstream(name: str) -> tuple[str, ...]:
    """The nightly stages that must finish before ``name``: earlier ones writing a table it reads
    (itself excluded), plus its ``after``, in nightly order."""
    this = stage(name)
    earlier = NIGHTLY[: NIGHTLY.index(name)] if name in NIGHTLY else NIGHTLY
    reads = set(this.reads)
    return tuple(s for s in earlier if s in this.after or reads & set(STAGES[s].writes))


def pipeline_spec() -> dict:
    """The pipelines as the Airflow DAGs read them: per stage its upstream stages and time limit
    in seconds, the nightly stages (``stages``) in nightly order and the weekly ones (``weekly``,
    upstream within the weekly run only)."""
    def entry(name: str, upstream_stages: tuple[str, ...]) -> dict:
        return {"name": name, "upstream": list(upstream_stages),
                "time_limit_s": int(STAGES[name].time_limit.total_seconds()), "description": STAGES[name].description}

    return {
        "stages": [entry(name, upstream(name)) for name in NIGHTLY],
        "weekly": [entry(name, tuple(s for s in WEEKLY[: WEEKLY.index(name)] if s in STAGES[name].after))
                   for name in WEEKLY],
    }


def write_pipeline_spec(path: str) -> None:
    """Write :func:`pipeline_spec` as JSON (``python -m recspark.pipeline.registry PATH``)."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump(pipeline_spec(), out, indent=2)
        out.write("\n")


if __name__ == "__main__":
    write_pipeline_spec(sys.argv[1])
