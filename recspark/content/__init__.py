"""Item text embeddings, content-based and cold-start recommendations."""
from recspark.content.cold_start import cold_start_results
from recspark.content.embeddings import embed_texts, item_texts, items_to_embed
from recspark.content.recommend import ContentModel, ContentRecommender, user_profiles

__all__ = [
    "ContentModel",
    "ContentRecommender",
    "cold_start_results",
    "embed_texts",
    "item_texts",
    "items_to_embed",
    "user_profiles",
]
