"""Canonical table schemas shared by every stage.

Ids are strings everywhere upstream of featurize (sources disagree on id types); dense integer
indexes (``user_idx``, ``item_idx``) are assigned by :mod:`recspark.featurize.ids`. Timestamps
are Spark ``timestamp`` in UTC (the session time zone is UTC).
"""
from pyspark.sql import types as T

# Lineage columns carried by bronze, silver and quarantine rows.
LINEAGE_FIELDS = [
    T.StructField("source", T.StringType(), False),  # source name from config, e.g. "ratings"
    T.StructField("source_file", T.StringType(), True),  # file the row was read from
    T.StructField("ingest_date", T.DateType(), False),  # run date of the ingest that read it
    T.StructField("run_id", T.StringType(), False),  # id of that ingest run
]

# Typed, validated, de-duplicated interactions (the silver table).
INTERACTIONS = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("item_id", T.StringType(), False),
        T.StructField("event_type", T.StringType(), False),  # rating | play | click | purchase | ...
        T.StructField("rating", T.DoubleType(), True),  # explicit rating, null for implicit events
        T.StructField("weight", T.DoubleType(), False),  # implicit strength (count, play seconds...), > 0
        T.StructField("event_ts", T.TimestampType(), False),
        *LINEAGE_FIELDS,
    ]
)

# Raw canonical fields of an interaction row before typing (all strings, as read).
INTERACTION_RAW_COLUMNS = ["user_id", "item_id", "event_type", "rating", "weight", "event_ts"]
ITEM_RAW_COLUMNS = ["item_id", "title", "genres", "text"]
ITEM_TAG_RAW_COLUMNS = ["item_id", "tag"]

# Item metadata (the items table).
ITEMS = T.StructType(
    [
        T.StructField("item_id", T.StringType(), False),
        T.StructField("title", T.StringType(), True),
        T.StructField("genres", T.ArrayType(T.StringType(), False), False),
        T.StructField("tags", T.ArrayType(T.StringType(), False), False),  # distinct, lower-cased
        T.StructField("text", T.StringType(), False),  # title + genres + tags (+ description)
        T.StructField("source_file", T.StringType(), True),
        T.StructField("ingest_date", T.DateType(), False),
    ]
)

# One row per rejected input row (the quarantine table).
QUARANTINE = T.StructType(
    [
        T.StructField("source", T.StringType(), False),
        T.StructField("source_file", T.StringType(), True),
        T.StructField("raw_record", T.StringType(), True),  # the row as read
        T.StructField("reason", T.StringType(), False),  # reason code, see recspark.ingest.reasons
        T.StructField("column", T.StringType(), True),  # canonical column at fault, if any
        T.StructField("detail", T.StringType(), True),  # human-readable, names the offending value
        T.StructField("ingest_date", T.DateType(), False),
        T.StructField("run_id", T.StringType(), False),
    ]
)
