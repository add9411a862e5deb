"""SourceSettings / IngestSettings validate themselves in plain Python, before any Spark exists."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from recspark.ingest.settings import IngestSettings, SourceSettings, SourceConfigError, validate_source

pytestmark = pytest.mark.unit

PLAYS = {"user_id": "user", "item_id": "item", "weight": "count"}


def source(**changes) -> dict:
    return {"name": "plays", "kind": "interactions", "paths": ["/data/plays.tsv"], "columns": PLAYS,
            "event_time": "run_date", **changes}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event_time": None}, r"source 'plays': columns must map \['event_ts'\] \(or set event_time: run_date"),
        ({"event_time": "yesterday"}, "source 'plays': event_time must be run_date | file_modified | constant"),
        ({"event_time": "run_date now"}, "event_time must be"),
        ({"event_time": "constant"}, "event_time constant needs an ISO timestamp"),
        ({"event_time": "constant 2024-13-01"}, r"got '2024-13-01'"),
        ({"columns": {**PLAYS, "event_ts": "t"}}, "map event_ts or set event_time, not both"),
        ({"kind": "items", "columns": {"item_id": "i"}}, "event_time only applies to kind interactions"),
        ({"kind": "users"}, "source 'plays': kind must be one of"),
        ({"format": "xlsx"}, "format must be one of"),
        ({"paths": []}, "paths is empty"),
        ({"columns": {**PLAYS, "title": "t"}}, r"unknown canonical column\(s\) \['title'\]"),
        ({"timestamp_unit": "minutes"}, "timestamp_unit must be one of"),
        ({"delimiter": ""}, "delimiter is empty"),
        ({"quote": "''"}, "quote must be one character or empty"),
        ({"rating_min": 5.0, "rating_max": 1.0}, "rating_min 5.0 is greater than rating_max 1.0"),
        ({"name": " "}, "source name is empty"),
    ],
)
def test_bad_sources_raise_on_construction_naming_source_and_field(changes, message):
    with pytest.raises(SourceConfigError, match=message):
        SourceSettings(**source(**changes))


def test_weight_only_source_without_event_time_column_is_valid():
    plays = SourceSettings(**source())

    validate_source(plays)
    assert plays.multiline is True


def test_validate_source_rechecks_a_changed_source():
    plays = SourceSettings(**source())
    plays.event_time = "sometime"

    with pytest.raises(SourceConfigError, match="event_time must be"):
        validate_source(plays)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"preset": "ml-25m"}, "ingest.preset must be one of"),
        ({"future_tolerance_hours": -1.0}, "future_tolerance_hours must be >= 0"),
        ({"sources": [SourceSettings(**source()), SourceSettings(**source())]}, r"repeated: \['plays'\]"),
    ],
)
def test_bad_ingest_settings_raise(changes, message):
    with pytest.raises(SourceConfigError, match=message):
        IngestSettings(**changes)


def test_errors_arrive_without_a_spark_session_or_jvm():
    script = textwrap.dedent(
        """
        import sys
        from recspark.ingest.settings import SourceSettings, SourceConfigError
        try:
            SourceSettings(name="plays", kind="interactions", paths=["x"], columns={"user_id": "u", "item_id": "i"})
        except SourceConfigError as exc:
            print(exc)
        from pyspark import SparkContext
        assert SparkContext._active_spark_context is None and SparkContext._gateway is None
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )

    assert result.stdout.startswith("source 'plays': columns must map ['event_ts']")
