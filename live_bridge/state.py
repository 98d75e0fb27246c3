"""The live bridge's local memory: intents, orders, fills, positions and halts in one SQLite file.

The broker is the truth about orders and money; this store is what lets a restarted runner know
what *it* did: which intents it decided (and so which client order ids to look up before
resending), which fills it has already counted, and what each strategy holds (the broker only
knows the net per symbol).

Durability: WAL journal, ``synchronous=FULL``, and every write in one ``BEGIN IMMEDIATE``
transaction, so a ``kill -9`` at any instant leaves either all of a write or none of it (a fill
and the position and daily P&L it moves land together). One writer: the store takes an exclusive
``flock`` on ``<path>.lock`` and a second ``StateStore`` on the same file raises; the lock dies
with the process, so a restart after a crash just opens the file. Readers (``tradelab live
status``) open it ``read_only``, beside the writer. The file's schema, its migrations and the two
ways of opening it are ``state_schema.py``; this module is what the store records and answers.

Fills are keyed by ``execution_id``: a trade update delivered twice is counted once. Positions
and realized P&L are derived from fills (average cost) in arrival order, and ``integrity_check``
replays every fill to prove the derived tables still match.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from .avg_cost import apply_fill, replay_fills
from .ids import parse_client_order_id
from .ports import TERMINAL_STATUSES, Fill, OrderAck, OrderIntent, status_can_follow
from .state_book import _iso, count_fill, insert_plan
from .state_equity import read_marks, record_mark
from .state_schema import SCHEMA_VERSION, StateError, open_reader, open_writer

__all__ = ["EXTERNAL", "SCHEMA_VERSION", "HaltRecord", "IntegrityReport", "StateError", "StateStore",
           "StrategyPosition", "apply_fill"]

EXTERNAL = "external"  # the strategy of a fill whose order tradelab did not make (manual, close_all)
_EPS = 1e-9
_TERMINAL = tuple(sorted(TERMINAL_STATUSES))
_INTENT_COLS = ("client_order_id", "symbol", "side", "qty", "type", "limit_price", "stop_price",
                "time_in_force", "strategy", "reason", "take_profit")  # OrderIntent's field order
_ORDER_COLS = ("id", "client_order_id", "symbol", "side", "qty", "filled_qty", "filled_avg_price", "status",
               "type", "stop_price", "limit_price", "submitted_at")  # OrderAck's field order
_POSITION_SQL = "SELECT qty, avg_price, realized FROM positions WHERE strategy = ? AND symbol = ?"


@dataclass(frozen=True, slots=True)
class StrategyPosition:
    """What one strategy holds in one symbol, from its fills (average cost)."""

    strategy: str
    symbol: str
    qty: float  # signed
    avg_price: float  # 0 when flat
    realized_pnl: float  # since the first fill, all days


@dataclass(frozen=True, slots=True)
class HaltRecord:
    """A halt as the store keeps it: the session, the scope (``risk.ACCOUNT`` or a strategy), why, when."""

    day: date
    scope: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """The result of ``StateStore.integrity_check``: ok, or the list of what is wrong."""

    ok: bool
    problems: tuple[str, ...]


def _us(iso: str) -> int:
    t = datetime.fromisoformat(iso)
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)



class StateStore:
    """The single-writer SQLite store of one live runner, or a read-only view of it (``read_only``).
    Use as a context manager or call close()."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """Open the store as its one writer (created or migrated if need be; StateError if another
        writer holds it), or ``read_only``: no lock, nothing created or migrated, every write refused
        (``state_schema`` says what a reader sees)."""
        self.path, self.read_only = Path(path), read_only
        self._positions: dict | None = None  # position() cache (the writer's), dropped by every fill
        if read_only:
            self._lock, self._db = -1, open_reader(self.path)
        else:
            self._lock, self._db = open_writer(self.path)
        self._closed = False

    def close(self) -> None:
        """Close the database and release the writer lock."""
        if not self._closed:
            self._closed = True
            self._db.close()
            if self._lock >= 0:
                os.close(self._lock)  # closing the descriptor releases the flock
                self._lock = -1

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:  # every write goes through here: refused before SQLite is asked
            raise StateError(f"{self.path} is open read-only: it takes no writes")
        # IMMEDIATE takes the write lock up front: the transaction cannot fail half-way on a busy DB.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- intents and orders --------------------------------------------------------------------

    def record_intent(self, intent: OrderIntent, decision_ref: str | None = None,
                      at: datetime | None = None, plan: Sequence[tuple[str, float, str | None]] = ()) -> bool:
        """Store an intent before it is sent; False if this exact intent was already stored.

        Raises StateError when the client_order_id is stored with different fields: ids are
        deterministic, so that means two different decisions mapped to one id (a bug upstream).
        ``decision_ref`` points into the decision log (why the strategy decided this). ``plan``: a
        netted order's allocation to its strategies (state_book.py), stored in the same transaction.
        """
        values = astuple(intent)
        with self._tx() as db:
            row = db.execute(f"SELECT {', '.join(_INTENT_COLS)} FROM intents WHERE client_order_id = ?",
                             (intent.client_order_id,)).fetchone()
            if row is not None:
                if tuple(row) != values:
                    raise StateError(f"intent {intent.client_order_id} is stored as {tuple(row)}, "
                                     f"now recorded as {values}")
                return False
            db.execute(f"INSERT INTO intents ({', '.join(_INTENT_COLS)}, decision_ref, created_at) "
                       f"VALUES ({', '.join('?' * (len(_INTENT_COLS) + 2))})",
                       (*values, decision_ref, _iso(at or datetime.now(UTC))))
            if plan:
                insert_plan(db, intent.client_order_id, intent.symbol, plan, crossed=False)
        return True

    def record_order(self, ack: OrderAck) -> bool:
        """Store the broker's view of an order; False if nothing changed.

        A terminal status is sticky, an order never goes back to new, and ``filled_qty`` never goes
        down: acks and trade updates can arrive out of order (a poll answered before a fill event),
        and a stale one must not reopen an order or unfill it. Every change goes to ``order_events``.
        """
        now = _iso(datetime.now(UTC))
        with self._tx() as db:
            row = db.execute("SELECT status, filled_qty, filled_avg_price FROM orders "
                             "WHERE client_order_id = ?", (ack.client_order_id,)).fetchone()
            if row is None:
                values = (*(getattr(ack, c) for c in _ORDER_COLS[:-1]), _iso(ack.submitted_at), now)
                db.execute(f"INSERT INTO orders ({', '.join(_ORDER_COLS)}, updated_at) "
                           f"VALUES ({', '.join('?' * (len(_ORDER_COLS) + 1))})", values)
                status, filled = ack.status, ack.filled_qty
            else:
                old_status, old_filled, old_avg = row
                status = ack.status if status_can_follow(old_status, ack.status) else old_status
                filled = max(old_filled, ack.filled_qty)
                avg = ack.filled_avg_price if ack.filled_qty >= old_filled else old_avg
                if (status, filled, avg) == (old_status, old_filled, old_avg):
                    return False
                db.execute("UPDATE orders SET status = ?, filled_qty = ?, filled_avg_price = ?, "
                           "updated_at = ? WHERE client_order_id = ?",
                           (status, filled, avg, now, ack.client_order_id))
            db.execute("INSERT INTO order_events VALUES (?, ?, ?, ?)",
                       (ack.client_order_id, status, filled, now))
        return True

    def record_legs(self, ack: OrderAck) -> bool:
        """Remember which order an OCO's legs belong to (their client_order_ids are the broker's):
        their fills and open orders are then the parent's strategy's. False if nothing was new."""
        new = False
        with self._tx() as db:
            for leg in ack.legs:
                new |= db.execute("INSERT OR IGNORE INTO legs VALUES (?, ?, ?, ?)",
                                  (leg.client_order_id, ack.client_order_id, leg.id, leg.type)).rowcount > 0
        return new

    def leg_parents(self) -> dict[str, str]:
        """Every known leg's client_order_id -> its parent's client_order_id."""
        return dict(self._db.execute("SELECT client_order_id, parent FROM legs"))

    def order(self, client_order_id: str) -> OrderAck | None:
        """The stored view of one order, or None if no ack was ever recorded for it."""
        row = self._db.execute(f"SELECT {', '.join(_ORDER_COLS)} FROM orders WHERE client_order_id = ?",
                               (client_order_id,)).fetchone()
        return None if row is None else OrderAck(*row[:-1], datetime.fromisoformat(row[-1]))

    def intent(self, client_order_id: str) -> tuple[OrderIntent, str | None] | None:
        """A stored intent and its decision_ref, or None."""
        row = self._db.execute(f"SELECT {', '.join(_INTENT_COLS)}, decision_ref FROM intents WHERE client_order_id = ?",
                               (client_order_id,)).fetchone()
        return None if row is None else (OrderIntent(*row[:-1]), row[-1])

    def fill_totals(self) -> dict[str, tuple[float, float]]:
        """Per client_order_id, (quantity, notional) of the fills counted: what a fill feed is seeded with."""
        rows = self._db.execute("SELECT client_order_id, SUM(qty), SUM(qty * price) FROM fills "
                                "GROUP BY client_order_id").fetchall()
        return {r[0]: (float(r[1]), float(r[2])) for r in rows}

    def uncounted_fills(self) -> list[str]:
        """Orders whose recorded ``filled_qty`` is more than the fills counted for them (a crash in between)."""
        rows = self._db.execute("SELECT o.client_order_id FROM orders o LEFT JOIN (SELECT client_order_id, "
                                "SUM(qty) AS q FROM fills GROUP BY client_order_id) f "
                                "ON f.client_order_id = o.client_order_id "
                                "WHERE o.filled_qty > COALESCE(f.q, 0) + 1e-9 ORDER BY o.rowid").fetchall()
        return [r[0] for r in rows]

    def last_entry(self, strategy: str, symbol: str) -> str | None:
        """The client_order_id of the latest entry intent of (strategy, symbol) that has fills."""
        row = self._db.execute("SELECT i.client_order_id FROM intents i WHERE i.strategy = ? AND i.symbol = ? "
                               "AND i.client_order_id LIKE '%-entry-%' AND EXISTS (SELECT 1 FROM fills f "
                               "WHERE f.client_order_id = i.client_order_id) ORDER BY i.rowid DESC LIMIT 1",
                               (strategy, symbol)).fetchone()
        return None if row is None else row[0]

    def open_orders(self) -> list[tuple[str, str]]:
        """(broker id, client_order_id) of every order last recorded as not terminal."""
        return [(r[0], r[1]) for r in self._db.execute(
            f"SELECT id, client_order_id FROM orders WHERE status NOT IN ({', '.join('?' * len(_TERMINAL))}) "
            "ORDER BY rowid", _TERMINAL)]

    def open_intents(self) -> list[OrderIntent]:
        """Intents without a terminal order, oldest first: what a restart must look up before resending.

        An intent here was either never acknowledged (the crash came before or during submit) or
        is still working; the runner asks ``Broker.order_by_client_id`` for each and records the
        answer, resending (same id, so never twice) only what the broker does not know.
        """
        rows = self._db.execute(
            f"SELECT {', '.join('i.' + c for c in _INTENT_COLS)} FROM intents i "
            "LEFT JOIN orders o ON o.client_order_id = i.client_order_id "
            f"WHERE o.status IS NULL OR o.status NOT IN ({', '.join('?' * len(_TERMINAL))}) "
            "ORDER BY i.created_at, i.rowid", _TERMINAL).fetchall()
        return [OrderIntent(*row) for row in rows]

    # --- fills and positions -------------------------------------------------------------------

    def record_fill(self, fill: Fill, strategy: str | None = None) -> bool:
        """Count one execution; False if its execution_id was already counted (a repeated update).

        The fill goes to the strategy of its intent (an OCO leg: its parent's), else to ``strategy``
        if given, else to the one named in its client order id, else to EXTERNAL: the stored intent
        is the truth, an id's strategy field may be truncated. Its position and daily P&L move with it.
        """
        if not (fill.qty > 0 and fill.price > 0):
            raise ValueError(f"fill {fill.execution_id}: qty and price must be positive")
        self._positions = None
        with self._tx() as db:
            if db.execute("SELECT 1 FROM fills WHERE execution_id = ?", (fill.execution_id,)).fetchone():
                return False
            count_fill(db, fill, self._strategy_of(db, fill.client_order_id, strategy))
        return True

    @staticmethod
    def _strategy_of(db: sqlite3.Connection, client_order_id: str, given: str | None = None) -> str:
        parent = db.execute("SELECT parent FROM legs WHERE client_order_id = ?", (client_order_id,)).fetchone()
        client_order_id = parent[0] if parent else client_order_id  # an OCO's leg: its parent's strategy
        row = db.execute("SELECT strategy FROM intents WHERE client_order_id = ?",
                         (client_order_id,)).fetchone()
        if row is not None:
            return row[0]
        if given:
            return given
        known = [r[0] for r in db.execute("SELECT DISTINCT strategy FROM intents")]
        parsed = parse_client_order_id(client_order_id, known)
        return parsed.strategy if parsed is not None else EXTERNAL

    def filled_qty(self, client_order_id: str) -> float:
        """The sum of the fills counted for one order."""
        row = self._db.execute("SELECT COALESCE(SUM(qty), 0) FROM fills WHERE client_order_id = ?",
                               (client_order_id,)).fetchone()
        return float(row[0])

    def position(self, strategy: str, symbol: str) -> StrategyPosition:
        """One strategy's position in one symbol (zero if it never traded it).

        Read at every decision, so the writer keeps it in memory: it is the file's only writer (the
        flock), and every write to positions (``record_fill``) drops the copy. A reader reads the file.
        """
        if self.read_only:
            row = self._db.execute(_POSITION_SQL, (strategy, symbol)).fetchone() or (0.0, 0.0, 0.0)
            return StrategyPosition(strategy, symbol, *row)
        if self._positions is None:
            self._positions = {(r[0], r[1]): StrategyPosition(*r) for r in self._db.execute(
                "SELECT strategy, symbol, qty, avg_price, realized FROM positions")}
        return self._positions.get((strategy, symbol)) or StrategyPosition(strategy, symbol, 0.0, 0.0, 0.0)

    def positions(self) -> dict[tuple[str, str], StrategyPosition]:
        """Every open (non-zero) position, keyed by (strategy, symbol)."""
        rows = self._db.execute("SELECT strategy, symbol, qty, avg_price, realized FROM positions "
                                "WHERE qty != 0 ORDER BY strategy, symbol").fetchall()
        return {(r[0], r[1]): StrategyPosition(*r) for r in rows}

    def net_positions(self) -> dict[str, float]:
        """Net quantity per symbol over all strategies: compare with ``Broker.positions()``."""
        rows = self._db.execute("SELECT symbol, SUM(qty) FROM positions GROUP BY symbol "
                                "HAVING ABS(SUM(qty)) > ? ORDER BY symbol", (_EPS,)).fetchall()
        return dict(rows)

    def daily_pnl(self, day: date) -> dict[str, float]:
        """Realized P&L per strategy on one New York session date (fills of that day)."""
        rows = self._db.execute("SELECT strategy, realized FROM daily_pnl WHERE day = ? ORDER BY strategy",
                                (day.isoformat(),)).fetchall()
        return dict(rows)

    def fill_count(self) -> int:
        """How many executions the store has counted (all days)."""
        return int(self._db.execute("SELECT COUNT(*) FROM fills").fetchone()[0])

    def day_flows(self, day: date) -> dict[tuple[str, str], tuple[float, float]]:
        """(strategy, symbol) -> (signed qty, cash flow) of one New York session date's fills (a buy
        is +qty and -qty x price): what a day's P&L needs besides the marks."""
        rows = self._db.execute(
            "SELECT strategy, symbol, SUM(CASE side WHEN 'buy' THEN qty ELSE -qty END), "
            "SUM(CASE side WHEN 'buy' THEN -qty * price ELSE qty * price END) FROM fills WHERE day = ? "
            "GROUP BY strategy, symbol", (day.isoformat(),)).fetchall()
        return {(r[0], r[1]): (float(r[2]), float(r[3])) for r in rows}

    # --- halts and peak equity -----------------------------------------------------------------

    def record_halt(self, day: date, scope: str, reason: str, at: datetime | None = None) -> bool:
        """Remember a halt (``risk.ACCOUNT`` or a strategy) for a session; False if already recorded.
        ``at``: when it tripped, by the broker's clock (the decision path flattens from there)."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO halts VALUES (?, ?, ?, ?)",
                             (day.isoformat(), scope, reason, _iso(at or datetime.now(UTC))))
        return cur.rowcount == 1

    def halt_marks(self) -> list[tuple[int, str]]:
        """(when it tripped in UTC µs, scope) of every halt, oldest first: what the decision path models."""
        rows = self._db.execute("SELECT at, scope FROM halts ORDER BY at").fetchall()
        return [(_us(at), scope) for at, scope in rows]

    def recent_halts(self, limit: int) -> list[HaltRecord]:
        """The halts of the latest sessions, newest session first, at most ``limit`` of them."""
        rows = self._db.execute("SELECT day, scope, reason, at FROM halts ORDER BY day DESC, scope DESC LIMIT ?",
                                (int(limit),)).fetchall()
        return [HaltRecord(date.fromisoformat(d), scope, reason, datetime.fromisoformat(at))
                for d, scope, reason, at in rows]

    def halts(self, day: date) -> dict[str, str]:
        """The halts recorded for a session, scope -> reason: pass to ``DayState.begin`` on restart."""
        rows = self._db.execute("SELECT scope, reason FROM halts WHERE day = ? ORDER BY scope",
                                (day.isoformat(),)).fetchall()
        return dict(rows)

    def peak_equity(self, equity: float | None = None) -> float:
        """The highest equity seen (0 if none), after raising it to ``equity`` if that is higher."""
        if equity is None:  # a read: no transaction (a read-only store answers it too)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'peak_equity'").fetchone()
            return float(row[0]) if row else 0.0
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'peak_equity'").fetchone()
            peak = float(row[0]) if row else 0.0
            if equity is not None and equity > peak:
                peak = equity
                db.execute("INSERT OR REPLACE INTO meta VALUES ('peak_equity', ?)", (repr(peak),))
        return peak

    def mark_equity(self, at: datetime, equity: float, cash: float) -> int:
        """Keep the account read at ``at`` (the broker's clock) as its minute's equity mark (state_equity.py)."""
        return record_mark(self, at, equity, cash)

    def equity_marks(self, since_us: int | None = None) -> list[tuple[int, float, float]]:
        """(minute UTC µs, equity, cash) of every equity mark, oldest first (state_equity.py)."""
        return read_marks(self._db, since_us)

    # --- what the runner trades: its first bar and the params files in force ------------------------

    def anchor(self) -> int | None:
        """The first bar (UTC µs) the runner traded from, kept across restarts (None: never started)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'anchor_us'").fetchone()
        return int(row[0]) if row else None

    def set_anchor(self, anchor_us: int) -> int:
        """Store the first bar traded, once; return the one stored (an earlier start's wins)."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('anchor_us', ?)", (str(int(anchor_us)),))
        return self.anchor()

    def record_epoch(self, from_us: int, sha256: str, params: str, source: str, at: datetime | None = None) -> None:
        """A params file the runner trades from bar ``from_us`` on (its canonical JSON)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?, ?)",
                       (int(from_us), sha256, params, source, _iso(at or datetime.now(UTC))))

    def epochs(self) -> list[tuple[int, str, str, str]]:
        """(from_us, sha256, params JSON, source) of every params file traded, oldest first."""
        return [tuple(r) for r in self._db.execute("SELECT from_us, sha256, params, source FROM epochs ORDER BY 1")]

    # --- integrity -----------------------------------------------------------------------------

    def integrity_check(self) -> IntegrityReport:
        """SQLite's own check plus the store's invariants, proven by replaying every fill.

        Invariants: the schema version is known; no order is filled beyond its qty (by its ack or
        by the fills counted for it); positions and daily P&L equal a replay of the fills in
        arrival order. The broker can in principle report an overfill; it is kept (the broker is
        the truth) and shows up here.
        """
        db, problems = self._db, []
        problems += [f"sqlite: {r[0]}" for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != str(SCHEMA_VERSION):
            problems.append(f"schema version {version and version[0]} != {SCHEMA_VERSION}")
        for cid, qty, filled in db.execute("SELECT client_order_id, qty, filled_qty FROM orders "
                                           "WHERE filled_qty > qty + ?", (_EPS,)):
            problems.append(f"order {cid}: ack filled_qty {filled:g} > qty {qty:g}")
        for cid, qty, filled in db.execute(
                "SELECT o.client_order_id, o.qty, SUM(f.qty) FROM orders o JOIN fills f "
                "ON f.client_order_id = o.client_order_id GROUP BY o.client_order_id "
                "HAVING SUM(f.qty) > o.qty + ?", (_EPS,)):
            problems.append(f"order {cid}: fills sum {filled:g} > qty {qty:g}")
        positions, pnl = replay_fills(db.execute("SELECT strategy, symbol, side, qty, price, day FROM fills "
                                                 "ORDER BY rowid"))
        stored = {(s, y): (q, a, r) for s, y, q, a, r in db.execute("SELECT * FROM positions")}
        problems += _diff("position", positions, stored)
        stored_pnl = {(d, s): (r, n) for d, s, r, n in db.execute("SELECT * FROM daily_pnl")}
        problems += _diff("daily_pnl", pnl, stored_pnl)
        return IntegrityReport(not problems, tuple(problems))


def _diff(what: str, expected: dict, stored: dict) -> list[str]:
    """Mismatches between replayed and stored rows (keys on either side, values beyond 1e-6)."""
    out = []
    for key in sorted(expected.keys() | stored.keys()):
        want, have = expected.get(key), stored.get(key)
        if want is None or have is None or not all(math.isclose(w, h, rel_tol=1e-9, abs_tol=1e-6)
                                                   for w, h in zip(want, have)):
            out.append(f"{what} {key}: stored {have}, fills say {want}")
    return out
