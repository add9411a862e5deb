"""``user_knn``: user-based CF, "users like you" (``user_knn`` settings;
:mod:`recspark.recommenders.user_knn`): cosine or Jaccard user-user neighbourhoods, an item's
score the summed similarity of the neighbours who have it."""
from __future__ import annotations

from pyspark.sql import DataFrame

from recspark.recommenders.user_knn import UserKnn
from recspark.sources import CandidateSource, SourceInputs


class UserKnnSource(CandidateSource):
    name = "user_knn"

    def fit(self, history: DataFrame, inputs: SourceInputs):
        return UserKnn(inputs.config.user_knn).fit(history)
