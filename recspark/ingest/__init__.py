"""Ingest transforms: raw files -> bronze rows -> validated silver rows + quarantine rows.

Flow (the ingest stage does the table I/O around these functions):

* :mod:`recspark.ingest.settings` holds :class:`SourceSettings` / :class:`IngestSettings`, which
  validate themselves in plain Python (errors before Spark starts).
* :func:`recspark.ingest.read.read_source` reads one source into the bronze layout (every row as
  read, values as strings, malformed rows flagged, ``read_order`` for "last written wins");
  :func:`recspark.ingest.read.check_not_empty` refuses a source that yielded no rows;
  :func:`recspark.ingest.presets.preset_sources` builds the sources of the MovieLens formats and
  the synthetic generator's output.
* :mod:`recspark.ingest.manifest` lists which files are new, changed or already ingested
  (incremental nights).
* :mod:`recspark.ingest.validate` types and checks bronze rows; every row gets either no reason
  (valid) or exactly one reason code from :mod:`recspark.ingest.reasons`, so
  rows read = valid rows + quarantined rows.
* :mod:`recspark.ingest.dedupe` keeps one row per event (the last-written value wins; identical
  re-deliveries are duplicates, other values are ``duplicate_conflict`` quarantine rows) and
  merges a night's rows into stored silver, so silver rows = kept + valid - duplicates - conflicts.
* :func:`recspark.ingest.items.build_items` assembles the items table from items and tag rows.
"""
