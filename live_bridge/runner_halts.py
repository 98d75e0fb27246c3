"""The runner's halts: the day loss of the account, the day loss of each strategy, and the HALT file.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size. A strategy's P&L *of the day*
is what its fills of the day and the moves of what it holds made since the start of the session:
cash flows of the day's fills, plus what it holds now at the last close, minus what it held at the
start of the day at the last close before the session (not the unrealized P&L since the entry,
which would halt a strategy for a gain it gave back over several days).

The HALT file (``tradelab live halt`` writes it in the runner's folder, JSON)::

    {"halted_at": "<iso>", "by": "tradelab live halt", "flatten": "pending", "cli_until": "<iso>"}

``flatten`` is ``done`` once every position got a closing order (by the command, or by the runner:
``"by": "runner"``). A runner that finds it ``pending`` trades no more and flattens the account with
its own orders (``flatten_pass``: the store books their fills for the strategies), retrying while the
broker is out of reach, then marks it done and stops; it leaves the broker to the command until
``cli_until``, so the two never close the same position twice. An older plain-text HALT, or one
that cannot be read, counts as pending.
"""

from __future__ import annotations

import json
import logging
import re
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from data_lake.atomic import atomic_write_bytes

from . import state_book
from .ids import MAX_SEQ, client_order_id
from .ports import BrokerError, OrderAck, OrderIntent, session_day
from .risk import ACCOUNT
from .state import EXTERNAL

log = logging.getLogger("live_bridge.runner")
HALT = "HALT"  # the file's name in the runner's folder
CLI_WAIT_MAX = 3600 + 120  # seconds: the longest `tradelab live halt --wait` and its last calls


class HaltedError(RuntimeError):
    """A start refused: the HALT file says the account was halted and flattened (remove it to resume)."""


class HaltDesk:
    """Day-loss and strategy-loss halts (mixed into Runner)."""

    def _halts(self, account, clock) -> None:
        """Day loss (flatten everything, halt until the next session) and strategy loss (off for the day).

        The halt is stored with the broker's time, and every decision path models it from the bar it
        tripped in (``sleeves.halt_masks``): no entry for the rest of the session, and for the day
        loss every position closed at the next open, by the runner's own ``flatten`` orders (so
        their fills stay the strategies', and a restart neither resends nor forgets them)."""
        self.day, events = self.day.update(account.equity, self._strategy_day_pnl(clock.session), self.config.limits)
        for ev in events:
            self.store.record_halt(clock.session, ev.scope, ev.message, at=clock.timestamp)
            self._halt_marks.append((int(pd.Timestamp(clock.timestamp).value // 1000), ev.scope))
            line = {"event": "halt", "scope": ev.scope, "rule": ev.rule, "message": ev.message}
            if ev.flatten_all:
                line["flatten_orders"] = self._flatten(clock.timestamp)
            log.warning("runner: halt %s: %s", ev.rule, ev.message)
            self._write(line)
            self._notify("halt", ev.scope, ev.message, severity="critical", rule=ev.rule)

    def _flatten(self, at) -> list[str]:
        """A market order closing each position the runner holds, its open orders cancelled first."""
        from .ids import client_order_id
        from .ports import OrderIntent
        from .runner_orders import _pending

        sent = []
        orders = self.broker.open_orders()
        for (strategy, symbol), p in sorted(self.store.positions().items()):
            if not p.qty or strategy not in self.names:
                continue
            cancels = tuple(o.id for o in orders if self._owner(o.client_order_id) == (strategy, symbol))
            cid = client_order_id(strategy, symbol, at, "flatten")
            if self.store.intent(cid) is not None:
                continue
            # gtc: at Alpaca a market order fills at once in an open session; a daily simulator has no
            # price inside the bar and fills it at the next open, the convention the backtest models
            order = OrderIntent(cid, symbol, "sell" if p.qty > 0 else "buy", abs(p.qty), strategy=strategy,
                                time_in_force="gtc", reason="day-loss halt: flatten")
            self.store.record_intent(order)
            self._inflight[cid] = _pending(order, at)
            self._dispatch(order, cancels)
            sent.append(cid)
        return sent

    def _strategy_day_pnl(self, session: date) -> dict[str, float]:
        """Per strategy, the P&L of the session so far (module docstring), marked at the last closes held."""
        flows = self.store.day_flows(session)
        held = {k: p.qty for k, p in self.store.positions().items() if p.qty}
        start_us = int(pd.Timestamp(session).tz_localize("America/New_York").tz_convert("UTC").value // 1000)
        out: dict[str, float] = {}
        for key in set(flows) | set(held):
            strategy, symbol = key
            a = self.history.get(symbol, {})
            closes, ts = a.get("close"), a.get("ts")
            qty_now = held.get(key, 0.0)
            d_qty, cash = flows.get(key, (0.0, 0.0))
            qty_start = qty_now - d_qty
            if closes is None or not len(closes):
                continue
            last = float(closes[-1])
            before = int(np.searchsorted(ts, start_us)) - 1  # the last bar before the session
            prev = float(closes[before]) if before >= 0 else last
            out[strategy] = out.get(strategy, 0.0) + cash + qty_now * last - qty_start * prev
        return out


# --- the HALT file (tradelab live halt) and the runner's flatten for it ---------------------------
@dataclass(frozen=True)
class HaltFile:
    """What a runner folder's HALT file says. ``halted_at`` is when the halt was asked: it stamps the
    flatten orders' client ids, so every try (and a restart) makes the same ones."""

    halted_at: datetime
    by: str
    flatten: str  # "pending" (nothing confirmed yet) | "done" (every position got a closing order)
    cli_until: datetime | None = None  # tradelab live halt is still at work on the broker until then
    body: dict = field(default_factory=dict, compare=False)

    @property
    def done(self) -> bool:
        return self.flatten == "done"

    def refusal(self, state_dir: Path) -> str:
        """The one line a start refused by this halt prints."""
        return (f"halted at {self.halted_at.isoformat()} (HALT in {state_dir}, flatten {self.flatten} by "
                f"{self.by}): remove it to resume")

    def cli_wait(self, now: datetime) -> float:
        """Seconds the runner leaves the broker to ``tradelab live halt`` still (two flattens at once could
        close a position twice); at most an hour and a bit past the halt, whatever the file says."""
        if self.cli_until is None:
            return 0.0
        until = min(self.cli_until, self.halted_at + timedelta(seconds=CLI_WAIT_MAX))
        return max(0.0, (until - now).total_seconds())


def read_halt(state_dir: Path) -> HaltFile | None:
    """The HALT file of ``state_dir`` (None: there is none). An older plain-text file, or one that
    cannot be read or parsed, is a halt whose flatten is pending: a HALT is never ignored."""
    path = Path(state_dir) / HALT
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError:  # unreadable folder: still a halt (its time the epoch, for stable flatten ids)
        st = None
    mtime = datetime.fromtimestamp(st.st_mtime if st else 0, UTC)
    raw = b""
    if st is not None and stat.S_ISREG(st.st_mode):  # a folder or a pipe named HALT: still a halt, never a hang
        try:
            with open(path, "rb") as f:
                raw = f.read(65536)
        except OSError:
            pass
    text = raw.decode(errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):  # "halted at <iso>" (before issue 14), or garbage
        m = re.search(r"halted at (\S+)", text)
        return HaltFile(_when(m.group(1) if m else None) or mtime, "an older tradelab live halt", "pending")
    return HaltFile(_when(body.get("halted_at")) or mtime, str(body.get("by") or "unknown"),
                    "done" if body.get("flatten") == "done" else "pending", _when(body.get("cli_until")), body)


def write_halt(state_dir: Path, body: dict) -> Path:
    """Write the HALT file atomically (a reader sees the old file or the new one, never half of one)."""
    path = Path(state_dir) / HALT
    atomic_write_bytes((json.dumps(body, indent=1, default=str) + "\n").encode(), path)
    return path


def _when(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@dataclass
class FlattenPass:
    """One try at flattening for a HALT: what it did and what still stands in the way."""

    at: datetime | None = None  # the broker's clock
    cancelled: list[OrderAck] = field(default_factory=list)
    sent: list[OrderIntent] = field(default_factory=list)  # flatten orders the broker took now
    working: list[str] = field(default_factory=list)  # symbols whose flatten order went out before
    problems: list[str] = field(default_factory=list)  # orders not cancelled yet, flatten orders refused

    @property
    def complete(self) -> bool:
        return not self.problems


def flatten_pass(broker, store, halt: HaltFile, settle: float = 5.0, sleep=time.sleep) -> FlattenPass:
    """Cancel every open order, then send one market order closing each position the broker holds,
    under the runner's ids (``client_order_id(owner, symbol, halted_at, "flatten", seq)``), the intent
    stored first. Sized from the broker's positions read after the cancels are through, never from
    the store (a position someone else closed meanwhile is not sold again: that would open a short).
    The owner is the strategy the store says holds the symbol; a position no strategy holds goes out
    under ``EXTERNAL``, as the store books fills it did not order. Flatten orders of this halt still
    working are kept, not sent again. Raises the broker's errors (BrokerError, OSError): the caller
    tries again at its next poll; a refusal is a ``problem`` and the pass is not complete."""
    result = FlattenPass(at=broker.clock().timestamp)
    reason = f"HALT of {halt.halted_at.isoformat()}: flatten"
    orders = broker.open_orders()
    mine = {o.client_order_id for o in orders if _is_mine(store, o.client_order_id, reason)}
    parents = store.leg_parents()
    listed = {o.client_order_id for o in orders}
    for o in orders:
        if o.client_order_id in mine or parents.get(o.client_order_id) in listed:
            continue  # ours, or an OCO leg that goes with its parent
        try:
            broker.cancel(o.id)
        except BrokerError as err:
            if not 400 <= err.status < 500 or err.status == 429:
                raise
            result.problems.append(f"{o.symbol}: cancel of {o.client_order_id} refused: {err}")
            continue
        result.cancelled.append(o)
    cut = {o.client_order_id for o in result.cancelled}
    gone = {o.id for o in orders if o.client_order_id in cut or parents.get(o.client_order_id) in cut}
    end = time.monotonic() + settle
    while gone:  # a cancel at Alpaca goes through pending_cancel: no close while shares are held
        orders = broker.open_orders()
        left = [o for o in orders if o.id in gone]
        if not left:
            break
        if time.monotonic() > end:
            result.problems += [f"{o.symbol}: {o.client_order_id} still open ({o.status}) after its cancel"
                                for o in left]
            return result
        sleep(0.2)
    working: dict[tuple[str, str], float] = {}
    for o in orders:
        if o.client_order_id in mine:
            working[(o.symbol, o.side)] = working.get((o.symbol, o.side), 0.0) + o.remaining_qty
    owners = _owners(store)
    for sym, p in sorted(broker.positions().items()):
        side = "sell" if p.qty > 0 else "buy"
        need = abs(p.qty) - working.get((sym, side), 0.0)
        if need <= 1e-9:
            result.working.append(sym)
            continue
        owner = owners.get((sym, side), EXTERNAL)
        try:
            # the ids' time on the minute: an id whose strategy name is truncated is then read back whole
            stamp = halt.halted_at.replace(second=0, microsecond=0)
            order = _next_flatten(broker, store, owner, sym, side, need, stamp, reason)
            _flatten_plan(store, order)
            store.record_intent(order)
            store.record_order(broker.submit(order))
        except BrokerError as err:
            if not 400 <= err.status < 500 or err.status == 429:
                raise
            result.problems.append(f"{sym}: flatten order refused by the broker: {err}")
            continue
        except (ValueError, RuntimeError) as err:  # an id the symbol cannot carry; the store refusing it
            result.problems.append(f"{sym}: no flatten order: {err}")
            continue
        result.sent.append(order)
    return result


def record_flatten(state_dir: Path, store, halt: HaltFile, done: FlattenPass, by: str) -> str:
    """A complete ``flatten_pass`` for ``halt``, recorded: the account halt in the store (every decision
    path models it from then on), a ``halt`` line in the decision log, HALT rewritten as done. Called
    by whoever holds the store (the runner, or ``tradelab live halt`` when no runner does); returns
    the one-line account of what was done."""
    sent = [f"{o.symbol} {o.side} {o.qty:g} ({o.strategy}, {o.client_order_id})" for o in done.sent]
    message = (f"HALT of {halt.halted_at.isoformat()}: {len(done.cancelled)} orders cancelled, flatten "
               f"orders {', '.join(sent) or 'none (nothing held)'}"
               + (f"; already working for {', '.join(done.working)}" if done.working else ""))
    store.record_halt(session_day(done.at), ACCOUNT, f"HALT file: flattened by {by}", at=done.at)
    line = {"event": "halt", "scope": ACCOUNT, "rule": "halt_file", "message": message,
            "cancelled": [o.client_order_id for o in done.cancelled],
            "flatten_orders": [o.client_order_id for o in done.sent],
            "logged_at": pd.Timestamp.now(tz="UTC").isoformat()}
    try:
        with open(Path(state_dir) / "decisions.jsonl", "a") as f:  # no runner's worker writes it meanwhile
            f.write(json.dumps(line) + "\n")
        write_halt(state_dir, {**halt.body, "halted_at": halt.halted_at.isoformat(), "by": by,
                               "flatten": "done", "requested_by": halt.by, "cli_until": None,
                               "flattened_at": pd.Timestamp.now(tz="UTC").isoformat(),
                               "cancelled": len(done.cancelled),
                               "flatten_orders": [o.client_order_id for o in done.sent]})
    except OSError as exc:
        log.error("HALT: the account is flattened but %s could not be updated: %s", state_dir, exc)
    return message


def _is_mine(store, cid: str, reason: str) -> bool:
    stored = store.intent(cid)
    return stored is not None and stored[0].reason == reason


def _owners(store) -> dict[tuple[str, str], str]:
    """(symbol, closing side) -> the strategy holding the most of it in the store (EXTERNAL aside)."""
    best: dict[tuple[str, str], tuple[float, str]] = {}
    for (strategy, sym), p in store.positions().items():
        if strategy == EXTERNAL or not p.qty:
            continue
        key = (sym, "sell" if p.qty > 0 else "buy")
        if abs(p.qty) > best.get(key, (0.0, ""))[0]:
            best[key] = (abs(p.qty), strategy)
    return {k: s for k, (_, s) in best.items()}


def _flatten_plan(store, order: OrderIntent) -> None:
    """A symbol several strategies hold (netted, runner_book.py) is closed by one order whose fills
    go to each of them by a stored plan (state_book.py), the rest (not ours) to EXTERNAL."""
    closing = -1 if order.side == "sell" else 1
    rows = [(s, closing * abs(p.qty), None) for (s, y), p in sorted(store.positions().items())
            if y == order.symbol and s != EXTERNAL and p.qty * closing < 0]
    if len(rows) < 2:
        return
    rest = order.qty - sum(abs(q) for _, q, _ in rows)
    if rest < -1e-9:  # the broker holds less than the strategies: close each in order, as far as it goes
        left, trimmed = order.qty, []
        for s, q, r in rows:
            take = min(abs(q), left)
            left -= take
            if take > 1e-9:
                trimmed.append((s, closing * take, r))
        rows = trimmed
    elif rest > 1e-9:
        rows.append((EXTERNAL, closing * rest, None))
    state_book.record_plan(store, order.client_order_id, order.symbol, rows, crossed=False)


def _next_flatten(broker, store, owner: str, sym: str, side: str, qty: float, at: datetime,
                  reason: str) -> OrderIntent:
    """The flatten order to send: the first seq this halt has not used, or a stored one the broker
    never got (the store keeps the intent before the submit, so a failed submit is sent again as is)."""
    tif = "gtc" if float(qty).is_integer() else "day"  # Alpaca takes fractional quantities as day orders only
    for seq in range(MAX_SEQ + 1):
        cid = client_order_id(owner, sym, at, "flatten", seq)
        # gtc: at Alpaca a market order fills at once in an open session; a daily simulator fills it at
        # the next open, as the day-loss halt's flatten orders (HaltDesk._flatten)
        order = OrderIntent(cid, sym, side, qty, strategy=owner, time_in_force=tif, reason=reason)
        stored = store.intent(cid)
        if stored is None:
            return order
        if stored[0] == order and store.order(cid) is None and broker.order_by_client_id(cid) is None:
            return order
    raise ValueError(f"every flatten id of {owner} {sym} for this halt is used")


class HaltLoop:
    """The daemon's side of a pending HALT (mixed into live_bridge.daemon.Daemon: its broker state,
    backoff, poll, stop event, notifier and status.json)."""

    def _stop_trading(self, runner) -> bool:
        """No bar is traded any more: the bar feed stops, the runner finishes the events queued before
        (a decision it could not send yet may still go out: the flatten that follows covers it) and
        stops, leaving the state store to this thread. False if stopped first (SIGTERM)."""
        if self.bars is not None:
            self.bars.stop()
            self.bars = None
        runner.stop()
        self._runner_stopped = True
        worker = runner._thread
        while worker is not None and worker.is_alive():  # an event stuck on the broker: the store is its till then
            log.warning("HALT: waiting for the runner's event in hand to end before flattening")
            if self.stop.wait(1.0):
                return False
        return True

    def _flatten_for_halt(self, broker, store, halt: HaltFile, runner) -> bool:
        """Flatten the account for a pending HALT with the runner's own orders (``flatten_pass``),
        again at each poll while the broker is out of reach or something stands in the way; then mark
        HALT done and return True. False when stopped first (SIGTERM, or the HALT file removed)."""
        self.halting = {"halted_at": halt.halted_at.isoformat(), "by": halt.by, "state": "flattening",
                        "since": pd.Timestamp.now(tz="UTC").isoformat(), "problems": []}
        tries, told = 0, None
        while True:
            current = read_halt(self.state_dir)
            if current is None or current.done:
                log.warning("HALT %s while flattening: stopping", "removed" if current is None else
                            f"marked done by {current.by}")
                self.halting["state"] = "abandoned: HALT removed" if current is None else "done by " + current.by
                return current is not None
            halt = current  # (a second tradelab live halt may have rewritten it)
            wait = current.cli_wait(pd.Timestamp.now(tz="UTC").to_pydatetime())
            if wait > 0:  # tradelab live halt is still at work on the broker: never two flattens at once
                self.halting["state"] = f"waiting for {current.by} (until {current.cli_until.isoformat()})"
                self._write_status(runner)
                if self.stop.wait(min(wait, max(self.poll, 0.2))):
                    return False
                continue
            self.halting["state"] = "flattening"
            try:
                done = flatten_pass(broker, store, halt)
            except (BrokerError, OSError, TimeoutError) as err:
                self._down("flattening for HALT", err, tries)
                tries += 1
                if self.stop.wait(self.backoff[min(tries - 1, len(self.backoff) - 1)]):
                    return False
                continue
            self.broker_state.update(ok=True, error=None)
            if done.complete:
                self._halted(store, halt, done)
                self._write_status(runner)
                return True
            self.halting["problems"] = done.problems
            log.warning("HALT: not flat yet (%s); again at the next poll", "; ".join(done.problems))
            if told != done.problems:
                told = done.problems
                self._alert("halt", "flatten incomplete, retrying each poll: " + "; ".join(done.problems))
            self._write_status(runner)
            if self.stop.wait(max(self.poll, 1.0)):
                return False

    def _halted(self, store, halt: HaltFile, done) -> None:
        """Every order is out: the halt recorded (the decision path models it), logged, alerted; HALT done."""
        message = record_flatten(self.state_dir, store, halt, done, "runner")
        log.warning("%s; stopping", message)
        self.halting["state"] = "done"
        self._alert("halt", message)

    def _alert(self, kind: str, message: str) -> None:
        if self.notifier is None:
            return
        from .alerts import Alert

        try:
            self.notifier.notify(Alert(kind, message, severity="critical"))
        except Exception:  # a broken sink never stops a halt
            log.exception("alert %s not sent", kind)
