"""preset_sources: each preset ingests a few hand-written lines in its dataset's real file format."""
from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality

from recspark import schemas
from recspark.config import load_config
from recspark.ingest.presets import preset_sources
from recspark.ingest.read import read_source
from recspark.ingest.settings import SourceSettings
from recspark.ingest.validate import to_silver_rows, valid_rows, validate_interactions, validate_items

pytestmark = pytest.mark.unit

INGEST_DATE = dt.date(2024, 6, 1)
RUN_ID = "run-1"
MAX_EVENT_TS = dt.datetime(2024, 6, 2)
ITEM_COLUMNS = "item_id string, title string, genres array<string>, text string"


def write(path, text: str, encoding: str = "utf-8") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return f"file://{path}"


def silver(spark, source):
    """Silver rows of one interactions source (the tests expect every input row among them)."""
    validated = validate_interactions(read_source(spark, source), source, MAX_EVENT_TS)
    return to_silver_rows(validated, INGEST_DATE, RUN_ID)


def valid_items(spark, source):
    """Valid item rows (item_id, title, genres, text) of one items source."""
    return valid_rows(validate_items(read_source(spark, source), source)).select("item_id", "title", "genres", "text")


def interaction(user, item, event_type, rating, ts, source, file):
    return (user, item, event_type, rating, 1.0, ts, source, file, INGEST_DATE, RUN_ID)


def test_ml_latest_small(spark, tmp_path):
    ratings_file = write(
        tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964982703\n"
    )
    write(
        tmp_path / "movies.csv",
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "182727,A Christmas Story Live! (2017),(no genres listed)\n",
    )
    write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n2,60756,Highly quotable,1445714996\n")
    ratings, movies, tags = preset_sources("ml-latest-small", str(tmp_path))

    assert [(s.name, s.kind) for s in (ratings, movies, tags)] == [
        ("ratings", "interactions"),
        ("movies", "items"),
        ("tags", "item_tags"),
    ]
    expected_ratings = spark.createDataFrame(
        [
            interaction("1", "1", "rating", 4.0, dt.datetime(2000, 7, 30, 18, 45, 3), "ratings", ratings_file),
            interaction("1", "3", "rating", 0.5, dt.datetime(2000, 7, 30, 18, 45, 3), "ratings", ratings_file),
        ],
        schemas.INTERACTIONS,
    )
    assert_df_equality(silver(spark, ratings), expected_ratings, ignore_row_order=True, ignore_nullable=True)
    expected_movies = spark.createDataFrame(
        [
            ("1", "Toy Story (1995)", ["Adventure", "Animation"], None),
            ("11", "American President, The (1995)", ["Comedy", "Drama", "Romance"], None),
            ("182727", "A Christmas Story Live! (2017)", [], None),
        ],
        ITEM_COLUMNS,
    )
    assert_df_equality(valid_items(spark, movies), expected_movies, ignore_row_order=True, ignore_nullable=True)
    tag_rows = read_source(spark, tags).select("item_id", "tag").collect()
    assert [tuple(r) for r in tag_rows] == [("60756", "Highly quotable")]


def test_ml_latest_uses_the_ml_latest_small_layout():
    assert preset_sources("ml-latest", "/data/ml") == preset_sources("ml-latest-small", "/data/ml/")


def test_ml_100k(spark, tmp_path):
    ratings_file = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")

    def flagged(*genre_indexes: int) -> str:
        """The 19 genre flag fields with 1 at the given positions (0 = unknown, 3 = Animation...)."""
        return "|".join("1" if i in genre_indexes else "0" for i in range(19))

    write(
        tmp_path / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{flagged(3, 4, 5)}\n"
        f"2|Misérables, Les (1995)|15-Dec-1995||http://us.imdb.com/Les|{flagged(8, 17)}\n"
        f"267|unknown||||{flagged(0)}\n",
        encoding="latin-1",
    )
    ratings, movies = preset_sources("ml-100k", str(tmp_path))

    expected_ratings = spark.createDataFrame(
        [
            interaction("196", "242", "rating", 3.0, dt.datetime(1997, 12, 4, 15, 55, 49), "ratings", ratings_file),
            interaction("186", "302", "rating", 3.0, dt.datetime(1998, 4, 4, 19, 22, 22), "ratings", ratings_file),
        ],
        schemas.INTERACTIONS,
    )
    assert_df_equality(silver(spark, ratings), expected_ratings, ignore_row_order=True, ignore_nullable=True)
    expected_movies = spark.createDataFrame(
        [
            ("1", "Toy Story (1995)", ["Animation", "Children's", "Comedy"], None),
            ("2", "Misérables, Les (1995)", ["Drama", "War"], None),
            ("267", "unknown", [], None),
        ],
        ITEM_COLUMNS,
    )
    assert_df_equality(valid_items(spark, movies), expected_movies, ignore_row_order=True, ignore_nullable=True)


def test_ml_1m(spark, tmp_path):
    ratings_file = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(
        tmp_path / "movies.dat",
        "1::Toy Story (1995)::Animation|Children's|Comedy\n73::Misérables, Les (1995)::Drama|Musical\n",
        encoding="latin-1",
    )
    ratings, movies = preset_sources("ml-1m", str(tmp_path))

    expected_ratings = spark.createDataFrame(
        [
            interaction("1", "1193", "rating", 5.0, dt.datetime(2000, 12, 31, 22, 12, 40), "ratings", ratings_file),
            interaction("1", "661", "rating", 3.0, dt.datetime(2000, 12, 31, 22, 35, 9), "ratings", ratings_file),
        ],
        schemas.INTERACTIONS,
    )
    assert_df_equality(silver(spark, ratings), expected_ratings, ignore_row_order=True, ignore_nullable=True)
    expected_movies = spark.createDataFrame(
        [
            ("1", "Toy Story (1995)", ["Animation", "Children's", "Comedy"], None),
            ("73", "Misérables, Les (1995)", ["Drama", "Musical"], None),
        ],
        ITEM_COLUMNS,
    )
    assert_df_equality(valid_items(spark, movies), expected_movies, ignore_row_order=True, ignore_nullable=True)


def test_synthetic(spark, tmp_path):
    header = "user_id,item_id,event_type,rating,timestamp\n"
    part0 = write(
        tmp_path / "interactions" / "part-00000.csv",
        header + "u1,i1,rating,4.5,1704067200\nu1,i2,play,,1704070800\n",
    )
    part1 = write(tmp_path / "interactions" / "part-00001.csv", header + "u2,i1,Click,,1704074400\n")
    write(
        tmp_path / "items" / "part-00000.csv",
        'item_id,title,genres,description\ni1,Song One,Pop|Rock,"A bright, upbeat song"\ni2,Song Two,,Quiet piano\n',
    )
    interactions, items = preset_sources("synthetic", str(tmp_path))

    expected_interactions = spark.createDataFrame(
        [
            interaction("u1", "i1", "rating", 4.5, dt.datetime(2024, 1, 1, 0, 0), "interactions", part0),
            interaction("u1", "i2", "play", None, dt.datetime(2024, 1, 1, 1, 0), "interactions", part0),
            interaction("u2", "i1", "click", None, dt.datetime(2024, 1, 1, 2, 0), "interactions", part1),
        ],
        schemas.INTERACTIONS,
    )
    assert_df_equality(
        silver(spark, interactions), expected_interactions, ignore_row_order=True, ignore_nullable=True
    )
    expected_items = spark.createDataFrame(
        [("i1", "Song One", ["Pop", "Rock"], "A bright, upbeat song"), ("i2", "Song Two", [], "Quiet piano")],
        ITEM_COLUMNS,
    )
    assert_df_equality(valid_items(spark, items), expected_items, ignore_row_order=True, ignore_nullable=True)


def test_unknown_preset_lists_the_known_ones():
    known = "known presets: ml-latest-small, ml-latest, ml-100k, ml-1m, synthetic"
    with pytest.raises(ValueError, match=f"unknown ingest preset 'ml-20m'; {known}"):
        preset_sources("ml-20m", "/data")


def test_a_preset_layout_can_be_written_as_yaml_config(tmp_path):
    config_file = tmp_path / "conf.yaml"
    config_file.write_text(
        "ingest:\n"
        "  preset: null\n"
        "  sources:\n"
        "    - {name: ratings, kind: interactions, paths: [/data/u.data], delimiter: '\\t', header: false,\n"
        "       columns: {user_id: _c0, item_id: _c1, rating: _c2, event_ts: _c3}}\n"
        "    - name: movies\n"
        "      kind: items\n"
        "      paths: [/data/u.item]\n"
        "      columns: {item_id: _c0, title: _c1}\n"
        "      delimiter: '|'\n"
        "      header: false\n"
        "      encoding: latin-1\n"
        "      quote: ''\n"
        "      genre_flag_columns: {_c6: Action, _c7: Adventure}\n"
    )

    _, source = load_config(config_file).ingest.sources

    assert source == SourceSettings(
        name="movies",
        kind="items",
        paths=["/data/u.item"],
        columns={"item_id": "_c0", "title": "_c1"},
        delimiter="|",
        header=False,
        encoding="latin-1",
        quote="",
        genre_flag_columns={"_c6": "Action", "_c7": "Adventure"},
    )
