"""Incremental nights: the file manifest and merging a night's rows into stored silver."""
from __future__ import annotations

import datetime as dt
import hashlib
import os

import pytest
from chispa import assert_df_equality

from recspark.ingest.dedupe import (
    RowAccounting,
    apply_merge,
    conflict_quarantine_rows,
    deduplicate_interactions,
    merge_counts,
    merge_into_silver,
)
from recspark.ingest.manifest import compare_with_manifest, file_checksum, manifest_rows
from recspark.ingest.read import list_input_files, read_source
from recspark.ingest.settings import SourceSettings
from recspark.ingest.validate import to_quarantine_rows, to_silver_candidates, validate_interactions

pytestmark = pytest.mark.unit

HEADER = "user_id,item_id,rating,timestamp\n"
NIGHT1, NIGHT2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
LATEST = dt.datetime(2030, 1, 1)


def events_source(directory) -> SourceSettings:
    return SourceSettings(
        name="events",
        kind="interactions",
        paths=[str(directory)],
        columns={"user_id": "user_id", "item_id": "item_id", "rating": "rating", "event_ts": "timestamp"},
    )


def write(path, text: str):
    path.write_text(text)
    return path


def test_checksum_is_the_sha256_of_the_bytes(spark, tmp_path):
    path = write(tmp_path / "a.csv", HEADER + "u1,i1,4.0,1600000000\n")

    assert file_checksum(spark, str(path)) == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_is_never_ingested_twice_and_a_changed_file_is_detected(spark, tmp_path, caplog):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write(inbox / "a.csv", HEADER + "u1,i1,4.0,1600000000\n")
    write(inbox / "b.csv", HEADER + "u2,i1,3.0,1600000000\n")

    night1 = compare_with_manifest(spark, "events", list_input_files(spark, [str(inbox)]), None)
    manifest = manifest_rows(spark, "events", night1, NIGHT1, NIGHT1)

    assert [f.path.rsplit("/", 1)[1] for f in night1.to_read] == ["a.csv", "b.csv"]
    assert manifest.count() == 2

    # Night 2: a.csv untouched, b.csv rewritten with other content, c.csv a copy of a.csv, d.csv new.
    write(inbox / "b.csv", HEADER + "u2,i1,3.0,1600000000\nu3,i1,5.0,1600000000\n")
    write(inbox / "c.csv", (inbox / "a.csv").read_text())
    write(inbox / "d.csv", HEADER + "u4,i2,2.0,1600000000\n")
    night2 = compare_with_manifest(spark, "events", list_input_files(spark, [str(inbox)]), manifest)

    def names(entries):
        return [e.file.path.rsplit("/", 1)[1] for e in entries]

    assert (names(night2.new), names(night2.changed), names(night2.unchanged), names(night2.copies)) == (
        ["d.csv"], ["b.csv"], ["a.csv"], ["c.csv"],
    )  # fmt: skip
    assert any("b.csv changed since it was ingested on 2024-01-01" in r.getMessage() for r in caplog.records)

    manifest = manifest.unionByName(manifest_rows(spark, "events", night2, NIGHT2, NIGHT2))
    night3 = compare_with_manifest(spark, "events", list_input_files(spark, [str(inbox)]), manifest, verify=True)
    assert night3.to_read == []
    assert sorted(names(night3.unchanged)) == ["a.csv", "b.csv", "d.csv"]


def test_same_size_and_time_skips_hashing_unless_verified(spark, tmp_path):
    path = write(tmp_path / "a.csv", HEADER + "u1,i1,4.0,1600000000\n")
    files = list_input_files(spark, [str(path)])
    manifest = manifest_rows(spark, "events", compare_with_manifest(spark, "events", files, None), NIGHT1, NIGHT1)
    stat = os.stat(path)
    write(path, HEADER + "u1,i1,5.0,1600000000\n")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same modification time
    files = list_input_files(spark, [str(path)])

    assert len(compare_with_manifest(spark, "events", files, manifest).unchanged) == 1
    assert len(compare_with_manifest(spark, "events", files, manifest, verify=True).changed) == 1


def night_candidates(spark, directory, night: dt.date, files=None):
    source = events_source(directory)
    validated = validate_interactions(read_source(spark, source, files=files), source, LATEST)
    return validated, to_silver_candidates(validated, night, f"run-{night}")


def test_incremental_silver_equals_a_full_rebuild(spark, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write(inbox / "n1.csv", HEADER + "u1,i1,4.0,1600000000\nu2,i1,3.0,1600000000\nu3,i2,2.0,1600000000\n")
    files1 = list_input_files(spark, [str(inbox)])
    manifest = manifest_rows(spark, "events", compare_with_manifest(spark, "events", files1, None), NIGHT1, NIGHT1)
    _, night1 = night_candidates(spark, inbox, NIGHT1)
    silver1 = apply_merge(None, merge_into_silver(None, night1)).localCheckpoint()
    write(
        inbox / "n2.csv",
        HEADER
        + "u1,i1,4.0,1600000000\n"  # identical re-delivery: a duplicate, stored row stays
        + "u2,i1,1.0,1600000000\n"  # conflict: the later night wins, the stored row is retired
        + "u4,i3,5.0,1600000000\n"  # new event
        + "u4,i3,4.5,1600000000\n"  # same file, later line wins over the line above
        + "bad,row\n",  # malformed: quarantined by validation
    )
    to_read = compare_with_manifest(spark, "events", list_input_files(spark, [str(inbox)]), manifest).to_read
    validated2, night2 = night_candidates(spark, inbox, NIGHT2, files=to_read)

    merge = merge_into_silver(silver1, night2)
    incremental = apply_merge(silver1, merge)

    full = deduplicate_interactions(night1.unionByName(night2))
    assert_df_equality(incremental, full, ignore_row_order=True, ignore_nullable=True)
    assert [f.path.rsplit("/", 1)[1] for f in to_read] == ["n2.csv"]
    assert sorted((r.user_id, r.item_id, r.rating) for r in incremental.collect()) == [
        ("u1", "i1", 4.0), ("u2", "i1", 1.0), ("u3", "i2", 2.0), ("u4", "i3", 4.5),
    ]  # fmt: skip
    assert [(r.user_id, r.rating, r.ingest_date) for r in merge.retire.collect()] == [("u2", 3.0, NIGHT1)]
    assert incremental.filter("user_id = 'u1'").first().ingest_date == NIGHT1
    duplicates, conflicts = merge_counts(merge)
    accounting = RowAccounting(
        rows_read=validated2.count(),
        rows_valid=night2.count(),
        rows_quarantined=to_quarantine_rows(validated2, NIGHT2, "r").count(),
        silver_rows_kept=silver1.count(),
        duplicates_removed=duplicates,
        conflicts_quarantined=conflicts,
        silver_rows=incremental.count(),
    )
    accounting.check()
    assert (accounting.rows_read, accounting.rows_quarantined, duplicates, conflicts) == (5, 1, 1, 2)
    stored_loser = conflict_quarantine_rows(merge.conflicts, NIGHT2, "r").filter("raw_record like '{%'").first()
    assert '"user_id":"u2"' in stored_loser.raw_record and '"rating":3.0' in stored_loser.raw_record
