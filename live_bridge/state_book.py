"""A netted symbol's orders in the state store: which strategy gets what of each fill.

When several strategies trade one symbol in the same regime (``runner_book.py``), each keeps its
own *virtual* position (the store's per-strategy position), and the broker sees one order per bar
for the net change of them all. Before that order is sent its *plan* is stored: one row per
strategy whose position changes, with its signed change (and the exit rules of an entry, for the
stop a restart must place). Fills are allocated to the rows deterministically, in the transaction
that counts the fill:

* the *crossed* part first, in full, at the first fill's price: the rows against the net order's
  side (a strategy selling while others buy more) trade with the rows on its side inside the book,
  in plan order; those portions are stored under ``x:<client order id>``, so the broker's order
  keeps exactly the broker's fills (``fill_totals``, ``uncounted_fills``);
* then the fill's own quantity to the rows on the order's side, in plan order (a partial fill
  completes the first rows first).

A plan whose net change is zero sends no order: it is crossed at the next bar's open (the price
the backtest fills at) when that bar arrives (``pending_crosses``, ``cross``). The sum of the
strategies' positions stays the broker's position whatever the order of events.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .avg_cost import apply_fill
from .ids import parse_client_order_id
from .ports import Fill, session_day, sign

_EPS = 1e-9
_POSITION_SQL = "SELECT qty, avg_price, realized FROM positions WHERE strategy = ? AND symbol = ?"


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One strategy's part of a netted order: its signed change and how much of it has filled."""

    strategy: str
    symbol: str
    qty: float  # signed change of the strategy's position
    filled: float  # signed, allocated so far
    rules: str | None  # an entry's exit rules (JSON), for its protective stop

    @property
    def remaining(self) -> float:
        return self.qty - self.filled


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} is naive; the state store only takes timezone-aware times")
    return ts.astimezone(UTC).isoformat()


def count_fill(db: sqlite3.Connection, fill: Fill, strategy: str) -> None:
    """Insert one fill (or one strategy's portion of one) and move the strategy's position and daily
    P&L with it, inside the caller's transaction."""
    day = session_day(fill.timestamp).isoformat()
    db.execute("INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (fill.execution_id, fill.order_id, fill.client_order_id, strategy, fill.symbol,
                fill.side, fill.qty, fill.price, _iso(fill.timestamp), day))
    row = db.execute(_POSITION_SQL, (strategy, fill.symbol)).fetchone()
    qty, avg, realized = row or (0.0, 0.0, 0.0)
    qty, avg, delta = apply_fill(qty, avg, fill.side, fill.qty, fill.price)
    db.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?)",
               (strategy, fill.symbol, qty, avg, realized + delta))
    db.execute("INSERT INTO daily_pnl VALUES (?, ?, ?, 1) ON CONFLICT (day, strategy) DO UPDATE "
               "SET realized = realized + excluded.realized, fills = fills + 1", (day, strategy, delta))


def record_plan(store, client_order_id: str, symbol: str, rows: Sequence[tuple[str, float, str | None]],
                crossed: bool) -> bool:
    """Store a netted order's plan (strategy, signed change, rules) before the order can reach the
    broker; False if it is stored already (a restart decided the same bar again: the stored one stands).
    ``crossed``: the net change is zero, nothing is sent, the rows cross at the next bar's open."""
    with store._tx() as db:
        return insert_plan(db, client_order_id, symbol, rows, crossed)


def insert_plan(db: sqlite3.Connection, client_order_id: str, symbol: str,
                rows: Sequence[tuple[str, float, str | None]], crossed: bool) -> bool:
    """``record_plan`` inside the caller's transaction (``StateStore.record_intent`` stores a net
    order's plan with its intent: a crash leaves both or neither)."""
    if not rows or any(abs(q) < _EPS for _, q, _ in rows):
        raise ValueError(f"plan {client_order_id}: every row must change a position")
    if db.execute("SELECT 1 FROM allocations WHERE client_order_id = ?", (client_order_id,)).fetchone():
        return False
    db.executemany("INSERT INTO allocations VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                   [(client_order_id, k, s, symbol, float(q), r, int(crossed)) for k, (s, q, r) in enumerate(rows)])
    return True


def plan(store, client_order_id: str) -> list[PlanRow] | None:
    """The stored plan of a netted order, in plan order (None: not a netted order)."""
    rows = _rows(store._db, client_order_id)
    return rows or None


def _rows(db: sqlite3.Connection, cid: str) -> list[PlanRow]:
    return [PlanRow(*r) for r in db.execute("SELECT strategy, symbol, qty, filled, rules FROM allocations "
                                            "WHERE client_order_id = ? ORDER BY k", (cid,))]


def allocate(rows: Sequence[PlanRow], side: str, qty: float) -> tuple[list[float], list[float]]:
    """(crossed, net) signed quantities per row for a fill of ``qty`` on ``side``: every row against
    the side crosses its remaining part in full, against as much of the side's rows in plan order;
    then the fill goes to the side's rows in plan order (any excess to the side's last row)."""
    s = sign(side)
    crossed, net = [0.0] * len(rows), [0.0] * len(rows)
    against = [i for i, r in enumerate(rows) if r.qty * s < 0]
    mine = [i for i, r in enumerate(rows) if r.qty * s > 0]
    left = {i: abs(rows[i].remaining) for i in mine}
    cross = sum(abs(rows[i].remaining) for i in against)
    for i in against:
        crossed[i] = rows[i].remaining
    for pool, out in ((cross, crossed), (qty, net)):
        for i in mine:
            take = min(pool, left[i])
            out[i] += s * take
            left[i] -= take
            pool -= take
        if pool > _EPS and mine:
            out[mine[-1]] += s * pool
    return crossed, net


def record_book_fill(store, fill: Fill) -> dict[str, float] | None:
    """Count a fill of a netted order, allocated by its plan: {strategy: signed qty} of every portion
    counted ({} for a fill counted already); None when the order has no plan (``record_fill`` it)."""
    if not (fill.qty > 0 and fill.price > 0):
        raise ValueError(f"fill {fill.execution_id}: qty and price must be positive")
    store._positions = None
    with store._tx() as db:
        rows = _rows(db, fill.client_order_id)
        if not rows:
            return None
        if db.execute("SELECT 1 FROM fills WHERE execution_id = ? OR execution_id LIKE ?",
                      (fill.execution_id, fill.execution_id + "#%")).fetchone():
            return {}
        crossed, net = allocate(rows, fill.side, fill.qty)
        return _count(db, fill, rows, crossed, net)


def _count(db: sqlite3.Connection, fill: Fill, rows: list[PlanRow], crossed: list[float],
           net: list[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    first = True
    for k, (r, c, n) in enumerate(zip(rows, crossed, net)):
        for q, cross in ((n, False), (c, True)):
            if abs(q) < _EPS:
                continue
            eid = fill.execution_id if first and not cross else f"{fill.execution_id}#{'x' if cross else ''}{k}"
            first = first and cross
            cid = ("x:" if cross else "") + fill.client_order_id
            count_fill(db, replace(fill, execution_id=eid, client_order_id=cid, side="buy" if q > 0 else "sell",
                                   qty=abs(q)), r.strategy)
            out[r.strategy] = out.get(r.strategy, 0.0) + q
        if abs(c + n) >= _EPS:
            db.execute("UPDATE allocations SET filled = filled + ? WHERE client_order_id = ? AND k = ?",
                       (c + n, fill.client_order_id, k))
    return out


def broker_fills(store, client_order_id: str) -> int:
    """How many of the broker's executions of a netted order have been counted."""
    return int(store._db.execute("SELECT COUNT(*) FROM fills WHERE client_order_id = ? AND execution_id NOT LIKE "
                                 "'%#%'", (client_order_id,)).fetchone()[0])


def entry_rules(store, strategy: str, symbol: str) -> str | None:
    """The exit rules (JSON) of the strategy's latest filled entry through a netted order (the stop a
    restarted runner places before its next decision)."""
    row = store._db.execute("SELECT rules FROM allocations WHERE strategy = ? AND symbol = ? AND rules IS NOT NULL "
                            "AND ABS(filled) > 1e-9 ORDER BY rowid DESC LIMIT 1", (strategy, symbol)).fetchone()
    return None if row is None else row[0]


def last_plan(store, symbol: str) -> str | None:
    """The client order id of ``symbol``'s latest plan that has filled (in part): the one whose fill
    last placed its strategies' stops (``runner_book._reprotect``)."""
    row = store._db.execute("SELECT client_order_id FROM allocations WHERE symbol = ? AND ABS(filled) > 1e-9 "
                            "ORDER BY rowid DESC LIMIT 1", (symbol,)).fetchone()
    return None if row is None else row[0]


def plan_keys(store) -> set[tuple[str, object, int]]:
    """(symbol, bar time, seq) of every stored plan (the runner keeps them in memory: a bar's lookup is a
    set's, without making the order id)."""
    out = set()
    for (cid,) in store._db.execute("SELECT DISTINCT client_order_id FROM allocations"):
        p = parse_client_order_id(cid)
        if p is not None:
            out.add((p.symbol, p.bar_time, p.seq))
    return out


def crossing_symbols(store) -> set[str]:
    """The symbols with a zero-sum plan not crossed yet."""
    return {r[0] for r in store._db.execute("SELECT DISTINCT symbol FROM allocations WHERE crossed = 1 "
                                            "AND ABS(qty - filled) > 1e-9")}


def pending_crosses(store, symbol: str) -> list[str]:
    """The zero-net plans of ``symbol`` not crossed yet, oldest first."""
    return [r[0] for r in store._db.execute(
        "SELECT client_order_id FROM allocations WHERE symbol = ? AND crossed = 1 GROUP BY client_order_id "
        "HAVING SUM(ABS(qty - filled)) > 1e-9 ORDER BY MIN(rowid)", (symbol,))]


def cross(store, client_order_id: str, price: float, at: datetime) -> dict[str, float]:
    """Cross a zero-net plan's rows at ``price`` (the next bar's open): {strategy: signed qty}."""
    store._positions = None
    with store._tx() as db:
        rows = _rows(db, client_order_id)
        if not rows or all(abs(r.remaining) < _EPS for r in rows):
            return {}
        fill = Fill("cross:" + client_order_id, "book", client_order_id, rows[0].symbol, "buy", 1.0, price, at)
        return _count(db, fill, rows, [r.remaining for r in rows], [0.0] * len(rows))
