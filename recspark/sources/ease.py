"""``ease``: EASE (Steck 2019), the closed-form item-item model, with the ``ease`` settings.

The Gram matrix is built in Spark, solved on the driver (torch; CUDA when present) and scored in
Spark (:mod:`recspark.recommenders.ease`). A catalogue above ``ease.max_items`` is skipped with
one log line (its driver memory is ``n_items^2 x 4 bytes x ~3``): the source then yields no
candidates and publish fills from the next source.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame

from recspark.recommenders.ease import CatalogueTooLarge, Ease
from recspark.sources import CandidateSource, SourceInputs

log = logging.getLogger(__name__)


class NoCandidates:
    def recommend(self, users: DataFrame, n: int, seen: DataFrame) -> DataFrame:
        return users.sparkSession.createDataFrame([], "user_idx int, item_idx int, score double, rank int")


class EaseSource(CandidateSource):
    name = "ease"

    def fit(self, history: DataFrame, inputs: SourceInputs):
        try:
            return Ease(inputs.config.ease).fit(history)
        except CatalogueTooLarge as exc:
            log.warning("source ease skipped: %s", exc)
            return NoCandidates()
