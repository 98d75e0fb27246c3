"""Point numba's on-disk cache at a folder keyed by a hash of all research sources.

numba invalidates a cached kernel only when *its own* file changes; a cached kernel that calls a
kernel in another module would keep running the old compiled copy after that module is edited.
Keying the cache folder by the content of every research module makes any edit start a fresh
cache, while unchanged code still loads compiled kernels from disk in every new process.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba


def configure() -> Path:
    """Set numba.config.CACHE_DIR (before any kernel is decorated) and return it."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(here.rglob("*.py")):
        digest.update(str(path.relative_to(here)).encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("NUMBA_CACHE_DIR") or Path.home() / ".cache" / "tradelab" / "numba")
    folder = base / digest.hexdigest()[:16]
    numba.config.CACHE_DIR = str(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)  # "used now": what prune() reads
    except OSError:
        pass  # a read-only home: numba falls back on its own
    prune(base, keep=folder)
    return folder


def prune(base: Path, keep: Path, max_age_days: float = 14.0) -> list[Path]:
    """Delete cache folders of older code that no process used for ``max_age_days`` (their mtime):
    every edit of research/ starts a new folder, and nothing else ever removes the old ones."""
    import shutil
    import time

    removed = []
    cutoff = time.time() - max_age_days * 86400
    try:
        old = [p for p in base.iterdir() if p.is_dir() and p != keep and p.stat().st_mtime < cutoff]
    except OSError:  # no cache yet, or not readable: nothing to prune
        return removed
    for p in old:
        shutil.rmtree(p, ignore_errors=True)  # another process may be pruning too
        removed.append(p)
    return removed
