"""EASE's validation search: one Gram matrix, every grid point scored by recspark's NDCG, the
best point recorded and applied by the ``ease`` source."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from recspark.recommenders.ease import EaseGrid, EaseSettings
from recspark.recommenders.ease_tuning import search_ease, settings_with_tuned, tuned_params_json
from recspark.sources.ease import ease_settings

pytestmark = pytest.mark.unit

# 6 users x 5 items (ids 10..14) fitted, three users' validation pairs held out.
ITEMS = [10, 11, 12, 13, 14]
FIT_ROWS = [(0, 10), (0, 12), (1, 10), (2, 12), (2, 13), (3, 10), (3, 13), (3, 14), (4, 12), (4, 14),
            (5, 13), (5, 11), (1, 11), (2, 11)]  # fmt: skip
# the top item per user 0, 2, 5 (numpy): (0.5, 0) 14, 10, 10; (0.5, 2) 14, 14, 10; (50, 0) 14, 10,
# 10; (50, 2) 14, 14, 14: hit rates 2/3, 1/3, 2/3, 2/3
VALIDATION = [(0, 14), (2, 10), (5, 14)]


def numpy_hit_rate(reg_lambda: float, popularity_exponent: float, users: set[int] | None = None) -> float:
    """NDCG@1 (= hit rate at 1) of EASE in float64 numpy: B from Steck's closed form, column j
    scaled by popularity_j^-popularity_exponent, seen items excluded, ties to the smaller id;
    mean over ``users`` (default: every validation user)."""
    x = np.zeros((6, len(ITEMS)))
    for user, item in FIT_ROWS:
        x[user, ITEMS.index(item)] = 1.0
    gram = x.T @ x
    p = np.linalg.inv(gram + reg_lambda * np.eye(len(ITEMS)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    b *= np.diag(gram)[None, :] ** -popularity_exponent
    hits = []
    for user in sorted(users if users is not None else {u for u, _ in VALIDATION}):
        scores = x[user] @ b
        scores[x[user] > 0] = -np.inf
        top = ITEMS[np.lexsort((np.arange(len(ITEMS)), -scores))[0]]
        hits.append(float((user, top) in VALIDATION))
    return float(np.mean(hits))


def test_every_grid_point_is_scored_like_numpy_and_the_best_is_the_argmax(spark):
    settings = EaseSettings(grid=EaseGrid(reg_lambda=[0.5, 50.0], popularity_exponent=[0.0, 2.0]), device="cpu")
    fit_rows = spark.createDataFrame(FIT_ROWS, "user_idx int, item_idx int")
    validation = spark.createDataFrame(VALIDATION, "user_idx int, item_idx int")
    search = search_ease(fit_rows, validation, settings, k=1)
    assert [t.params for t in search.trials] == settings.grid.points()
    for trial in search.trials:
        assert trial.ndcg == pytest.approx(numpy_hit_rate(**trial.params)), trial.params
    assert [t.ndcg for t in search.trials] == pytest.approx([2 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert search.best.params == {"reg_lambda": 0.5, "popularity_exponent": 0.0}  # ties go to the first point


def test_the_recorded_point_round_trips_and_is_checked():
    settings = settings_with_tuned(EaseSettings(), tuned_params_json({"reg_lambda": 200, "popularity_exponent": 0.1}))
    assert (settings.reg_lambda, settings.popularity_exponent) == (200.0, 0.1)
    with pytest.raises(ValueError, match="expected exactly the keys"):
        settings_with_tuned(EaseSettings(), json.dumps({"reg_lambda": 200}))


class TunedTable:
    def __init__(self, spark, rows):
        self.frame = None if rows is None else spark.createDataFrame(
            rows, "algorithm string, params string, run_date date, run_id string")

    def read_if_exists(self, name):
        assert name.name == "tuned_params"
        return self.frame


def test_the_source_fits_with_the_newest_tuned_point_unless_switched_off(spark):
    import datetime as dt

    day = dt.date(2026, 1, 1)
    rows = [("ease", tuned_params_json({"reg_lambda": 100, "popularity_exponent": 0.25}), day, "a"),
            ("ease", tuned_params_json({"reg_lambda": 200, "popularity_exponent": 0.1}), day + dt.timedelta(1), "b"),
            ("als", "{}", day + dt.timedelta(2), "c")]

    def inputs(table_rows, **ease):
        return SimpleNamespace(config=SimpleNamespace(ease=EaseSettings(**ease)), tables=TunedTable(spark, table_rows))

    chosen = ease_settings(inputs(rows))
    assert (chosen.reg_lambda, chosen.popularity_exponent) == (200.0, 0.1)
    assert ease_settings(inputs(rows, use_tuned_params=False)).reg_lambda == 500.0
    assert ease_settings(inputs(None)).reg_lambda == 500.0
    assert np.isclose(ease_settings(inputs(rows[2:])).popularity_exponent, 0.0)


def test_one_solve_per_reg_lambda_serves_every_popularity_exponent(spark, monkeypatch):
    from recspark.recommenders import ease_tuning

    solves = []
    real = ease_tuning.ease_weights

    def counted(gram, reg_lambda, device, popularity_exponent=0.0):
        solves.append((reg_lambda, popularity_exponent))
        return real(gram, reg_lambda, device, popularity_exponent)

    monkeypatch.setattr(ease_tuning, "ease_weights", counted)
    settings = EaseSettings(grid=EaseGrid(reg_lambda=[0.5, 50.0], popularity_exponent=[0.0, 1.0, 2.0]), device="cpu")
    search = search_ease(spark.createDataFrame(FIT_ROWS, "user_idx int, item_idx int"),
                         spark.createDataFrame(VALIDATION, "user_idx int, item_idx int"), settings, k=1)
    assert solves == [(0.5, 0.0), (50.0, 0.0)]
    for trial in search.trials:
        assert trial.ndcg == pytest.approx(numpy_hit_rate(**trial.params)), trial.params


def test_the_search_scores_a_seeded_sample_of_validation_users(spark):
    from recspark.evaluation.sampling import sample_users

    grid = EaseGrid(reg_lambda=[0.5, 50.0], popularity_exponent=[0.0, 2.0])
    fit_rows = spark.createDataFrame(FIT_ROWS, "user_idx int, item_idx int")
    validation = spark.createDataFrame(VALIDATION, "user_idx int, item_idx int")
    sampled = {r.user_idx for r in sample_users(validation, 2, 7).collect()}
    assert len(sampled) == 2
    search = search_ease(fit_rows, validation, EaseSettings(grid=grid, device="cpu", tuning_max_users=2), k=1, seed=7)
    for trial in search.trials:
        assert trial.ndcg == pytest.approx(numpy_hit_rate(**trial.params, users=sampled)), trial.params
    everyone = search_ease(fit_rows, validation, EaseSettings(grid=grid, device="cpu", tuning_max_users=3), k=1)
    assert [t.ndcg for t in everyone.trials] == pytest.approx([2 / 3, 1 / 3, 2 / 3, 2 / 3])
    with pytest.raises(ValueError, match="tuning_max_users"):
        EaseSettings(tuning_max_users=0)
