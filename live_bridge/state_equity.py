"""The account's equity over time in the state store: one mark per minute of the broker's clock.

The broker knows the account's equity now, not what it was: a curve of it (the dashboard's live
page, today's P&L against the last mark before the open) exists only if the runner keeps what it
read. It reads the account anyway, for the risk check (``runner_snapshot._context``), so each read
is kept here at no extra broker call: ``(minute of the broker's clock, equity, cash)``, the minute
floored, the latest read of a minute replacing an earlier one (so at most one row per minute, ~390
a session). One INSERT in its own transaction, like every store write (``StateStore._tx``).

The time is the broker's clock (``Clock.timestamp``), not the machine's: in a replay the simulator's
clock is the market's time, and a mark must say when the market was at that equity.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

MINUTE_US = 60_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def minute_us(at: datetime) -> int:
    """The UTC microseconds of the minute holding ``at`` (timezone-aware), floored."""
    if at.tzinfo is None:
        raise ValueError(f"timestamp {at!r} is naive; equity marks take timezone-aware times only")
    us = (at - _EPOCH) // timedelta(microseconds=1)
    return us - us % MINUTE_US


def record_mark(store, at: datetime, equity: float, cash: float) -> int:
    """Keep the account's ``equity`` and ``cash`` read at ``at`` (the broker's clock) as the mark of its
    minute, replacing an earlier read of the same minute; returns the minute (UTC µs)."""
    if not (equity == equity and cash == cash):  # NaN: a broken answer, never a mark
        raise ValueError(f"equity mark at {at}: equity {equity} / cash {cash} is not a number")
    ts = minute_us(at)
    with store._tx() as db:
        db.execute("INSERT OR REPLACE INTO equity_marks VALUES (?, ?, ?)", (ts, float(equity), float(cash)))
    return ts


def read_marks(db: sqlite3.Connection, since_us: int | None = None) -> list[tuple[int, float, float]]:
    """(minute UTC µs, equity, cash) of every mark (from ``since_us`` on), oldest first; none in a store
    older than schema 5 (read as it is: it has no such table)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'equity_marks'").fetchone() is None:
        return []
    rows = db.execute("SELECT ts_us, equity, cash FROM equity_marks WHERE ts_us >= ? ORDER BY ts_us",
                      (-(1 << 62) if since_us is None else int(since_us),))
    return [(int(t), float(e), float(c)) for t, e, c in rows]
