"""Source definitions for the MovieLens file formats and the synthetic generator's output.

Every preset is plain :class:`~recspark.ingest.settings.SourceSettings` values: any other dataset is ingested
by writing such sources in the config, no code needed.

Decisions: MovieLens ratings are events of type ``rating`` that must carry a rating inside the
dataset's scale. The ml-100k ``unknown`` genre flag means "no genre known" and is not mapped, the
same as ml-latest's ``(no genres listed)``. ml-100k and ml-1m files are not quoted, so quoting is
off for them (a title that starts with a quote is read as is).
"""
from __future__ import annotations

from collections.abc import Callable

from recspark.ingest.settings import SourceSettings, SourceConfigError

# Genre flag columns of ml-100k's u.item, in file order after id|title|release date|video
# release date|IMDb URL (so they are _c5 .. _c23).
ML_100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
ML_100K_FIRST_GENRE_COLUMN = 5

# Rating scale of the synthetic generator's explicit events (MovieLens-like half stars).
SYNTHETIC_RATING_MIN = 0.5
SYNTHETIC_RATING_MAX = 5.0


def preset_sources(preset: str, data_dir: str) -> list[SourceSettings]:
    """The sources of a known dataset layout under ``data_dir`` (a local path or URI).

    Raises SourceConfigError (a ValueError) naming the known presets for an unknown one.
    """
    builders: dict[str, Callable[[str], list[SourceSettings]]] = {
        "ml-latest-small": _movielens_latest,
        "ml-latest": _movielens_latest,
        "ml-100k": _movielens_100k,
        "ml-1m": _movielens_1m,
        "synthetic": _synthetic,
    }
    if preset not in builders:
        raise SourceConfigError(f"unknown ingest preset {preset!r}; known presets: {', '.join(builders)}")
    return builders[preset](data_dir.rstrip("/"))


def _movielens_latest(data_dir: str) -> list[SourceSettings]:
    """ratings.csv, movies.csv, tags.csv: header, comma, quoted titles, epoch seconds, 0.5-5.0."""
    return [
        SourceSettings(
            name="ratings",
            kind="interactions",
            paths=[f"{data_dir}/ratings.csv"],
            columns={"user_id": "userId", "item_id": "movieId", "rating": "rating", "event_ts": "timestamp"},
            event_type="rating",
            timestamp_unit="s",
            rating_min=0.5,
            rating_max=5.0,
            rating_required=True,
        ),
        SourceSettings(
            name="movies",
            kind="items",
            paths=[f"{data_dir}/movies.csv"],
            columns={"item_id": "movieId", "title": "title", "genres": "genres"},
        ),
        SourceSettings(
            name="tags",
            kind="item_tags",
            paths=[f"{data_dir}/tags.csv"],
            columns={"item_id": "movieId", "tag": "tag"},
        ),
    ]


def _headerless_ratings(path: str, delimiter: str) -> SourceSettings:
    """The ratings file of ml-100k / ml-1m: user, item, rating (1-5), epoch seconds; no header."""
    return SourceSettings(
        name="ratings",
        kind="interactions",
        paths=[path],
        columns={"user_id": "_c0", "item_id": "_c1", "rating": "_c2", "event_ts": "_c3"},
        delimiter=delimiter,
        header=False,
        quote="",
        event_type="rating",
        timestamp_unit="s",
        rating_min=1.0,
        rating_max=5.0,
        rating_required=True,
    )


def _movielens_100k(data_dir: str) -> list[SourceSettings]:
    """u.data (tab, no header: user item rating epoch-seconds) and u.item ('|', latin-1, no
    header, one 0/1 column per genre)."""
    return [
        _headerless_ratings(f"{data_dir}/u.data", "\t"),
        SourceSettings(
            name="movies",
            kind="items",
            paths=[f"{data_dir}/u.item"],
            columns={"item_id": "_c0", "title": "_c1"},
            delimiter="|",
            header=False,
            encoding="latin-1",
            quote="",
            genre_flag_columns={
                f"_c{ML_100K_FIRST_GENRE_COLUMN + i}": genre
                for i, genre in enumerate(ML_100K_GENRES)
                if genre != "unknown"
            },
        ),
    ]


def _movielens_1m(data_dir: str) -> list[SourceSettings]:
    """ratings.dat (UserID::MovieID::Rating::Timestamp) and movies.dat (MovieID::Title::Genres,
    latin-1), '::' separated, no header, ratings 1-5."""
    return [
        _headerless_ratings(f"{data_dir}/ratings.dat", "::"),
        SourceSettings(
            name="movies",
            kind="items",
            paths=[f"{data_dir}/movies.dat"],
            columns={"item_id": "_c0", "title": "_c1", "genres": "_c2"},
            delimiter="::",
            header=False,
            encoding="latin-1",
            quote="",
        ),
    ]


def _synthetic(data_dir: str) -> list[SourceSettings]:
    """CSV part files with a header: interactions/*.csv (user_id,item_id,event_type,rating,
    timestamp; rating empty for implicit events) and items/*.csv (item_id,title,genres,
    description)."""
    return [
        SourceSettings(
            name="interactions",
            kind="interactions",
            paths=[f"{data_dir}/interactions/*.csv"],
            columns={
                "user_id": "user_id",
                "item_id": "item_id",
                "event_type": "event_type",
                "rating": "rating",
                "event_ts": "timestamp",
            },
            timestamp_unit="s",
            rating_min=SYNTHETIC_RATING_MIN,
            rating_max=SYNTHETIC_RATING_MAX,
        ),
        SourceSettings(
            name="items",
            kind="items",
            paths=[f"{data_dir}/items/*.csv"],
            columns={"item_id": "item_id", "title": "title", "genres": "genres", "text": "description"},
        ),
    ]


def configured_sources(ingest) -> list[SourceSettings]:
    """The sources of ``ingest`` (the ``ingest`` settings): its preset's (if any) followed by the
    explicitly configured ones; ValueError when none reads interactions."""
    sources = preset_sources(ingest.preset, ingest.data_dir) if ingest.preset else []
    sources += ingest.sources
    if not any(s.kind == "interactions" for s in sources):
        raise ValueError("ingest: no interactions source configured (set ingest.preset or ingest.sources)")
    return sources
