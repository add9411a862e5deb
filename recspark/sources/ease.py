"""``ease``: EASE (Steck 2019), the closed-form item-item model, with the ``ease`` settings.

The Gram matrix is built in Spark, solved on the driver (torch; CUDA when present) and scored in
Spark (:mod:`recspark.recommenders.ease`). A catalogue above ``ease.max_items`` is skipped with
one log line (its driver memory is ``n_items^2 x 4 bytes x ~3``): the source then yields no
candidates and publish fills from the next source. ``reg_lambda`` and ``popularity_exponent``
come from the newest ``ease`` row of ``tuned_params`` (the weekly tune's search on validation,
:mod:`recspark.recommenders.ease_tuning`) when there is one and ``ease.use_tuned_params`` is on,
else from the ``ease`` settings.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from recspark.catalog import TUNED_PARAMS
from recspark.recommenders.ease import CatalogueTooLarge, Ease, EaseSettings
from recspark.recommenders.ease_tuning import EASE_ALGORITHM, settings_with_tuned
from recspark.sources import CandidateSource, SourceInputs
from recspark.tuned_params import newest_tuned_row

log = logging.getLogger(__name__)


class NoCandidates:
    def recommend(self, users: DataFrame, n: int, seen: DataFrame) -> DataFrame:
        return users.sparkSession.createDataFrame([], "user_idx int, item_idx int, score double, rank int")


def ease_settings(inputs: SourceInputs) -> EaseSettings:
    """The ``ease`` settings with the newest tuned point applied (see the module docstring)."""
    settings = inputs.config.ease
    if not settings.use_tuned_params:
        return settings
    row = newest_tuned_row(inputs.tables.read_if_exists(TUNED_PARAMS), EASE_ALGORITHM)
    return settings if row is None else settings_with_tuned(settings, row["params"])


class EaseSource(CandidateSource):
    name = "ease"
    reads = (TUNED_PARAMS,)

    def fit(self, history: DataFrame, inputs: SourceInputs):
        try:
            return Ease(ease_settings(inputs)).fit(history)
        except CatalogueTooLarge as exc:
            log.warning("source ease skipped: %s", exc)
            return NoCandidates()
