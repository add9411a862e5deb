"""Learned ranker over the union of candidate sources: features, settings, LightGBM lambdarank
(:mod:`recspark.ranker.lambdarank`, imported on use: it loads LightGBM) and the choice of the
validated champion (:mod:`recspark.ranker.blend`)."""
from recspark.ranker.features import FeatureSet, ranker_features
from recspark.ranker.settings import RankerSettings

__all__ = ["FeatureSet", "RankerSettings", "ranker_features"]
