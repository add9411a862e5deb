"""Small cuts of the bundled MovieLens data for tests that run jobs in other processes."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_movielens_subset(source: Path, target: Path, max_user_id: int) -> int:
    """MovieLens ratings of users 1..``max_user_id`` with the movies and tags of the movies they
    rated, as ratings.csv / movies.csv / tags.csv in ``target`` (created); returns the user count."""
    target.mkdir(parents=True)
    ratings = pd.read_csv(source / "ratings.csv")
    ratings = ratings[ratings["userId"] <= max_user_id]
    rated = ratings["movieId"].unique()
    movies = pd.read_csv(source / "movies.csv")
    tags = pd.read_csv(source / "tags.csv")
    ratings.to_csv(target / "ratings.csv", index=False)
    movies[movies["movieId"].isin(rated)].to_csv(target / "movies.csv", index=False)
    tags[tags["movieId"].isin(rated)].to_csv(target / "tags.csv", index=False)
    return int(ratings["userId"].nunique())
