"""Crash-safe file writes and the lake's writer lock.

A file is written to a temporary name in its own folder, flushed and fsynced, then renamed over
the target (``os.replace`` is atomic on POSIX), and the folder is fsynced so the rename itself
survives a power cut. A reader therefore sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "write_statistics": True}


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_table(table: pa.Table, path: Path, **options: object) -> None:
    """Write a Parquet file atomically (temp file, fsync, rename, fsync folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, **{**PARQUET_OPTIONS, **options})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write bytes atomically (temp file, fsync, rename, fsync folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_stale_temps(root: Path) -> int:
    """Delete temp files left by a writer that was killed mid-write; return how many."""
    n = 0
    for p in root.rglob(".*.tmp-*"):
        p.unlink(missing_ok=True)
        n += 1
    return n


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Hold the lake's exclusive writer lock (one writer at a time; readers never wait)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".writer.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
