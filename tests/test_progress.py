"""Progress lines and ETAs with a fake clock; expected stage costs from past nights."""
from __future__ import annotations

import io
import logging

import pytest

from recspark.pipeline.runner import expected_stage_seconds
from recspark.progress import Progress, format_seconds

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_seconds_read_as_an_operator_writes_them():
    assert [format_seconds(s) for s in (0, 42.4, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


def test_eta_scales_the_remaining_expected_cost_by_tonights_speed(caplog):
    clock = FakeClock()
    progress = Progress("run", total=100.0, unit="stages", steps=3, interval_s=0.0, terminal=False, clock=clock)
    assert progress.eta_s() is None
    clock.now += 50.0  # the first stage was expected to cost 25 of 100 units and took 50 s: twice as slow
    with caplog.at_level(logging.INFO, logger="recspark.progress"):
        progress.advance(25.0, note="ingest done")
    assert progress.eta_s() == pytest.approx(150.0)
    assert caplog.messages == ["run: 1/3 stages (ingest done), 50s elapsed, ETA 2m30s"]


def test_log_lines_are_throttled_but_the_last_step_always_logs(caplog):
    clock = FakeClock()
    progress = Progress("search", total=4, unit="trials", interval_s=30.0, stream=io.StringIO(), clock=clock)
    with caplog.at_level(logging.INFO, logger="recspark.progress"):
        for seconds in (10.0, 10.0, 15.0, 1.0):
            clock.now += seconds
            progress.advance()
    assert caplog.messages == ["search: 3/4 trials, 35s elapsed, ETA 12s", "search: 4/4 trials, 36s elapsed, done"]


def test_a_terminal_gets_one_line_rewritten_in_place():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    clock, out = FakeClock(), Terminal()
    progress = Progress("encode", total=2, unit="batches", stream=out, clock=clock)
    clock.now += 4.0
    progress.advance()
    clock.now += 4.0
    progress.advance()
    assert out.getvalue() == ("\r\x1b[2Kencode: 1/2 batches, 4s elapsed, ETA 4s"
                              "\r\x1b[2Kencode: 2/2 batches, 8s elapsed, done\n")


def test_expected_stage_costs_are_past_medians_and_the_mean_for_new_stages():
    past = [("ingest", 10.0), ("ingest", 30.0), ("ingest", 20.0), ("train-als", 60.0)]
    assert expected_stage_seconds(["ingest", "train-als", "tune"], past) == {"ingest": 20.0, "train-als": 60.0,
                                                                             "tune": 40.0}
    assert expected_stage_seconds(["ingest", "featurize"], []) == {"ingest": 1.0, "featurize": 1.0}


def test_bad_total_is_refused():
    with pytest.raises(ValueError, match="total must be > 0"):
        Progress("x", total=0)
