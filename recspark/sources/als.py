"""``als``: ALS factors, exact blocked dot-product top-N (``recspark.recommenders.topk``).

Tonight's model is the one train-als wrote (``user_factors`` x ``item_factors``); the validation
refit fits ALS on the history with the params recorded in ``user_factors``' commit metadata, on the
engine ``als.engine`` picks for that history.
"""
from __future__ import annotations

from pyspark.sql import DataFrame

from recspark.catalog import ITEM_FACTORS, USER_FACTORS
from recspark.publish import require_same_fit
from recspark.recommenders.als import als_estimator, als_params_from_metadata
from recspark.recommenders.als_engines import fit_als
from recspark.recommenders.topk import top_k_by_dot_product
from recspark.sources import CandidateSource, SourceInputs


class FactorModel:
    """Top-N by ``user_factors`` . ``item_factors`` (user_idx / item_idx, features)."""

    def __init__(self, user_factors: DataFrame, item_factors: DataFrame):
        self.user_factors = user_factors
        self.item_factors = item_factors

    def recommend(self, users: DataFrame, n: int, seen: DataFrame) -> DataFrame:
        queries = self.user_factors.join(users.select("user_idx").distinct(), "user_idx", "left_semi")
        return top_k_by_dot_product(queries, self.item_factors, n, seen=seen)


class AlsSource(CandidateSource):
    name = "als"
    reads = (USER_FACTORS, ITEM_FACTORS)

    def fit(self, history: DataFrame, inputs: SourceInputs) -> FactorModel:
        for table in self.reads:
            if not inputs.tables.exists(table):
                raise ValueError(f"source als needs table {table.name}: run the train-als stage first")
        require_same_fit(inputs.tables.latest_metadata(USER_FACTORS), inputs.tables.latest_metadata(ITEM_FACTORS))
        return FactorModel(inputs.tables.read(USER_FACTORS), inputs.tables.read(ITEM_FACTORS))

    def refit(self, history: DataFrame, inputs: SourceInputs) -> FactorModel:
        params = als_params_from_metadata(inputs.tables.latest_metadata(USER_FACTORS))
        estimator = als_estimator(inputs.config.als).copy(**params)
        model = fit_als(estimator, history, inputs.config.als.engine_settings())
        return FactorModel(model.user_factors, model.item_factors)
