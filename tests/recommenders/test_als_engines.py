"""ALS engines: auto's choice by memory budget, and the implicit engine's output and quality."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from chispa import assert_df_equality

from recspark.config import ConfigError, load_config
from recspark.evaluation import ranking_metrics
from recspark.io.tracking import MlflowSettings, stage_run
from recspark.recommenders.als import ALSRecommender, ALSRecommenderModel, AlsSettings
from recspark.recommenders.als_engines import (
    AlsEngineSettings,
    InteractionShape,
    choose_engine,
    engine_fit,
    fit_als,
    implicit_footprint_mb,
    implicit_regularization,
    interactions_csr,
    pick_engine,
)
from recspark.recommenders.popularity import PopularityRecommender
from als_planted import planted_pairs

pytestmark = pytest.mark.unit

SCHEMA = "user_idx int, item_idx int, confidence double"
ESTIMATOR = ALSRecommender(rank=8, reg_param=0.05, alpha=5.0, max_iter=5, seed=3)


@pytest.fixture(scope="module")
def planted(spark):
    train, test = planted_pairs(150)
    return spark.createDataFrame(train, SCHEMA).cache(), spark.createDataFrame(test, SCHEMA).cache()


def test_auto_picks_implicit_within_the_budget_and_mllib_beyond_it():
    shape = InteractionShape(n_pairs=20_000_000, n_user_ids=200_000, n_item_ids=50_000)
    need = implicit_footprint_mb(shape, rank=32)
    assert 1_000 < need < 2_000  # ~64 bytes a pair, plus the factors
    small, large = AlsEngineSettings(memory_budget_mb=need / 2), AlsEngineSettings(memory_budget_mb=need * 2)
    assert choose_engine(small, shape, 32)[0] == "mllib"
    engine, reason = choose_engine(large, shape, 32)
    assert engine == "implicit" and "20,000,000 pairs" in reason and "<= budget" in reason
    assert choose_engine(AlsEngineSettings(engine="mllib", memory_budget_mb=need * 2), shape, 32)[0] == "mllib"
    assert choose_engine(AlsEngineSettings(engine="implicit", memory_budget_mb=1.0), shape, 32)[0] == "implicit"


def test_fit_als_logs_its_choice_and_explicit_als_stays_on_mllib(spark, planted, caplog):
    train, _ = planted
    with caplog.at_level(logging.INFO, logger="recspark.recommenders.als_engines"):
        model = fit_als(ESTIMATOR.copy(max_iter=2), train, AlsEngineSettings(memory_budget_mb=0.001))
    assert "ALS engine: mllib" in caplog.text and "> budget" in caplog.text
    assert "engine" not in model.params
    explicit = train.withColumnRenamed("confidence", "rating")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recspark.recommenders.als_engines"):
        fit_als(ESTIMATOR.copy(implicit_prefs=False, max_iter=2), explicit, AlsEngineSettings(engine="implicit"))
    assert "explicit ratings run on MLlib only" in caplog.text


def test_csr_holds_the_mllib_confidence(spark):
    pairs = spark.createDataFrame([(0, 2, 1.0), (3, 0, 0.5), (1, 1, None)], SCHEMA)
    matrix, users, items = interactions_csr(pairs, "user_idx", "item_idx", "confidence", alpha=4.0)
    assert matrix.shape == (4, 3) and matrix.dtype == np.float32
    assert matrix.toarray().tolist() == [[0, 0, 5], [0, 0, 0], [0, 0, 0], [3, 0, 0]]
    assert users.tolist() == [0, 3] and items.tolist() == [0, 2]


def test_regularization_mapping():
    shape = InteractionShape(n_pairs=1_000, n_user_ids=100, n_item_ids=400)
    assert implicit_regularization(0.1, shape, "geometric_mean") == pytest.approx(0.1 * 1_000 / 200)
    assert implicit_regularization(0.1, shape, "none") == 0.1
    with pytest.raises(ValueError, match="engine"):
        AlsEngineSettings(engine="spark")
    with pytest.raises(ValueError, match="memory_budget_mb"):
        AlsEngineSettings(memory_budget_mb=0)


def test_implicit_engine_returns_mllib_shaped_factors_and_recovers_the_planted_groups(spark, planted):
    train, test = planted
    model = fit_als(ESTIMATOR, train, AlsEngineSettings(engine="implicit"))
    assert isinstance(model, ALSRecommenderModel) and model.params["engine"] == "implicit"
    reference = ESTIMATOR.fit(train)
    for got, expected in ((model.user_factors, reference.user_factors), (model.item_factors, reference.item_factors)):
        assert got.schema == expected.schema
        id_col = got.columns[0]
        assert_df_equality(got.select(id_col), expected.select(id_col), ignore_row_order=True)
    assert len(model.user_factors.first().features) == ESTIMATOR.rank

    users = test.select("user_idx").distinct()
    ndcg = {
        name: ranking_metrics(fitted.recommend(10, seen=train, users=users), test, 10, "user_idx", "item_idx")["ndcg@k"]
        for name, fitted in (("implicit", model), ("mllib", reference))
    }
    popularity = PopularityRecommender(k=10).fit(train).recommend(users, seen=train)
    ndcg["popularity"] = ranking_metrics(popularity, test, 10, "user_idx", "item_idx")["ndcg@k"]
    print("planted ndcg@10:", {name: round(value, 3) for name, value in ndcg.items()})
    assert abs(ndcg["implicit"] - ndcg["mllib"]) < 0.05
    assert ndcg["implicit"] > 2 * ndcg["popularity"]
    predicted = model.predict(test.select("user_idx", "item_idx")).collect()
    assert len(predicted) == test.count() and all(np.isfinite(row.prediction) for row in predicted)


def test_auto_picks_by_the_size_of_the_frame_and_explicit_estimators_stay_on_mllib(spark, planted):
    train, _ = planted
    shape = InteractionShape.of(train, "user_idx", "item_idx", "confidence")
    need = implicit_footprint_mb(shape, ESTIMATOR.rank)
    assert pick_engine(ESTIMATOR, train, AlsEngineSettings(memory_budget_mb=need * 1.01))[0] == "implicit"
    engine, reason = pick_engine(ESTIMATOR, train, AlsEngineSettings(memory_budget_mb=need * 0.99))
    assert engine == "mllib" and f"{shape.n_pairs:,} pairs" in reason and "> budget" in reason
    explicit = ESTIMATOR.copy(implicit_prefs=False)
    assert pick_engine(explicit, train, AlsEngineSettings(engine="implicit")) == (
        "mllib", "explicit ratings run on MLlib only")
    fit = engine_fit("implicit", AlsEngineSettings())
    assert fit(ESTIMATOR.copy(max_iter=2), train).params["engine"] == "implicit"
    assert "engine" not in fit(explicit.copy(max_iter=2), train.withColumnRenamed("confidence", "rating")).params
    with pytest.raises(ValueError, match="mllib or implicit"):
        engine_fit("auto", AlsEngineSettings())


def test_the_als_section_carries_the_engine_and_validates_it_at_load():
    settings = load_config(None, ["als.engine=mllib", "als.memory_budget_mb=512"]).als
    assert settings.engine_settings() == AlsEngineSettings(engine="mllib", memory_budget_mb=512.0)
    assert AlsSettings().engine == "auto"
    with pytest.raises(ConfigError, match="als.engine must be one of"):
        load_config(None, ["als.engine=spark"])
    with pytest.raises(ConfigError, match="als.memory_budget_mb must be > 0"):
        load_config(None, ["als.memory_budget_mb=0"])


def test_the_implicit_engines_model_logs_and_loads_as_an_mlflow_spark_model(spark, planted, tmp_path):
    import mlflow.spark

    train, test = planted
    model = fit_als(ESTIMATOR.copy(max_iter=2), train, AlsEngineSettings(engine="implicit"))
    config = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="implicit-engine")
    with stage_run(config, "train-als", "2024-01-01", "local-id") as tracker:
        uri = tracker.log_spark_model(model.als_model, "als_model")
    mlflow.set_tracking_uri(config.tracking_uri)
    loaded = mlflow.spark.load_model(uri)
    pairs = test.select("user_idx", "item_idx").limit(20)
    expected = {(r.user_idx, r.item_idx): r.prediction for r in model.predict(pairs).collect()}
    got = {(r.user_idx, r.item_idx): r.prediction for r in loaded.transform(pairs).collect()}
    assert got.keys() == expected.keys() and got == pytest.approx(expected)
