"""The lake's manifest: which immutable Parquet file is the current one of each partition.

Why a manifest: DuckDB opens a Parquet file several times during one query (to bind the schema,
then to scan), so replacing a file in place under a running query could hand it the footer of the
old file and the pages of the new one. Instead, partition files are never modified: a write adds
new uniquely named files, then swaps ``_manifest.json`` atomically (temp, fsync, rename). A reader
takes the manifest once and reads exactly those files: a snapshot, old or new, never a mix, and a
multi-partition write becomes visible all at once. Superseded files are kept for a grace period
(so snapshots taken before the swap stay readable), then deleted by a later write.

Derived tables (tables.py) follow the same rule under ``tables``: name -> key -> file. A manifest
without that section (written before tables existed) reads as holding no tables.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_bytes

MANIFEST = "_manifest.json"
FORMAT_VERSION = 1


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
        """Delete retired files older than the grace period; return how many went."""
        now, gone = time.time(), 0
        for rel, at in list(self.retired.items()):
            if now - at >= grace_seconds:
                (root / rel).unlink(missing_ok=True)
                del self.retired[rel]
                gone += 1
        return gone

    def known(self) -> set[str]:
        """Every file the manifest refers to, current or retired."""
        tables = {rel for keys in self.tables.values() for rel in keys.values()}
        return set(self.partitions.values()) | tables | set(self.retired)
