"""train-als between full refits: users added after the full fit get factors by fold-in and
personalised lists close to a full refit's; drift and the retrain schedule force full refits."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pandas as pd
import pytest
from pyspark.sql import functions as F

from als_planted import planted_pairs
from recspark.config import ConfigError, load_config
from recspark.evaluation import ranking_metrics
from recspark.io.delta import DeltaTables
from recspark.pipeline.runner import run_stage
from recspark.pipeline.train_als import full_refit_reason
from recspark.recommenders.als import als_estimator, als_params_from_metadata
from recspark.recommenders.als_engines import AlsEngineSettings, fit_als
from recspark.recommenders.popularity import PopularityRecommender
from recspark.recommenders.topk import top_k_by_dot_product
from tiny_warehouse import split_frame, tiny_config, write_split

NIGHT = dt.date(2026, 3, 1)
OLD_USERS, NEW_USERS = 60, 6
PAIRS = "user_idx int, item_idx int, confidence double"


@pytest.mark.integration  # whole stages through the runner
def test_a_user_added_after_the_full_fit_is_folded_in_and_gets_personal_lists(spark, tmp_path):
    config = tiny_config(tmp_path / "wh")
    old_train, old_test = planted_pairs(OLD_USERS)
    write_split(spark, config, split_frame(old_train, old_test), NIGHT)
    first = run_stage("train-als", config, NIGHT, "night-1", spark)
    assert first.full_fit == 1 and first.users_with_factors == OLD_USERS

    new_train, new_test = planted_pairs(NEW_USERS, first_user=OLD_USERS)
    train, test = pd.concat([old_train, new_train]), pd.concat([old_test, new_test])
    write_split(spark, config, split_frame(train, test), NIGHT + dt.timedelta(days=1))
    second = run_stage("train-als", config, NIGHT + dt.timedelta(days=1), "night-2", spark)
    assert second.full_fit == 0 and second.trials == 0
    assert second.folded_in_users == NEW_USERS and second.users_with_factors == OLD_USERS + NEW_USERS
    assert second.share_folded_in == pytest.approx(NEW_USERS / (OLD_USERS + NEW_USERS))

    delta = DeltaTables.from_config(spark, config)
    user_meta = delta.history("user_factors", limit=1)[0].metadata
    assert user_meta["recspark.als.fit"] == "fold_in" and user_meta["recspark.run_id"] == "night-2"
    assert user_meta["recspark.als.full_fit_date"] == NIGHT.isoformat()
    assert delta.history("item_factors", limit=1)[0].metadata["recspark.run_id"] == "night-2"

    # Tonight's lists for the new users against a full refit on the same history.
    history = spark.createDataFrame(train, PAIRS)
    seen = history.select("user_idx", "item_idx")
    truth = spark.createDataFrame(new_test, PAIRS).select("user_idx", "item_idx")
    new_users = truth.select("user_idx").distinct()
    folded = delta.read("user_factors").join(new_users, "user_idx", "left_semi")
    lists = top_k_by_dot_product(folded, delta.read("item_factors"), 10, seen=seen)
    refit = fit_als(als_estimator(config.als).copy(**als_params_from_metadata(user_meta)),
                    history, AlsEngineSettings(engine=user_meta["recspark.als.engine"]))
    refit_lists = refit.recommend(10, seen=seen, users=new_users)
    overlap = lists.join(refit_lists, ["user_idx", "item_idx"]).count() / refit_lists.count()
    popular = PopularityRecommender(k=10).fit(history).recommend(new_users, seen=seen)
    ndcg = {name: ranking_metrics(frame, truth, 10, "user_idx", "item_idx")["ndcg@k"]
            for name, frame in (("fold-in", lists), ("full refit", refit_lists), ("popularity", popular))}
    print(f"new users: top-10 overlap fold-in vs full refit {overlap:.2f}, ndcg@10 {ndcg}")
    assert lists.groupBy("user_idx").count().where(F.col("count") == 10).count() == NEW_USERS
    assert overlap >= 0.6
    assert ndcg["fold-in"] > 1.5 * ndcg["popularity"] and ndcg["fold-in"] > 0.8 * ndcg["full refit"]

    drift = tiny_config(tmp_path / "wh", "als.max_share_folded_in=0.05")
    third = run_stage("train-als", drift, NIGHT + dt.timedelta(days=2), "night-3", spark)
    assert third.full_fit == 1 and third.users_with_factors == OLD_USERS + NEW_USERS


@pytest.mark.unit
def test_the_schedule_new_params_and_explicit_models_force_a_full_refit(tmp_path):
    config = load_config(None, [f"warehouse={tmp_path}", "als.full_retrain_every_days=7"])
    fitted = {"als.full_fit_date": "2026-03-01", "als.implicit_prefs": "True", "als.params_from": "in-stage search"}

    def reason(night: dt.date, metadata: dict, source: str = "in-stage search", settings=config):
        return full_refit_reason(SimpleNamespace(config=settings, run_date=night), metadata, source)

    assert reason(dt.date(2026, 3, 7), fitted) is None
    assert "7 days since the full fit of 2026-03-01" in reason(dt.date(2026, 3, 8), fitted)
    assert reason(dt.date(2026, 3, 2), {}) == "no earlier full fit"
    assert "new params" in reason(dt.date(2026, 3, 2), fitted, "tuned_params 2026-03-02 tune-1")
    assert "explicit" in reason(dt.date(2026, 3, 2), fitted | {"als.implicit_prefs": "False"})
    every_night = load_config(None, [f"warehouse={tmp_path}", "als.full_retrain_every_days=0"])
    assert "fold-in is off" in reason(dt.date(2026, 3, 2), fitted, settings=every_night)
    with pytest.raises(ConfigError, match="als.full_retrain_every_days: must be >= 0"):
        load_config(None, ["als.full_retrain_every_days=-1"])
    with pytest.raises(ConfigError, match=r"als.max_share_folded_in: must be in \[0, 1\]"):
        load_config(None, ["als.max_share_folded_in=1.5"])
