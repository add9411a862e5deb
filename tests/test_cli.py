"""The CLI's stage table: every entry resolves, and one stage's process loads only its own module."""
from __future__ import annotations

import inspect
import subprocess
import sys

from recspark.cli import PIPELINE, STAGES, stage_function


def test_every_stage_resolves_to_a_stage_function():
    assert set(PIPELINE) <= set(STAGES)
    for name in STAGES:
        fn = stage_function(name)
        assert fn.__name__ == "run_" + name.replace("-", "_")
        assert list(inspect.signature(fn).parameters) == ["spark", "config", "tables", "ctx", "tracker"]


def test_importing_the_cli_loads_no_stage_heavy_module():
    heavy = ("torch", "petastorm", "sentence_transformers")
    probe = f"import sys, recspark.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
