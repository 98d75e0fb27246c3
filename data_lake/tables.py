"""Derived tables in the lake (regimes, ...): one immutable Parquet file per (name, key).

Layout::

    <root>/tables/<name>/<key>/part-<generation>-<id>.parquet

A table is whatever research computes and wants queryable next to the bars (``SELECT * FROM
regimes``); the lake stays its only writer. Each write replaces one key's file as a bar write
replaces a partition: a new uniquely named file, then the manifest swap (the commit point), the
old file retired for the grace period. A failed write leaves the previous file current, and the
next write removes whatever it left behind. The DuckDB view of a table (catalog.py) is the union
of its keys' files, so each file should carry its key as a column (``benchmark`` for regimes).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_write_table, writer_lock
from .schema import LakeError
from .store import Lake, remove_orphans

RESERVED = frozenset({"bars", "quarantine"})  # the catalog's own views
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # a DuckDB view name that needs no quoting
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # one folder name; no '=' (hive)


def check_table_name(name: str) -> str:
    """Return the name if it can be a table (lowercase identifier, not a built-in view)."""
    if not _NAME_RE.match(name) or name in RESERVED:
        others = ", ".join(sorted(RESERVED))
        raise LakeError(f"invalid table name {name!r}: use a lowercase identifier other than {others}")
    return name


def check_table_key(key: str) -> str:
    """Return the key if it can be one folder name (letters, digits, '.', '_', '-')."""
    if not _KEY_RE.match(key) or key in (".", ".."):
        raise LakeError(f"invalid table key {key!r}: use letters, digits, '.', '_' or '-' (such as a symbol)")
    return key


def table_dir(lake: Lake, name: str, key: str) -> Path:
    """The folder holding the files of one table key."""
    return lake.root / "tables" / name / key


def write_table(lake: Lake | str, name: str, key: str, table: pa.Table | pd.DataFrame) -> str:
    """Replace the file of ``name``/``key`` with ``table`` atomically; return its path in the lake."""
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    name, key = check_table_name(name), check_table_key(key)
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    if not isinstance(table, pa.Table):
        raise TypeError(f"write_table takes a pyarrow Table or a DataFrame, not {type(table).__name__}")
    with writer_lock(lake.root):
        manifest = lake.manifest()
        manifest.collect(lake.root, lake.grace_seconds)
        remove_orphans(lake.root, manifest)  # files of writes killed before their commit
        folder = table_dir(lake, name, key)
        path = folder / f"part-{manifest.generation + 1:08d}-{uuid.uuid4().hex[:12]}.parquet"
        atomic_write_table(table, path)
        rel = str(path.relative_to(lake.root))
        manifest.replace_table(name, key, rel)
        manifest.save(lake.root)  # the commit point
    return rel


def table_files(lake: Lake | str, name: str | None = None) -> dict[str, dict[str, str]]:
    """The current files of every table (or one): name -> key -> absolute path, one manifest read."""
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    tables = lake.manifest().tables
    return {
        n: {k: str(lake.root / rel) for k, rel in sorted(keys.items())}
        for n, keys in sorted(tables.items()) if name is None or n == name
    }


def read_table(lake: Lake | str, name: str, key: str | None = None) -> pd.DataFrame:
    """One key of a table, or all its keys concatenated (in key order), as a DataFrame."""
    name = check_table_name(name)
    files = table_files(lake, name).get(name, {})
    if key is not None:
        files = {k: p for k, p in files.items() if k == check_table_key(key)}
    if not files:
        what = f"table {name!r}" + (f" key {key!r}" if key is not None else "")
        raise LakeError(f"the lake holds no {what}")
    tables = [pq.read_table(p) for p in files.values()]
    merged = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    return merged.to_pandas()
