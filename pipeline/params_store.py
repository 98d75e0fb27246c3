"""The params files on disk: candidates, ``params/current.json``, ``params/history/``, the schema.

``params/current.json`` holds the params in force; ``params/history/`` keeps every file ever
installed and every rejected candidate, named ``<created_at UTC>-<sha256[:12]>-<promoted|rejected>.json``.
The file itself (model, validation, parsing, canonical bytes) is ``research.params``; this module
writes it, files it, compares two of them, and stamps the code version (git) into new ones.
All writes are atomic (``data_lake.atomic``): a reader sees the old file or the new one.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from data_lake.atomic import atomic_write_bytes, writer_lock
from research.params import ParamsFile, dumps, load, schema_bytes

CURRENT, HISTORY = "current.json", "history"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "params" / "schema.json"


# -- writing and installing ----------------------------------------------------------------------


def write_candidate(pf: ParamsFile, path: str | Path) -> Path:
    """Write a params file atomically anywhere (e.g. the run folder); return its path."""
    path = Path(path)
    atomic_write_bytes(dumps(pf), path)
    return path


def history_name(pf: ParamsFile) -> str:
    """``20240502T220501Z-1a2b3c4d5e6f-promoted.json``: sortable by time, unique by content."""
    outcome = "promoted" if pf.verdict.promoted else "rejected"
    return f"{pf.created_at:%Y%m%dT%H%M%SZ}-{pf.sha256()[:12]}-{outcome}.json"


def install(pf: ParamsFile, params_dir: str | Path) -> Path:
    """File ``pf`` in history and, only if promoted, make it ``current.json``; return the history path.

    A rejected file never touches an existing current.json. With no file in force at all, a
    rejected file (all of whose entries are flat: nothing could be kept) becomes current.json, so
    "trade nothing" is stated explicitly instead of being a missing file. A promoted one must have been decided against
    the file in force (``verdict.previous_sha256``): if current.json changed meanwhile (another
    job), this raises instead of silently dropping that job's entries.
    """
    params_dir = Path(params_dir)
    current, hist = params_dir / CURRENT, params_dir / HISTORY / history_name(pf)
    data = dumps(pf)
    with writer_lock(params_dir / HISTORY):  # lock file: params/history/.writer.lock
        if pf.verdict.promoted and current.exists():
            in_force = load(current).sha256()
            if in_force != pf.verdict.previous_sha256:
                raise ValueError(f"{current} changed since this file was decided (in force {in_force[:12]}, "
                                 f"verdict.previous_sha256 {(pf.verdict.previous_sha256 or 'none')[:12]}): "
                                 "run decide() again against the file in force")
        first_flat = not current.exists() and all(e.status == "flat" for e in pf.entries)
        atomic_write_bytes(data, hist)
        if pf.verdict.promoted or first_flat:
            atomic_write_bytes(data, current)
    return hist


# -- comparing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One difference between two params files (key fields are None for provenance rows)."""

    change: Literal["added", "removed", "changed", "provenance"]
    strategy: str | None
    symbol: str | None
    regime: str | None
    fields: tuple[str, ...]
    detail: str


def params_text(params: Mapping[str, Any]) -> str:
    """'fast=10 slow=50': params as one short string."""
    return " ".join(f"{k}={v}" for k, v in params.items())


def _changes(a: Mapping[str, Any], b: Mapping[str, Any], unset: str = "(none)") -> list[str]:
    return [f"{k} {a.get(k, unset)} -> {b.get(k, unset)}" for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def diff(a: ParamsFile, b: ParamsFile) -> list[DiffRow]:
    """What changed from a to b: provenance first, then entries added, removed or changed.

    An entry counts as changed when what it trades changes: status, params or exit_rules (new
    metrics for the same params are not a change).
    """
    skip = {"entries": True, "verdict": {"reasons"}}
    pa, pb = _flat(a.model_dump(mode="json", exclude=skip)), _flat(b.model_dump(mode="json", exclude=skip))
    rows = [DiffRow("provenance", None, None, None, (k,), f"{pa.get(k)} -> {pb.get(k)}")
            for k in dict.fromkeys([*pa, *pb]) if pa.get(k) != pb.get(k)]
    ea, eb = {e.key: e for e in a.entries}, {e.key: e for e in b.entries}
    for key in [*ea, *(k for k in eb if k not in ea)]:
        old, new = ea.get(key), eb.get(key)
        if old is None or new is None:
            e = new or old
            rows.append(DiffRow("added" if old is None else "removed", *key, (),
                                f"{e.status} {params_text(e.params)}".strip()))
            continue
        parts = {"status": _changes({"status": old.status}, {"status": new.status}),
                 "params": _changes(old.params, new.params, "(default)"),  # absent = the strategy's default
                 "exit_rules": _changes(old.exit_rules.model_dump(), new.exit_rules.model_dump())}
        if any(parts.values()):
            rows.append(DiffRow("changed", *key, tuple(k for k, v in parts.items() if v),
                                "; ".join(c for v in parts.values() for c in v)))
    return rows


# -- schema and provenance -----------------------------------------------------------------------


def write_schema(path: str | Path = SCHEMA_PATH) -> Path:
    """Write the JSON Schema atomically (default: the checked-in ``params/schema.json``)."""
    path = Path(path)
    atomic_write_bytes(schema_bytes(), path)
    return path


def code_version() -> str:
    """``git describe --always --dirty`` of the project checkout, else ``tradelab <package version>``."""
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            r = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True,
                               text=True, timeout=10, check=True)
            if r.stdout.strip():
                return r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return f"tradelab {importlib.metadata.version('tradelab')}"
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
