"""A tiny warehouse for stage tests: a config on a temporary folder (MLflow off, a two-point
implicit ALS grid with few sweeps) and an ``interactions_split`` written from the planted
taste groups of ``als_planted``, as featurize would write it (with its protocol metadata)."""
from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import SparkSession

from als_planted import planted_pairs
from recspark.config import Config, load_config
from recspark.io.delta import DeltaTables

SPLIT_SCHEMA = ("user_id string, item_id string, user_idx int, item_idx int, confidence double, rating double, "
                "split string")
TINY_ALS = ["als.grid.implicit_prefs=[true]", "als.grid.rank=[4]", "als.grid.reg_param=[0.05, 0.5]",
            "als.grid.alpha=[5.0]", "als.max_iter=4", "als.factor_similarity_top_n=0", "als.register_model=false"]


def tiny_config(warehouse, *overrides: str) -> Config:
    return load_config(None, [f"warehouse={warehouse}", "mlflow.enabled=false", "spark.master=local[2]",
                              *TINY_ALS, *overrides])


def split_frame(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """interactions_split rows of planted (train, test) pairs; ids are the indexes as strings."""
    rows = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    return rows.assign(user_id=rows["user_idx"].astype(str), item_id=rows["item_idx"].astype(str), rating=None)[
        ["user_id", "item_id", "user_idx", "item_idx", "confidence", "rating", "split"]]


def write_split(spark: SparkSession, config: Config, rows: pd.DataFrame, run_date: dt.date) -> None:
    frame = spark.createDataFrame(rows, SPLIT_SCHEMA)
    DeltaTables.from_config(spark, config).write(
        frame, "interactions_split", partition_by=["split"], overwrite_schema=True, expected_version=None,
        metadata={"stage": "featurize", "run_date": run_date.isoformat(), "run_id": f"{run_date:%Y%m%d}-featurize",
                  "split.protocol": "random_stratified(by=user,test=0.25,validation=0.0,seed=42)", "split.seed": 42})


def planted_split(n_users: int, first_user: int = 0) -> pd.DataFrame:
    return split_frame(*planted_pairs(n_users, first_user))
