"""The lake's manifest: which immutable Parquet file is the current one of each partition.

Why a manifest: DuckDB opens a Parquet file several times during one query (to bind the schema,
then to scan), so replacing a file in place under a running query could hand it the footer of the
old file and the pages of the new one. Instead, partition files are never modified: a write adds
new uniquely named files, then swaps ``_manifest.json`` atomically (temp, fsync, rename). A reader
takes the manifest once and reads exactly those files: a snapshot, old or new, never a mix, and a
multi-partition write becomes visible all at once. Superseded files are kept for a grace period
(so snapshots taken before the swap stay readable), then deleted by a later write. A job that
reads for longer (a weekend sweep) takes a *lease* (``_readers/``): while its process lives, no
file retired after the lease was taken is deleted, whatever the grace. Files no manifest ever
listed (a writer killed before its commit) are deleted by the next write anywhere in the lake: no
snapshot can hold them.

Derived tables (tables.py) follow the same rule under ``tables``: name -> key -> file. A manifest
without that section (written before tables existed) reads as holding no tables.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_bytes

MANIFEST = "_manifest.json"
FORMAT_VERSION = 1
READERS = "_readers"
LEASE_MAX_SECONDS = 7 * 86400.0  # a lease older than this no longer holds files (a forgotten kernel)


@dataclass
class Manifest:
    """Current partition files by key ``timeframe/symbol/year``, and retired files awaiting deletion."""

    partitions: dict[str, str] = field(default_factory=dict)  # key -> path relative to the lake root
    retired: dict[str, float] = field(default_factory=dict)  # relative path -> unix time retired
    generation: int = 0
    tables: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> key -> relative path

    @staticmethod
    def key(timeframe: str, symbol: str, year: int) -> str:
        return f"{timeframe}/{symbol}/{year}"

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        """The manifest on disk (an empty one for a new lake)."""
        path = root / MANIFEST
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported manifest format {data.get('format')!r}")
        tables = {name: dict(keys) for name, keys in data.get("tables", {}).items()}
        return cls(dict(data["partitions"]), dict(data["retired"]), int(data["generation"]), tables)

    def save(self, root: Path) -> None:
        """Swap the manifest atomically (the commit point of every write)."""
        self.generation += 1
        body = {"format": FORMAT_VERSION, "generation": self.generation,
                "partitions": dict(sorted(self.partitions.items())), "retired": self.retired}
        if self.tables:  # absent when empty: manifests of lakes without tables stay as they were
            body["tables"] = {name: dict(sorted(keys.items())) for name, keys in sorted(self.tables.items())}
        atomic_write_bytes(json.dumps(body, indent=1).encode(), root / MANIFEST)

    def replace(self, key: str, new_path: str | None) -> None:
        """Point a partition at a new file (None removes it); the old file is retired."""
        old = self.partitions.pop(key, None)
        if old is not None:
            self.retired[old] = time.time()
        if new_path is not None:
            self.partitions[key] = new_path

    def replace_table(self, name: str, key: str, new_path: str | None) -> None:
        """Point a table's key at a new file (None removes it); the old file is retired."""
        keys = self.tables.setdefault(name, {})
        old = keys.pop(key, None)
        if old is not None:
            self.retired[old] = time.time()
        if new_path is not None:
            keys[key] = new_path
        if not keys:
            del self.tables[name]

    def collect(self, root: Path, grace_seconds: float) -> int:
        """Delete retired files older than the grace period and not held by a lease; return how many went."""
        now, gone = time.time(), 0
        held_from = min(live_leases(root), default=float("inf"))  # files retired after this are held
        for rel, at in list(self.retired.items()):
            if now - at >= grace_seconds and at < held_from:
                (root / rel).unlink(missing_ok=True)
                del self.retired[rel]
                gone += 1
        return gone

    def known(self) -> set[str]:
        """Every file the manifest refers to, current or retired."""
        tables = {rel for keys in self.tables.values() for rel in keys.values()}
        return set(self.partitions.values()) | tables | set(self.retired)


def take_lease(root: Path) -> Path | None:
    """Hold every file current now until the lease is released (``release``) or its process ends.

    Returns None when the lake is read-only to this process: the grace period alone protects it then.
    """
    path = root / READERS / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.lease"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{time.time()!r}\n")
    except OSError:
        return None
    return path


def release(lease: Path) -> None:
    lease.unlink(missing_ok=True)


def live_leases(root: Path) -> list[float]:
    """When each live lease was taken; a lease of a dead process (or too old) is removed."""
    folder = root / READERS
    if not folder.is_dir():
        return []
    out, now = [], time.time()
    for p in folder.glob("*.lease"):
        try:
            pid, taken = int(p.name.split("-", 1)[0]), float(p.read_text())
        except (OSError, ValueError):
            continue  # being written right now, or not ours: it holds nothing
        if now - taken > LEASE_MAX_SECONDS or not _alive(pid):
            p.unlink(missing_ok=True)
            continue
        out.append(taken)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
