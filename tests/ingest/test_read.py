"""read_source: bronze layout, formats, delimiters, encodings and clear errors for bad inputs."""
from __future__ import annotations

import gzip
import logging
import os

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from recspark.ingest.read import (
    EmptyInputError,
    IngestInputError,
    bronze_schema,
    check_not_empty,
    list_input_files,
    read_source,
)
from recspark.ingest.settings import SourceSettings, SourceConfigError

pytestmark = pytest.mark.unit

RATINGS_COLUMNS = {"user_id": "userId", "item_id": "movieId", "rating": "rating", "event_ts": "timestamp"}


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def ratings_source(path, **options) -> SourceSettings:
    return SourceSettings(name="ratings", kind="interactions", paths=[str(path)], columns=RATINGS_COLUMNS, **options)


def bronze(spark, rows: list[tuple], kind: str = "interactions"):
    """Bronze rows without read_order (compare with ``read_source(...).drop("read_order")``)."""
    fields = [f for f in bronze_schema(kind).fields if f.name != "read_order"]
    return spark.createDataFrame(rows, T.StructType(fields))


def uri(path) -> str:
    return f"file://{path}"


def test_csv_reads_every_column_as_string_in_the_bronze_layout(spark, tmp_path):
    path = write(
        tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,007,4.0,964982703\n2,10,,964982224\n"
    )

    actual = read_source(spark, ratings_source(path)).drop("read_order")

    expected = bronze(
        spark,
        [
            ("ratings", uri(path), "1,007,4.0,964982703", False, "1", "007", None, "4.0", None, "964982703"),
            ("ratings", uri(path), "2,10,,964982224", False, "2", "10", None, None, None, "964982224"),
        ],
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_malformed_rows_are_kept_flagged_with_their_raw_text(spark, tmp_path):
    path = write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,20,4.5\n3,30,3.0,964982703,extra\n",
    )

    rows = read_source(spark, ratings_source(path)).select("raw_record", "is_malformed").collect()

    assert sorted((r.raw_record, r.is_malformed) for r in rows) == [
        ("1,1,4.0,964982703", False),
        ("2,20,4.5", True),
        ("3,30,3.0,964982703,extra", True),
    ]


def test_multi_character_delimiter_without_header(spark, tmp_path):
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n2::661::3\n")
    source = SourceSettings(
        name="ratings",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "_c0", "item_id": "_c1", "rating": "_c2", "event_ts": "_c3"},
        delimiter="::",
        header=False,
        quote="",
    )

    actual = read_source(spark, source).drop("read_order")

    expected = bronze(
        spark,
        [
            ("ratings", uri(path), "1::1193::5::978300760", False, "1", "1193", None, "5", None, "978300760"),
            ("ratings", uri(path), "2::661::3", True, "2", "661", None, "3", None, None),
        ],
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_latin1_file_is_decoded_with_the_declared_encoding(spark, tmp_path):
    path = write(tmp_path / "movies.csv", "movieId,title\n1,Misérables (1995)\n", encoding="latin-1")
    source = SourceSettings(
        name="movies",
        kind="items",
        paths=[str(path)],
        columns={"item_id": "movieId", "title": "title"},
        encoding="latin-1",
    )

    row = read_source(spark, source).select("title", "raw_record").first()

    assert (row.title, row.raw_record) == ("Misérables (1995)", "1,Misérables (1995)")


def test_quoted_fields_are_unquoted_and_raw_record_quotes_them_again(spark, tmp_path):
    path = write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n11,"American President, The (1995)",Comedy|Drama\n12,"Say ""Hi"" (2001)",Comedy\n',
    )
    source = SourceSettings(
        name="movies",
        kind="items",
        paths=[str(path)],
        columns={"item_id": "movieId", "title": "title", "genres": "genres"},
    )

    rows = read_source(spark, source).select("title", "raw_record", "is_malformed").collect()

    assert sorted(tuple(r) for r in rows) == [
        ("American President, The (1995)", '11,"American President, The (1995)",Comedy|Drama', False),
        ('Say "Hi" (2001)', '12,"Say ""Hi"" (2001)",Comedy', False),
    ]


def test_json_lines_are_read_as_strings_and_broken_lines_flagged(spark, tmp_path):
    path = write(
        tmp_path / "events.jsonl",
        '{"u": "a", "i": 5, "ts": 1700000000, "extra": true}\n{"u": "b", "i": "6"\n',
    )
    source = SourceSettings(
        name="events",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "u", "item_id": "i", "event_ts": "ts"},
        format="json",
    )

    actual = read_source(spark, source).drop("read_order")

    expected = bronze(
        spark,
        [
            ("events", uri(path), '{"u":"a","i":"5","ts":"1700000000"}', False)
            + ("a", "5", None, None, None, "1700000000"),
            ("events", uri(path), '{"u": "b", "i": "6"', True, None, None, None, None, None, None),
        ],
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_parquet_columns_are_cast_to_string_and_arrays_joined(spark, tmp_path):
    spark.createDataFrame(
        [(1, "Heat (1995)", ["Action", "Crime"])], "id long, name string, tags_list array<string>"
    ).write.parquet(str(tmp_path / "items"))
    source = SourceSettings(
        name="items",
        kind="items",
        paths=[str(tmp_path / "items")],
        columns={"item_id": "id", "title": "name", "genres": "tags_list"},
        format="parquet",
    )

    row = read_source(spark, source).drop("source_file", "read_order").first()

    assert tuple(row) == (
        "items",
        '{"id":1,"name":"Heat (1995)","tags_list":["Action","Crime"]}',
        False,
        "1",
        "Heat (1995)",
        "Action|Crime",
        None,
    )


def test_gzip_compressed_csv_is_read(spark, tmp_path):
    path = tmp_path / "ratings.csv.gz"
    path.write_bytes(gzip.compress(b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"))

    rows = read_source(spark, ratings_source(path)).select("user_id", "item_id", "rating", "event_ts").collect()

    assert [tuple(r) for r in rows] == [("1", "1", "4.0", "964982703")]


def test_genre_flag_columns_become_the_raw_genres(spark, tmp_path):
    path = write(tmp_path / "items.txt", "1|Heat|0|1|1\n2|Nixon|0|0|x\n")
    source = SourceSettings(
        name="items",
        kind="items",
        paths=[str(path)],
        columns={"item_id": "_c0", "title": "_c1"},
        delimiter="|",
        header=False,
        genre_flag_columns={"_c2": "Comedy", "_c3": "Crime", "_c4": "Thriller"},
    )

    rows = read_source(spark, source).select("item_id", "genres").collect()

    assert sorted(tuple(r) for r in rows) == [("1", "Crime|Thriller"), ("2", "")]


def test_wrong_delimiter_raises_a_clear_error(spark, tmp_path):
    path = write(tmp_path / "ratings.csv", "userId;movieId;rating;timestamp\n1;1;4.0;964982703\n")

    with pytest.raises(IngestInputError) as error:
        read_source(spark, ratings_source(path))

    message = str(error.value)
    assert str(path) in message
    assert "header does not contain the mapped column(s)" in message
    assert "wrong delimiter?" in message


def test_header_without_a_mapped_column_names_expected_and_found(spark, tmp_path):
    path = write(tmp_path / "ratings.csv", "userId,itemId,rating,timestamp\n1,1,4.0,964982703\n")

    with pytest.raises(IngestInputError) as error:
        read_source(spark, ratings_source(path))

    message = str(error.value)
    assert "['movieId']" in message
    assert "found ['userId', 'itemId', 'rating', 'timestamp']" in message
    assert "wrong delimiter?" not in message


def test_files_of_one_source_with_different_headers_raise(spark, tmp_path):
    write(tmp_path / "a.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    write(tmp_path / "b.csv", "movieId,userId,rating,timestamp\n1,1,4.0,964982703\n")

    with pytest.raises(IngestInputError, match="b.csv: header .* differs from .*a.csv"):
        read_source(spark, ratings_source(tmp_path / "*.csv"))


def test_missing_path_raises_a_clear_error(spark, tmp_path):
    with pytest.raises(IngestInputError, match="nope.csv: path does not exist"):
        read_source(spark, ratings_source(tmp_path / "nope.csv"))


def test_empty_file_yields_zero_rows_and_a_warning(spark, tmp_path, caplog):
    path = write(tmp_path / "ratings.csv", "")

    with caplog.at_level(logging.WARNING, logger="recspark.ingest.read"):
        df = read_source(spark, ratings_source(path))

    assert df.count() == 0
    assert df.schema == bronze_schema("interactions")
    assert any(str(path) in record.getMessage() and "empty" in record.getMessage() for record in caplog.records)


def test_empty_file_next_to_a_full_one_contributes_no_rows(spark, tmp_path):
    write(tmp_path / "part-0.csv", "")
    write(tmp_path / "part-1.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")

    assert read_source(spark, ratings_source(tmp_path / "part-*.csv")).count() == 1


def test_headerless_mapping_beyond_the_line_width_raises(spark, tmp_path):
    path = write(tmp_path / "u.data", "1\t2\t3\n")
    source = SourceSettings(
        name="r",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "_c0", "item_id": "_c1", "event_ts": "_c3"},
        delimiter="\t",
        header=False,
    )

    with pytest.raises(IngestInputError, match="column _c3 is mapped but the first line has only 3 fields"):
        read_source(spark, source)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "users"}, "kind must be one of"),
        ({"columns": {"user_id": "u", "item_id": "i"}}, r"columns must map \['event_ts'\]"),
        ({"columns": {**RATINGS_COLUMNS, "title": "t"}}, r"unknown canonical column\(s\) \['title'\]"),
        ({"encoding": "no-such-encoding"}, "unknown encoding 'no-such-encoding'"),
        ({"event_type": " "}, "event_type is blank and no event_type column is mapped"),
    ],
)
def test_inconsistent_source_definitions_raise_config_errors(spark, tmp_path, change, message):
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n")
    source = ratings_source(path)
    for key, value in change.items():
        setattr(source, key, value)

    with pytest.raises(SourceConfigError, match=message):
        read_source(spark, source)


def test_quoted_field_with_a_line_break_is_one_record_never_a_fake_row(spark, tmp_path):
    path = write(
        tmp_path / "ev.csv",
        'user_id,item_id,rating,timestamp\nu1,i1,4.0,1600000000\n"ml_user,with\nnewline",ml_item,3.0,1600000000\n',
    )
    source = SourceSettings(
        name="ev",
        kind="interactions",
        paths=[str(path)],
        columns={"user_id": "user_id", "item_id": "item_id", "rating": "rating", "event_ts": "timestamp"},
    )

    rows = read_source(spark, source).orderBy("read_order").collect()

    assert [(r.user_id, r.item_id, r.is_malformed) for r in rows] == [
        ("u1", "i1", False),
        ("ml_user,with\nnewline", "ml_item", False),
    ]
    assert rows[1].raw_record == '"ml_user,with\nnewline",ml_item,3.0,1600000000'


def test_unclosed_quote_makes_the_rest_of_the_file_one_malformed_row(spark, tmp_path):
    path = write(tmp_path / "ev.csv", 'userId,movieId,rating,timestamp\n1,1,4.0,1\n"2,2,4.0,2\n3,3,4.0,3\n')

    rows = read_source(spark, ratings_source(path)).orderBy("read_order").collect()

    assert [(r.user_id, r.is_malformed) for r in rows] == [("1", False), ("2,2,4.0,2\n3,3,4.0,3\n", True)]


@pytest.mark.parametrize("multiline", [True, False])
def test_read_order_follows_the_position_in_the_file_also_when_split(spark, tmp_path, multiline):
    lines = "".join(f"{i},1,4.0,1600000000\n" for i in range(200))
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n" + lines)
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "512")  # the file spans several tasks
    try:
        bronze = read_source(spark, ratings_source(path, multiline=multiline))
        partitions = bronze.rdd.getNumPartitions()
        rows = bronze.collect()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)

    assert (partitions == 1) if multiline else (partitions > 1)
    assert [r.user_id for r in sorted(rows, key=lambda r: r.read_order)] == [str(i) for i in range(200)]


def test_files_argument_reads_only_those_files(spark, tmp_path):
    write(tmp_path / "a.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n")
    write(tmp_path / "b.csv", "userId,movieId,rating,timestamp\n2,1,4.0,1\n")
    files = [f for f in list_input_files(spark, [str(tmp_path)]) if f.path.endswith("b.csv")]

    rows = read_source(spark, ratings_source(tmp_path), files=files).collect()

    assert [r.user_id for r in rows] == ["2"]


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({}, "the paths match no files"),
        ({"a.csv": ""}, "every file is 0 bytes"),
        ({"a.csv": "userId,movieId,rating,timestamp\n", "b.csv": ""}, "the files hold no data rows"),
    ],
    ids=["empty-directory", "zero-byte-file", "header-only-file"],
)
def test_empty_input_raises_naming_the_source_and_paths(spark, tmp_path, files, why):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, text in files.items():
        write(inbox / name, text)
    source = ratings_source(inbox)
    listed = list_input_files(spark, source.paths)
    bronze = read_source(spark, source, files=listed)

    with pytest.raises(EmptyInputError) as error:
        check_not_empty(source, listed, bronze.count())

    message = str(error.value)
    assert message.startswith(f"source 'ratings' ({inbox}) yielded no rows: {why}")
    assert "--allow-empty" in message
    check_not_empty(source, listed, 1)  # any row at all: no error


def test_event_time_file_modified_fills_the_files_modification_time(spark, tmp_path):
    path = write(tmp_path / "plays.csv", "u,i\na,x\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    source = SourceSettings(
        name="plays", kind="interactions", paths=[str(path)], columns={"user_id": "u", "item_id": "i"},
        event_time="file_modified",
    )  # fmt: skip

    row = read_source(spark, source).first()

    assert row.event_ts == "2023-11-14 22:13:20.000000Z"
