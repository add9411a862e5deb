"""Learned ranker over the union of candidate sources: features and LightGBM lambdarank."""
from recspark.ranker.features import FeatureSet, ranker_features
from recspark.ranker.lambdarank import LearnedRanker, RankerModel, RankerSettings, validation_labels

__all__ = ["FeatureSet", "LearnedRanker", "RankerModel", "RankerSettings", "ranker_features", "validation_labels"]
