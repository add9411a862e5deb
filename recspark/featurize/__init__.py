"""Featurize: stable indexes, aggregated interactions, user/item features, splits, negatives.

Every transform is a pure DataFrame -> DataFrame function; reading and writing tables is left
to the featurize job.
"""
from recspark.featurize.features import (
    aggregate_user_item,
    genre_vocabulary,
    item_features,
    user_features,
)
from recspark.featurize.ids import assign_stable_index, item_index, user_index
from recspark.featurize.negatives import sample_negatives, with_negatives
from recspark.featurize.splits import attach_indexes, split_interactions

__all__ = [
    "aggregate_user_item",
    "assign_stable_index",
    "attach_indexes",
    "genre_vocabulary",
    "item_features",
    "item_index",
    "sample_negatives",
    "split_interactions",
    "user_features",
    "user_index",
    "with_negatives",
]
