"""``item_item``: item-based CF over co-occurrence neighbours (score = sum of the neighbour
similarities over the user's history; ``because_item_idx`` = the history item that contributed
most). Tonight's neighbours are the ``cooccurrence`` partition of ``item_similarity``; the
validation refit computes them from the history with the ``similarity`` settings."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.catalog import ITEM_SIMILARITY
from recspark.recommenders.item_similarity import COOCCURRENCE_METHOD, ItemSimilarityModel, similarity_estimator
from recspark.sources import CandidateSource, SourceInputs


class NeighbourModel:
    """Item-CF over ``neighbours`` (item_idx, neighbor_idx, score)."""

    def __init__(self, neighbours: DataFrame):
        self.model = ItemSimilarityModel(neighbours)

    def recommend(self, users: DataFrame, n: int, seen: DataFrame) -> DataFrame:
        histories = seen.join(users.select("user_idx").distinct(), "user_idx", "left_semi")
        return self.model.recommend(histories, n).withColumnRenamed("because_item", "because_item_idx")


class ItemItemSource(CandidateSource):
    name = "item_item"
    reads = (ITEM_SIMILARITY,)

    def fit(self, history: DataFrame, inputs: SourceInputs) -> NeighbourModel:
        if not inputs.tables.exists(ITEM_SIMILARITY):
            raise ValueError("source item_item needs table item_similarity: run the item-similarity stage first")
        return NeighbourModel(inputs.tables.read(ITEM_SIMILARITY).where(F.col("method") == COOCCURRENCE_METHOD))

    def refit(self, history: DataFrame, inputs: SourceInputs) -> NeighbourModel:
        return NeighbourModel(similarity_estimator(inputs.config.similarity).fit(history).similarities)
