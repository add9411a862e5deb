"""File manifest of incremental ingest: which input files were ingested, in which version.

The manifest is a small table (:data:`MANIFEST_SCHEMA`), one row per ingested file version:
path, size, modification time, checksum (``sha256:<hex>`` of the file's bytes as stored, i.e.
compressed files are hashed compressed), the run date that read it and the ingest date its rows
went to. :func:`compare_with_manifest` sorts tonight's files into

* **new**: a path never ingested;
* **changed**: a path ingested before with other content (different checksum). It is read again
  in full and logged as a warning; rows it no longer holds stay in silver, rows it now holds
  with other values win as the last-written rows (see :mod:`recspark.ingest.dedupe`);
* **unchanged**: same path and content (not read again);
* **copies**: a new path whose content was already ingested under another path (not read again,
  logged), so a re-delivered file is never ingested twice.

Hashing is the expensive part, so a path whose size and modification time equal its latest
manifest entry counts as unchanged without being read (``verify=True`` hashes every file). The
hash streams the file through the JVM (Hadoop file system, any URI); nothing is loaded whole.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession

from recspark import schemas
from recspark.ingest.read import InputFile

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = schemas.INGEST_MANIFEST
NEW, CHANGED = "new", "changed"


@dataclass(frozen=True)
class ManifestEntry:
    """One input file with its checksum (None when it was not hashed)."""

    file: InputFile
    checksum: str | None


@dataclass
class ManifestComparison:
    """Tonight's files of one source, by what incremental ingest does with them."""

    new: list[ManifestEntry] = field(default_factory=list)
    changed: list[ManifestEntry] = field(default_factory=list)
    unchanged: list[ManifestEntry] = field(default_factory=list)
    copies: list[ManifestEntry] = field(default_factory=list)

    @property
    def to_read(self) -> list[InputFile]:
        """Files to ingest tonight (new and changed), in path order."""
        return sorted((e.file for e in self.new + self.changed), key=lambda f: f.path)


def file_checksum(spark: SparkSession, path: str) -> str:
    """``sha256:<hex>`` of the bytes of ``path`` (any Hadoop URI), streamed through the JVM."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    stream = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).open(hadoop_path)
    try:
        return "sha256:" + jvm.org.apache.commons.codec.digest.DigestUtils.sha256Hex(stream)
    finally:
        stream.close()


def latest_entries(manifest: DataFrame | None, source: str) -> dict[str, dict]:
    """The latest manifest row of each path of ``source`` (by run_date, then ingest_date), as
    dicts keyed by path. The manifest holds one row per file version, so this is small."""
    if manifest is None:
        return {}
    rows = manifest.filter(manifest.source == source).collect()
    latest: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: (r.run_date, r.ingest_date)):
        latest[row.path] = row.asDict()
    return latest


def compare_with_manifest(
    spark: SparkSession,
    source: str,
    files: list[InputFile],
    manifest: DataFrame | None,
    verify: bool = False,
) -> ManifestComparison:
    """Sort ``files`` (tonight's listing of ``source``) into new / changed / unchanged / copies
    against ``manifest`` (None: nothing ingested yet). See the module docstring."""
    latest = latest_entries(manifest, source)
    known_checksums = {entry["checksum"]: path for path, entry in latest.items()}
    result = ManifestComparison()
    for file in files:
        entry = latest.get(file.path)
        if entry is not None and not verify and _same_stat(file, entry):
            result.unchanged.append(ManifestEntry(file, entry["checksum"]))
            continue
        checksum = file_checksum(spark, file.path)
        if entry is not None and entry["checksum"] == checksum:
            result.unchanged.append(ManifestEntry(file, checksum))
        elif entry is not None:
            log.warning(
                "source %s: %s changed since it was ingested on %s (checksum %s -> %s, size %d -> %d "
                "bytes); reading it again in full",
                source, file.path, entry["ingest_date"], entry["checksum"], checksum, entry["size"], file.size,
            )
            result.changed.append(ManifestEntry(file, checksum))
        elif checksum in known_checksums:
            log.warning(
                "source %s: %s holds the same bytes as %s, already ingested; not reading it",
                source, file.path, known_checksums[checksum],
            )
            result.copies.append(ManifestEntry(file, checksum))
        else:
            result.new.append(ManifestEntry(file, checksum))
            known_checksums[checksum] = file.path
    log.info(
        "source %s: %d new, %d changed, %d unchanged, %d copies of ingested files",
        source, len(result.new), len(result.changed), len(result.unchanged), len(result.copies),
    )
    return result


def manifest_rows(
    spark: SparkSession,
    source: str,
    comparison: ManifestComparison,
    run_date: dt.date,
    ingest_date: dt.date,
) -> DataFrame:
    """Manifest rows (:data:`MANIFEST_SCHEMA`) recording tonight's new and changed files; append
    them in the same run that appends their rows to bronze."""
    rows = [
        (
            source,
            entry.file.path,
            entry.file.size,
            dt.datetime.fromtimestamp(entry.file.modified_ms / 1000),  # naive local, as PySpark expects
            entry.checksum,
            status,
            run_date,
            ingest_date,
        )
        for status, entries in ((NEW, comparison.new), (CHANGED, comparison.changed))
        for entry in entries
    ]
    return spark.createDataFrame(rows, MANIFEST_SCHEMA)


def _same_stat(file: InputFile, entry: dict) -> bool:
    """Same size and modification time (PySpark returns timestamps as naive local datetimes)."""
    return file.size == entry["size"] and abs(entry["modified_ts"].timestamp() * 1000 - file.modified_ms) < 1
