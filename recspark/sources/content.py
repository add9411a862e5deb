"""``content``: item text embeddings against each user's profile, blended with popularity
(``content`` settings; :mod:`recspark.content.recommend`). Serves every user, history or not, and
reaches new items through their embeddings."""
from __future__ import annotations

from pyspark.sql import DataFrame

from recspark.catalog import ITEM_EMBEDDINGS
from recspark.content.recommend import ContentRecommender
from recspark.sources import CandidateSource, SourceInputs


class ContentModel:
    def __init__(self, history: DataFrame, embeddings: DataFrame, settings):
        self.history = history
        self.embeddings = embeddings
        self.settings = settings

    def recommend(self, users: DataFrame, n: int, seen: DataFrame) -> DataFrame:
        return ContentRecommender.from_settings(n, self.settings).fit(self.history, self.embeddings).recommend(users, seen=seen)


class ContentSource(CandidateSource):
    name = "content"
    reads = (ITEM_EMBEDDINGS,)

    def fit(self, history: DataFrame, inputs: SourceInputs) -> ContentModel:
        if not inputs.tables.exists(ITEM_EMBEDDINGS):
            raise ValueError("source content needs table item_embeddings: run the embed-items stage first")
        return ContentModel(history, inputs.tables.read(ITEM_EMBEDDINGS), inputs.config.content)
