"""Orphan part files: files in a table folder that no version retained in the Delta log refers
to (left by a writer killed before its commit). Engine-independent: reads the log directly."""
from __future__ import annotations

import json
import logging
import os
import time
from urllib.parse import unquote

import pyarrow.fs as pafs

log = logging.getLogger(__name__)


def referenced_files(location: str) -> set[str]:
    """Table-relative paths of every file named by the retained log: the snapshot of the oldest
    loadable version, and every add or remove action of the retained commit files."""
    from deltalake import DeltaTable

    filesystem, root = pafs.FileSystem.from_uri(_uri(location))
    log_dir = f"{root}/_delta_log"
    names = [i.base_name for i in filesystem.get_file_info(pafs.FileSelector(log_dir))]
    commit_versions = sorted(int(n.split(".")[0]) for n in names if n.endswith(".json") and n[:20].isdigit())
    checkpoint_versions = sorted(int(n.split(".")[0]) for n in names if ".checkpoint." in n)
    referenced: set[str] = set()
    for version in sorted(set(commit_versions[:1] + checkpoint_versions)):
        try:
            table = DeltaTable(location, version=version)
        except Exception:  # a version whose log was cleaned up: try the next one
            continue
        referenced |= {_relative(p, root) for p in table.file_uris()}
        break
    for version in commit_versions:
        with filesystem.open_input_stream(f"{log_dir}/{version:020d}.json") as stream:
            for line in stream.read().decode().splitlines():
                if line.strip():
                    action = json.loads(line)
                    for kind in ("add", "remove"):
                        if kind in action:
                            referenced.add(_relative(action[kind]["path"], root))
    return referenced


def remove_orphan_files(location: str, grace_period_s: float = 3600.0) -> list[str]:
    """Delete the files under ``location`` that no retained version refers to and that were last
    modified more than ``grace_period_s`` seconds ago (so an in-flight writer's files are never
    touched). Names starting with ``_`` or ``.`` (the log, hidden files) are skipped. Returns the
    table-relative paths removed."""
    filesystem, root = pafs.FileSystem.from_uri(_uri(location))
    referenced = referenced_files(location)
    cutoff_ns = (time.time() - grace_period_s) * 1e9
    removed = []
    for info in filesystem.get_file_info(pafs.FileSelector(root, recursive=True)):
        relative = info.path[len(root):].lstrip("/")
        if info.type != pafs.FileType.File or any(part[:1] in "_." for part in relative.split("/")):
            continue
        if relative in referenced or info.mtime_ns is None or info.mtime_ns > cutoff_ns:
            continue
        filesystem.delete_file(info.path)
        removed.append(relative)
    if removed:
        log.warning("removed %d orphan file(s) from %s", len(removed), location)
    return sorted(removed)


def _uri(location: str) -> str:
    return location if "://" in location else os.path.abspath(location)


def _relative(path: str, root: str) -> str:
    path = unquote(path)
    if "://" in path:
        path = path.split("://", 1)[1]
        path = path[path.index("/"):] if not path.startswith("/") else path
    return path[len(root):].lstrip("/") if path.startswith(root) else path
