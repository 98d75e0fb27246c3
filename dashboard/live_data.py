"""What the live page shows, read from the runner's folder without ever getting in its way.

The runner is the state store's one writer and must never wait for the dashboard. So the store is
opened the way ``tradelab live status`` opens it (``state_schema.open_reader``: a ``mode=ro`` URI,
``query_only``, no lock taken, nothing created or migrated) with a short busy timeout: under WAL a
reader sees the last committed transaction and neither side waits for the other; if a read ever
meets a lock (a store not in WAL yet) it gives up after ``BUSY_MS`` and the page says so, rather
than hold anything. The decision log is read from its end (its last ``TAIL_BYTES``; it grows for
weeks), a torn last line skipped. ``status.json`` (the daemon's, atomically rewritten every poll),
the HALT file and the params are small files read whole. The equity marks (one a minute, ~100,000 a
year) are read once and then only from the last one on (``_marks``: older marks never change).

Every part is read on its own: a missing or damaged file blanks its own section with a one-line
reason, never the page. The snapshot is plain JSON data (no markup): the page puts it in the DOM as
text. No key is ever in it: none of the files read holds one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pandas as pd

from .config import DashboardConfig

BUSY_MS = 100
TAIL_BYTES = 1 << 18
TAIL_LINES = 60
TERMINAL = ("filled", "canceled", "expired", "rejected", "replaced")
_CACHE: dict[tuple[str, str], tuple[tuple[int, int], object]] = {}  # (what, path) -> ((size, mtime), value)
ROUTINE = {"decision", "fill", "order", "order_status", "book", "cross", "start", "reconcile", "reload"}


def tail_jsonl(path: Path, lines: int = TAIL_LINES, size: int = TAIL_BYTES) -> list[dict]:
    """The last ``lines`` JSON objects of a JSONL file, read from its end; a cut first line (mid-file)
    and a torn or unparsable line (the writer mid-append) are skipped."""
    with open(path, "rb") as f:
        start = max(0, f.seek(0, 2) - size)
        f.seek(start)
        raw = f.read(size)
    parts = raw.split(b"\n")
    if start:
        parts = parts[1:]  # the first line began before the window
    if not raw.endswith(b"\n"):
        parts = parts[:-1]  # the last line is still being written
    out = []
    for line in parts:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out[-lines:] if lines else out


def _unchanged(what: str, path: Path, load: Callable[[Path], object]) -> object:
    """``load(path)``, reused while the file's size and mtime stay the same (the page asks every second:
    an idle runner's log and params are parsed once)."""
    st = path.stat()
    key, stamp = (what, str(path)), (st.st_size, st.st_mtime_ns)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = load(path)
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = (stamp, value)
    return value


def open_store(path: Path) -> sqlite3.Connection:
    """A read-only connection to the state store (no lock; see the module doc)."""
    from live_bridge.state_schema import open_reader

    db = open_reader(path)
    db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    return db


def read_store(path: Path) -> dict:
    """Positions, open orders (with the strategy each belongs to), daily P&L, halts and the traded
    params (the store's last epoch), all from one read transaction (one consistent view)."""
    with closing(open_store(path)) as db:
        db.execute("BEGIN")  # a WAL read snapshot: every query below sees the same commit
        try:
            return _read(db)
        finally:
            db.execute("ROLLBACK")


def _read(db: sqlite3.Connection) -> dict:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    positions = [dict(zip(("strategy", "symbol", "qty", "avg_price", "realized"), r)) for r in db.execute(
        "SELECT strategy, symbol, qty, avg_price, realized FROM positions ORDER BY symbol, strategy")]
    orders = _open_orders(db, legs="legs" in tables)
    pnl = [dict(zip(("day", "strategy", "realized", "fills"), r)) for r in db.execute(
        "SELECT day, strategy, realized, fills FROM daily_pnl ORDER BY day, strategy")]
    halts = [dict(zip(("day", "scope", "reason", "at"), r)) for r in db.execute(
        "SELECT day, scope, reason, at FROM halts ORDER BY at DESC LIMIT 10")] if "halts" in tables else []
    epoch = db.execute("SELECT from_us, sha256, params, source FROM epochs ORDER BY from_us DESC LIMIT 1"
                       ).fetchone() if "epochs" in tables else None
    fills = int(db.execute("SELECT COUNT(*) FROM fills").fetchone()[0])
    executions = [dict(zip(("strategy", "symbol", "side", "qty", "price", "ts"), r)) for r in db.execute(
        "SELECT strategy, symbol, side, qty, price, timestamp FROM fills ORDER BY timestamp, rowid")]
    return {"positions": positions, "orders": orders, "daily_pnl": pnl, "halts": halts, "epoch": epoch,
            "fills": fills, "executions": executions, "marks": _marks(db)}


_MARKS: dict[str, list[tuple[int, float, float]]] = {}  # database file -> its marks, as last read


def _marks(db: sqlite3.Connection) -> list[tuple[int, float, float]]:
    """(minute UTC µs, equity, cash) of every equity mark, oldest first (none before schema 5). The
    runner only appends marks or rewrites its latest minute's, so a repeat read fetches from the last
    mark on; a count that does not add up (another file at this path) reads them all again."""
    from live_bridge.state_equity import read_marks

    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'equity_marks'").fetchone() is None:
        return []
    name = next((r[2] for r in db.execute("PRAGMA database_list") if r[1] == "main"), "")
    known = _MARKS.get(name)
    if known:
        fresh = known[:-1] + read_marks(db, known[-1][0])
        if len(fresh) == int(db.execute("SELECT COUNT(*) FROM equity_marks").fetchone()[0]):
            _MARKS[name] = fresh
            return fresh
    if len(_MARKS) > 8:
        _MARKS.clear()
    _MARKS[name] = read_marks(db)
    return _MARKS[name]


_ORDER_COLS = ("client_order_id", "symbol", "side", "qty", "filled_qty", "type", "stop_price", "limit_price",
               "status", "submitted_at")


def _open_orders(db: sqlite3.Connection, legs: bool) -> list[dict]:
    """The orders not yet final, each with its strategy: its intent's, or (an OCO's stop leg, whose id
    the broker made) its parent's, through the legs table (schema 2 on)."""
    parent = ("LEFT JOIN legs l ON l.client_order_id = o.client_order_id "
              "LEFT JOIN intents p ON p.client_order_id = l.parent") if legs else "LEFT JOIN intents p ON 0"
    rows = db.execute(
        f"SELECT {', '.join('o.' + c for c in _ORDER_COLS)}, COALESCE(i.strategy, p.strategy) FROM orders o "
        f"LEFT JOIN intents i ON i.client_order_id = o.client_order_id {parent} "
        f"WHERE o.status NOT IN ({', '.join('?' * len(TERMINAL))}) ORDER BY o.submitted_at, o.client_order_id",
        TERMINAL)
    return [dict(zip((*_ORDER_COLS, "strategy"), r)) for r in rows]


def _guard(what: str, fn: Callable[[], object], errors: list[str], default: object) -> object:
    """``fn()``, or ``default`` with a one-line reason in ``errors`` (one bad file blanks its section only)."""
    try:
        return fn()
    except FileNotFoundError:
        return default
    except (OSError, ValueError, sqlite3.Error, RuntimeError) as exc:
        errors.append(f"{what}: {type(exc).__name__}: {exc}".splitlines()[0][:300])
        return default


def _iso_us(us: int | None) -> str | None:
    return None if us is None else pd.Timestamp(int(us), unit="us", tz="UTC").isoformat()


def snapshot(cfg: DashboardConfig) -> dict:
    """Everything the live page shows, as plain JSON data (see ``live_view`` for the sections)."""
    from .live_view import build

    errors: list[str] = []
    folder = Path(cfg.state_dir)
    db = folder / "state.db"
    store = _guard("state store", lambda: read_store(db) if db.exists() else None, errors, None)
    log = _guard("decision log", lambda: _unchanged("log", folder / "decisions.jsonl", lambda p: tail_jsonl(p, 0)),
                 errors, [])
    status = _guard("status.json", lambda: _json_file(folder / "status.json"), errors, None)
    halt = _guard("HALT file", lambda: _halt(folder), errors, None)
    params = _guard("params", lambda: _params(cfg, store), errors, None)
    shadow = _guard("evening reports", lambda: _shadow_reports(Path(cfg.runs_dir)), errors, [])
    evening = _guard("evening divergences", lambda: _divergences(Path(cfg.runs_dir)), errors, {})
    snap = build(store, log, status, halt, params, shadow, evening)
    snap["folder"] = str(folder)
    snap["missing"] = [n for n in ("state.db", "decisions.jsonl", "status.json") if not (folder / n).exists()]
    snap["errors"] = errors
    return snap


def _json_file(path: Path) -> dict:
    with open(path, "rb") as f:
        body = json.loads(f.read(1 << 20))
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - a bad file, reported like unparsable JSON
    return body


def _halt(folder: Path) -> dict | None:
    from live_bridge.runner_halts import read_halt

    h = read_halt(folder)
    if h is None:
        return None
    return {"halted_at": h.halted_at.isoformat(), "by": str(h.by), "flatten": str(h.flatten),
            "done": bool(h.done)}


def _params(cfg: DashboardConfig, store: dict | None) -> dict | None:
    """The params in force: the store's last epoch (what the runner trades), else the installed file."""
    from research.params import load, loads

    current = Path(cfg.params_dir) / "current.json"
    on_disk = _unchanged("params", current, load) if current.exists() else None
    if store and store.get("epoch"):
        from_us, sha, text, source = store["epoch"]
        pf = _CACHE.get(("epoch", sha), (None, None))[1] or loads(text)
        _CACHE[("epoch", sha)] = (None, pf)
        out = {"pf": pf, "source": f"traded by the runner since bar {_iso_us(from_us)} ({source})"}
        if on_disk is not None and on_disk.sha256() != pf.sha256():
            out["note"] = f"{current} ({on_disk.sha256()[:12]}) differs: not traded yet, or refused"
        return out
    if on_disk is None:
        return None
    return {"pf": on_disk, "source": f"{current} (the store names no params file yet)"}


def _shadow_reports(runs: Path, keep: int = 10) -> list[dict]:
    """The evening's live reports (the day's live fills against the shadow backtest), newest first."""
    found = sorted(runs.glob("*/evening-*/live-report.json"), reverse=True)[:keep] if runs.is_dir() else []
    out = []
    for path in found:
        doc = _json_file(path)
        pnl = sum(float(r.get("pnl") or 0.0) for r in doc.get("pnl") or [])
        out.append({"day": str(doc.get("day")), "ok": bool(doc.get("ok")), "counts": doc.get("counts") or {},
                    "summary": [str(x) for x in (doc.get("summary") or [])][:3], "pnl": pnl,
                    "report": str(path.with_name("live-report.html"))})
    return out


def _divergences(runs: Path) -> dict[str, list[dict]]:
    """Session day -> every fill its evening report compared (``daily_report.COLUMNS`` rows: status,
    prices, live qty, signed slippage), from the newest report of each day; what the shadow line needs."""
    out: dict[str, list[dict]] = {}
    found = sorted(runs.glob("*/evening-*/live-report.json"), reverse=True) if runs.is_dir() else []
    for path in found:
        st = path.stat()
        hit = _EVENING.get(str(path))
        if hit is None or hit[0] != (st.st_size, st.st_mtime_ns):  # a year of reports: each parsed once
            doc = _json_file(path)
            rows = doc.get("divergences")
            hit = _EVENING[str(path)] = ((st.st_size, st.st_mtime_ns), str(doc.get("day")),
                                         [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else None)
        _, day, rows = hit
        if day not in out and rows is not None:  # else an older run of the same evening, or no live report
            out[day] = rows
    return out


_EVENING: dict[str, tuple[tuple[int, int], str, list[dict] | None]] = {}  # path -> (stamp, day, rows)
