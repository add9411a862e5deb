"""Ingest transforms: raw files -> bronze rows -> validated silver rows + quarantine rows.

Flow (the ingest stage does the table I/O around these functions):

* :func:`recspark.ingest.read.read_source` reads one :class:`~recspark.config.SourceConfig` into
  the bronze layout (every row as read, values as strings, malformed rows flagged);
  :func:`recspark.ingest.presets.preset_sources` builds the sources of the MovieLens formats and
  the synthetic generator's output.
* :mod:`recspark.ingest.validate` types and checks bronze rows; every row gets either no reason
  (valid) or exactly one reason code from :mod:`recspark.ingest.reasons`, so
  rows read = valid rows + quarantined rows.
* :func:`recspark.ingest.dedupe.deduplicate_interactions` keeps one row per event, so
  valid rows = silver rows + duplicates removed.
* :func:`recspark.ingest.items.build_items` assembles the items table from items and tag rows.
"""
