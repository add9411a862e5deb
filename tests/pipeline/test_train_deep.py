"""train-deep with no deep model configured (the default) returns at once."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from recspark.config import load_config
from recspark.pipeline.train_deep import DeepTrainingSummary, run_train_deep

pytestmark = pytest.mark.unit


class NoTables:
    def __getattr__(self, name):
        raise AssertionError(f"train-deep without models touched the tables ({name})")


def test_no_deep_models_by_default_and_train_deep_returns_cleanly():
    config = load_config(None)
    assert config.deep.models == []
    ctx = SimpleNamespace(config=config, tables=NoTables(), tracker=NoTables(), spark=NoTables(),
                          run_date=dt.date(2024, 6, 1))
    assert run_train_deep(ctx) == DeepTrainingSummary(models=0, examples=0, validation_pairs=0, item_feature_dim=0)
