"""Progress with an ETA for long loops (ALS trials, candidate sources) and for ``recspark run``.

On a terminal the progress is one line on stderr, rewritten in place and ended when the work is
done. Anywhere else (Airflow task logs, cron, a file) it is a plain ``INFO`` log line at most every
``interval_s`` seconds, plus one at the end, so logs stay readable and grep-able:

    recspark run: 5/12 stages (embed-items done), 3m10s elapsed, ETA 2m05s

Work is counted in units of any size: ``total`` units, ``advance(units)``. With per-step
expected costs (e.g. each stage's median wall time over past nights) the ETA is the remaining
expected cost scaled by how fast tonight's run goes compared with the expectation; otherwise it
is the linear extrapolation of the elapsed time.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger(__name__)


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class Progress:
    """Progress of ``total`` units of work called ``label``, counted in ``unit``.

    ``steps``: how many named steps the work has (shown as ``done/steps``; default: the units).
    ``stream``: where the terminal line goes (default ``sys.stderr``); when it is not a TTY, or
    ``terminal`` is False (work whose steps log lines of their own), progress goes to the log
    every ``interval_s`` seconds instead. ``clock``: seconds, monotonic.
    """

    def __init__(self, label: str, total: float, unit: str = "steps", steps: int | None = None,
                 interval_s: float = 30.0, stream: TextIO | None = None, terminal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if total <= 0:
            raise ValueError(f"progress total must be > 0, got {total}")
        self.label, self.total, self.unit = label, float(total), unit
        self.steps = steps if steps is not None else int(total)
        self.interval_s = interval_s
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.done_units = 0.0
        self.done_steps = 0
        self._last_logged = self.started
        if terminal is None:
            terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._terminal = terminal

    def eta_s(self) -> float | None:
        """Seconds left, or None before any work is done."""
        if self.done_units <= 0:
            return None
        elapsed = self.clock() - self.started
        return elapsed / self.done_units * (self.total - self.done_units)

    def line(self, note: str = "") -> str:
        """The progress as one line of text."""
        elapsed = self.clock() - self.started
        text = f"{self.label}: {self.done_steps}/{self.steps} {self.unit}"
        if note:
            text += f" ({note})"
        text += f", {format_seconds(elapsed)} elapsed"
        eta = self.eta_s()
        if self.done_steps >= self.steps:
            return text + ", done"
        return text + (f", ETA {format_seconds(eta)}" if eta is not None else "")

    def advance(self, units: float = 1.0, note: str = "") -> None:
        """Record one finished step worth ``units`` and show the progress."""
        self.done_units = min(self.total, self.done_units + units)
        self.done_steps += 1
        finished = self.done_steps >= self.steps
        if self._terminal:
            self.stream.write("\r\x1b[2K" + self.line(note) + ("\n" if finished else ""))
            self.stream.flush()
            return
        now = self.clock()
        if finished or now - self._last_logged >= self.interval_s:
            self._last_logged = now
            log.info("%s", self.line(note))
