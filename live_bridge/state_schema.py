"""The state store's file: its schema, the migration of older files, and opening it as the one
writer or as a reader.

The writer takes an exclusive ``flock`` on ``<path>.lock`` (a second writer raises; the lock dies
with the process, so a restart after a crash just opens the file), sets the WAL journal and
``synchronous=FULL``, and brings an older file to :data:`SCHEMA_VERSION` in one transaction with
the tables it lacks. A reader (``tradelab live status``) opens the file ``mode=ro``, so SQLite
itself refuses every write; it takes no lock, so it reads beside a running writer (WAL: it sees
the last committed transaction), and creates and migrates nothing: an older file is read as it
is, a newer one is refused, and a file a writer created but never initialised (killed in its
first instant) reads as an empty store.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 5  # 2: intents.take_profit and the legs table (OCO stops); 3: the epochs table (params
# files traded, from which bar) and meta 'anchor_us' (the first bar traded); 4: the allocations table
# (a netted symbol's order: which strategy gets what of its fills, state_book.py); 5: the equity_marks
# table (the account's equity and cash as the runner read them, state_equity.py); older files are migrated
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE IF NOT EXISTS intents (
    client_order_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL,
    type TEXT NOT NULL, limit_price REAL, stop_price REAL, time_in_force TEXT NOT NULL,
    strategy TEXT NOT NULL, reason TEXT NOT NULL, decision_ref TEXT, created_at TEXT NOT NULL,
    take_profit REAL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT NOT NULL, client_order_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, side TEXT NOT NULL,
    qty REAL NOT NULL, filled_qty REAL NOT NULL, filled_avg_price REAL, status TEXT NOT NULL,
    type TEXT NOT NULL, stop_price REAL, limit_price REAL, submitted_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS legs (
    client_order_id TEXT PRIMARY KEY, parent TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS order_events (
    client_order_id TEXT NOT NULL, status TEXT NOT NULL, filled_qty REAL NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fills (
    execution_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, client_order_id TEXT NOT NULL,
    strategy TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL,
    price REAL NOT NULL, timestamp TEXT NOT NULL, day TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS fills_by_order ON fills (client_order_id);
CREATE TABLE IF NOT EXISTS positions (
    strategy TEXT NOT NULL, symbol TEXT NOT NULL, qty REAL NOT NULL, avg_price REAL NOT NULL,
    realized REAL NOT NULL, PRIMARY KEY (strategy, symbol));
CREATE TABLE IF NOT EXISTS daily_pnl (
    day TEXT NOT NULL, strategy TEXT NOT NULL, realized REAL NOT NULL, fills INTEGER NOT NULL,
    PRIMARY KEY (day, strategy));
CREATE TABLE IF NOT EXISTS epochs (
    from_us INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, params TEXT NOT NULL, source TEXT NOT NULL,
    at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS allocations (
    client_order_id TEXT NOT NULL, k INTEGER NOT NULL, strategy TEXT NOT NULL, symbol TEXT NOT NULL,
    qty REAL NOT NULL, filled REAL NOT NULL, rules TEXT, crossed INTEGER NOT NULL,
    PRIMARY KEY (client_order_id, k));
CREATE TABLE IF NOT EXISTS equity_marks (
    ts_us INTEGER PRIMARY KEY, equity REAL NOT NULL, cash REAL NOT NULL);
CREATE TABLE IF NOT EXISTS halts (
    day TEXT NOT NULL, scope TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (day, scope));
"""


class StateError(RuntimeError):
    """The store cannot be used as asked: locked by another writer, wrong schema, conflicting write."""


def open_writer(path: Path) -> tuple[int, sqlite3.Connection]:
    """The writer's lock (a file descriptor: closing it releases the lock) and connection, the file
    created or migrated to :data:`SCHEMA_VERSION`; StateError if another writer holds it."""
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise StateError(f"{path} is open by another writer (lock {path}.lock)") from None
    # check_same_thread=False: the runner opens the store, then hands it to its one worker thread
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)  # the store BEGINs itself
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        try:
            _migrate(db)
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        version = _version(db)
        if version != str(SCHEMA_VERSION):
            raise StateError(f"{path} has schema version {version}; this code reads {SCHEMA_VERSION}")
    except BaseException:
        db.close()
        os.close(lock)
        raise
    return lock, db


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection (no lock, nothing created or migrated; see the module doc).

    A file that is not a database raises ``sqlite3.DatabaseError`` here, a damaged page at the
    read that meets it; an unknown schema version raises StateError."""
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None,
                         check_same_thread=False)
    try:
        db.execute("PRAGMA query_only=ON")
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        if not names:  # created, never initialised: an empty store, held in memory
            db.close()
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            db.executescript(_SCHEMA)
            db.execute("PRAGMA query_only=ON")
        version = _version(db) if "meta" in names or not names else None
        if version is None:
            raise StateError(f"{path} is not a state store (it has no schema version)")
        if version not in {str(v) for v in range(1, SCHEMA_VERSION + 1)}:
            raise StateError(f"{path} has schema version {version}; this code reads {SCHEMA_VERSION} and older")
    except BaseException:
        db.close()
        raise
    return db


def _version(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else row[0]


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older file to SCHEMA_VERSION, inside the caller's transaction (with the new tables)."""
    old = db.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone() and _version(db)
    if old == "1":  # version 1 -> 2: intents.take_profit (the legs table is created with the schema)
        db.execute("ALTER TABLE intents ADD COLUMN take_profit REAL")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        old = "2"
    if old == "2":  # version 2 -> 3: the epochs table only (created with the schema)
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        old = "3"
    if old == "3":  # version 3 -> 4: the allocations table only (created with the schema)
        db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        old = "4"
    if old == "4":  # version 4 -> 5: the equity_marks table only (created with the schema)
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
