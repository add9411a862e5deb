"""Config and source errors end ``recspark`` with exit status 2 before any JVM starts
(integration: the real CLI in fresh interpreters). No wall-time bound is asserted: under load a
fresh interpreter's imports alone vary by seconds; what matters is that no JVM was launched.

Each case runs the CLI in a fresh interpreter, as a user would, and then asks pyspark whether a
Py4J gateway (the JVM behind every SparkSession) was ever launched in that process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
# Runs the CLI's main and reports on stdout whether a JVM gateway was started.
DRIVER = textwrap.dedent(
    """
    import sys
    from recspark.cli import main
    code = main(sys.argv[1:])
    from pyspark import SparkContext
    print("jvm started:", SparkContext._gateway is not None or SparkContext._active_spark_context is not None)
    sys.exit(code)
    """
)
PLAYS = '{name: plays, kind: interactions, paths: [plays.tsv], delimiter: "\\t"'


def run_cli(*overrides: str, command: str = "run", module: bool = False) -> subprocess.CompletedProcess:
    args = [item for pair in overrides for item in ("--set", pair)] + [command]
    entry = ["-m", "recspark.cli"] if module else ["-c", DRIVER]
    return subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ((f"ingest.sources=[{PLAYS}, columns: {{user_id: user, item_id: item}}}}]",),
         "ingest.sources[0]: source 'plays': columns must map ['event_ts'] (or set event_time: run_date"),
        ((f"ingest.sources=[{PLAYS}, event_time: run_date, columns: {{user_id: user, plays: count}}}}]",),
         "source 'plays': unknown canonical column(s) ['plays'] for kind interactions"),
        ((f"ingest.sources=[{PLAYS}, event_time: constant yesterday, columns: {{user_id: user, item_id: item}}}}]",),
         "source 'plays': event_time constant needs an ISO timestamp"),
        (("ingest.preset=null",), "ingest: no interactions source configured"),
        (("als.grdi.rank=[4]",), "als: unknown key(s) ['grdi']"),
        (("featurize.split.test_ratio=1.5",), "featurize.split.test_ratio must be in [0, 1), got 1.5"),
        (("candidates.sources=[als, wals]",), "candidates.sources"),
    ],
    ids=["unmapped-event-ts", "unknown-column", "bad-event-time", "no-source", "unknown-key", "bad-value",
         "unknown-candidate-source"],
)
def test_config_error_exits_2_before_spark_starts(overrides, message):
    result = run_cli(*overrides)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in result.stderr
    assert "jvm started: False" in result.stdout
    assert "SparkContext" not in output and "Running Spark version" not in output
    assert "Traceback" not in output


def test_python_dash_m_entry_point_reports_the_source_error():
    result = run_cli(f"ingest.sources=[{PLAYS}, columns: {{user_id: user, item_id: item}}}}]", module=True)
    assert result.returncode == 2
    assert result.stderr.count("ERROR") == 1 and "source 'plays': columns must map ['event_ts']" in result.stderr
    assert "Running Spark version" not in result.stdout + result.stderr
