"""Recommenders: top-K retrieval, popularity baseline, ALS, item-item and deep models."""
