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

# The item_embeddings table, keyed by item_idx (the stable id of item_index).
ITEM_EMBEDDINGS = T.StructType(
    [
        T.StructField("item_idx", T.IntegerType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("embedding", T.ArrayType(T.FloatType())),  # L2-normalised
        T.StructField("model", T.StringType()),
        T.StructField("text_hash", T.StringType()),  # sha256 hex of the encoded text
    ]
)

# One row per (run, model, metric, k) (the metrics table, less run_date).
METRICS = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("model", T.StringType(), False),
        T.StructField("metric", T.StringType(), False),
        T.StructField("k", T.IntegerType(), True),  # null for metrics without a cut-off
        T.StructField("value", T.DoubleType(), False),
        T.StructField("protocol", T.StringType(), False),
        T.StructField("dataset", T.StringType(), False),
    ]
)

# The ``stage_runs`` table: one row per finished stage and per measured step inside it.
STAGE_RUNS = T.StructType(
    [
        T.StructField("run_date", T.DateType()),
        T.StructField("run_id", T.StringType()),
        T.StructField("stage", T.StringType()),
        T.StructField("step", T.StringType()),  # the stage name itself for the whole stage
        T.StructField("wall_time_s", T.DoubleType()),
        T.StructField("peak_rss_mib", T.DoubleType()),  # driver process high-water mark
        T.StructField("finished_at", T.TimestampType()),
    ]
)

# One row per (user, source, rank) (the candidates table, less run_date): a source's top-N with
# the history item that contributed most where the source knows one.
CANDIDATES = T.StructType(
    [
        T.StructField("user_idx", T.IntegerType()),
        T.StructField("item_idx", T.IntegerType()),
        T.StructField("source", T.StringType()),
        T.StructField("score", T.DoubleType()),  # comparable within a source only
        T.StructField("rank", T.IntegerType()),  # 1..N within (user, source)
        T.StructField("because_item_idx", T.IntegerType()),  # nullable
    ]
)

# One row per input file read by ingest (the ingest_manifest table): what makes a night incremental.
INGEST_MANIFEST = T.StructType(
    [
        T.StructField("source", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("size", T.LongType(), False),  # bytes
        T.StructField("modified_ts", T.TimestampType(), False),  # file modification time (UTC)
        T.StructField("checksum", T.StringType(), False),  # sha256:<hex> of the stored bytes
        T.StructField("status", T.StringType(), False),  # new | changed (why it was read)
        T.StructField("run_date", T.DateType(), False),  # the run that read it
        T.StructField("ingest_date", T.DateType(), False),  # bronze/silver partition of its rows
    ]
)

# One row per tuned algorithm (the tuned_params table, partitioned by algorithm): the params the
# tune stage chose on the validation carve, which the nightly refits use instead of searching.
TUNED_PARAMS = T.StructType(
    [
        T.StructField("algorithm", T.StringType(), False),  # als | ...
        T.StructField("params", T.StringType(), False),  # JSON object of the chosen params
        T.StructField("selection_metric", T.StringType(), False),  # e.g. ndcg_at_10
        T.StructField("validation_metric", T.DoubleType(), False),  # the chosen params' value of it
        T.StructField("trials", T.IntegerType(), False),  # grid points tried
        T.StructField("split_protocol", T.StringType(), False),  # interactions_split's protocol label
        T.StructField("run_date", T.DateType(), False),  # the tune run that chose them
        T.StructField("run_id", T.StringType(), False),
        T.StructField("mlflow_run_id", T.StringType(), True),  # its MLflow run (params, trials)
    ]
)
