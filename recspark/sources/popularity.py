"""``popularity``: distinct-user popularity of the history, over all time or the last
``candidates.popularity_window_days`` (the cold-start fallback: it serves every user)."""
from __future__ import annotations

from pyspark.sql import DataFrame

from recspark.recommenders.popularity import PopularityRecommender
from recspark.sources import CandidateSource, SourceInputs


class PopularityModel:
    def __init__(self, history: DataFrame, window_days: float | None):
        self.history = history
        self.window_days = window_days

    def recommend(self, users: DataFrame, n: int, seen: DataFrame) -> DataFrame:
        model = PopularityRecommender(k=n, window_days=self.window_days).fit(self.history)
        return model.recommend(users, seen=seen)


class PopularitySource(CandidateSource):
    name = "popularity"

    def fit(self, history: DataFrame, inputs: SourceInputs) -> PopularityModel:
        return PopularityModel(history, inputs.config.candidates.popularity_window_days)
