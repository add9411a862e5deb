"""Per-warehouse run lock: stages that must not overlap hold ``<warehouse>/_locks/<name>.lock``.

The lock file is created exclusively and holds the holder's pid, host, run id, stage and start
time (JSON). A lock whose process is gone (same host, pid no longer alive or reused) is stale and
taken over; a live holder gives :class:`WarehouseLockedError` with a message saying who holds it.
A short ``flock`` on ``<name>.lock.guard`` makes the check-and-take atomic between processes of
one host. Re-entering the lock in the process that holds it is allowed (``recspark run`` wraps
several stages). Local warehouses only: for URIs (s3://, abfss://) it logs a warning and does
not lock.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_held: dict[str, int] = {}  # lock path -> nesting depth in this process


class WarehouseLockedError(RuntimeError):
    """Another live recspark run holds the warehouse lock."""


def process_start_token(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid
    from the original process; None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, start_token: str | None = None) -> bool:
    """Whether process ``pid`` of this host runs (and, given ``start_token``, is the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, not yet reaped by its parent
    except OSError:
        pass
    if start_token is not None:
        current = process_start_token(pid)
        return current is None or current == start_token
    return True


def _holder_is_dead(holder: dict) -> bool:
    return holder.get("host") == socket.gethostname() and not process_alive(
        int(holder.get("pid", -1)), holder.get("pid_start")
    )


@contextlib.contextmanager
def warehouse_lock(warehouse: str, run_id: str, stage: str, name: str = "warehouse",
                   wait_s: float = 0.0, poll_s: float = 1.0) -> Iterator[Path | None]:
    """Hold the exclusive lock ``<warehouse>/_locks/<name>.lock`` for the block.

    wait_s: seconds to wait for a live holder to finish before raising WarehouseLockedError.
    Yields the lock file's path (None for a non-local warehouse).
    """
    if "://" in warehouse and not warehouse.startswith("file://"):
        log.warning("warehouse %s is not local: runs are not locked against each other", warehouse)
        yield None
        return
    folder = Path(warehouse.removeprefix("file://")).absolute() / "_locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    key = str(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield path
        finally:
            _held[key] -= 1
        return
    deadline = time.monotonic() + wait_s
    while not _try_acquire(path, run_id, stage):
        holder = _read_holder(path)
        if time.monotonic() >= deadline:
            raise WarehouseLockedError(
                f"another recspark run (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, run "
                f"{holder.get('run_id', '?')}, stage {holder.get('stage', '?')}, started {holder.get('started_at', '?')}) "
                f"holds the warehouse lock; wait or remove {path} if it is dead"
            )
        time.sleep(poll_s)
    _held[key] = 1
    try:
        yield path
    finally:
        del _held[key]
        _release(path)


@contextlib.contextmanager
def _guard(path: Path) -> Iterator[None]:
    with open(f"{path}.guard", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _try_acquire(path: Path, run_id: str, stage: str) -> bool:
    holder = {
        "pid": os.getpid(),
        "pid_start": process_start_token(os.getpid()),
        "host": socket.gethostname(),
        "run_id": run_id,
        "stage": stage,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    with _guard(path):
        if path.exists():
            existing = _read_holder(path)
            if not _holder_is_dead(existing):
                return False
            log.warning("removing stale warehouse lock %s of dead process %s", path, existing)
            path.unlink()
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as out:
            json.dump(holder, out)
    return True


def _release(path: Path) -> None:
    with _guard(path):
        holder = _read_holder(path)
        if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            path.unlink(missing_ok=True)
