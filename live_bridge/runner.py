"""The live runner: at each bar close, the sweeps' own functions decide; risk checks; the broker trades.

Events (bars from the market-data feed, fills from the trade-updates feed) go through ONE worker
thread in arrival order, so decisions are deterministic and the state store has one writer.

At a bar close of a symbol, for every sleeve (strategy, symbol) of the params file:
1. ``sleeves.decide`` runs the strategy's signal function and the exit rules over the bars since
   the anchor (``research.switching``): the position to hold from the next open and the stop.
2. The decision becomes intents: an entry (market, sized by ``risk.size`` from the stop distance
   and capped), an exit (market, after cancelling the sleeve's stop), or a stop to (re)place.
3. Each intent passes ``RiskManager.check`` (rejections name the rule), is recorded in the state
   store, then sent with its deterministic ``client_order_id``; the ack is recorded.
4. An entry's fill places its protective stop at ``research.exits.stop_price`` of the fill price,
   so it works for the rest of the entry bar as in the backtest.
Every decision, verdict and order is a line of the JSONL decision log (no keys, ever).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from research.exits import stop_price
from research.params import ParamsFile

from .ids import client_order_id, parse_client_order_id
from .ports import Broker, BrokerError, Fill, OrderAck, OrderIntent, session_day, sign
from .risk import DayState, Proposal, RiskContext, RiskLimits, RiskManager, drawdown_factor, size
from .sleeves import BasketDecision, Decision, Sleeve, decide, decide_basket, sleeves
from .state import StateStore

log = logging.getLogger(__name__)
COLUMNS = ("ts", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class RunnerConfig:
    """How the runner trades. ``trade_from``: no entry is decided on a bar before it (warm-up)."""

    timeframe: str = "1Day"
    limits: RiskLimits = RiskLimits()
    trade_from: pd.Timestamp | None = None
    decision_log: Path | None = None
    snapshot_seconds: float = 30.0  # max age of the broker snapshot a decision may use (see _context)


class ReconcileError(RuntimeError):
    """The broker and the state store disagree beyond tolerance: the runner halts with this report."""


@dataclass
class _Work:
    kind: str  # "bar" | "fill" | "call"
    item: object
    done: threading.Event = field(default_factory=threading.Event)


class Runner:
    """Trades one params file on one broker; see the module docstring."""

    def __init__(self, broker: Broker, params: ParamsFile, history: Mapping[str, Mapping[str, np.ndarray]],
                 regimes: Mapping[str, pd.DataFrame], store: StateStore, config: RunnerConfig = RunnerConfig(),
                 *, candidates: bool = False) -> None:
        self.broker, self.params, self.store, self.config = broker, params, store, config
        self.sleeves: list[Sleeve] = sleeves(params, candidates)  # candidates: replays only (sleeves.py)
        self.names = sorted({s.strategy for s in self.sleeves})
        traders: dict[str, set[str]] = {}
        for s in self.sleeves:
            for sym in s.traded:
                traders.setdefault(sym, set()).add(s.strategy)
        shared = {sym: sorted(v) for sym, v in traders.items() if len(v) > 1}
        if shared:  # the account holds one position per symbol; netting sleeves is not built
            raise ValueError("one account holds one position per symbol, and these symbols are traded by more "
                             "than one strategy: " + "; ".join(f"{k} by {', '.join(v)}" for k, v in sorted(shared.items()))
                             + " (trade each symbol with one strategy: e.g. `tradelab nightly -p "
                               "'strategies=[\"sma_cross\"]'`)")
        self._watch: dict[str, list[Sleeve]] = {}  # symbol -> the sleeves deciding on its bars
        for s in self.sleeves:
            for sym in s.data:
                self._watch.setdefault(sym, []).append(s)
        targets = [f"{s.strategy} {s.symbol} {lab}" for s in self.sleeves for lab, (_, r) in zip(s.labels, s.entries)
                   if r.take_profit > 0]
        if targets:  # the backtest would exit at the target; without the order live would not: refuse
            raise ValueError("take-profit orders are not traded live yet, and these entries have one: "
                             + ", ".join(targets))
        missing = [s.benchmark for s in self.sleeves if s.by_regime and s.benchmark not in regimes]
        if missing:
            raise ValueError(f"no regimes for {', '.join(sorted(set(missing)))}: the params trade per regime")
        self.regimes = dict(regimes)
        self.history = {sym: {c: np.asarray(a[c]) for c in COLUMNS} for sym, a in history.items()}
        self.risk = RiskManager(config.limits)
        self.day: DayState | None = None
        self.recent: list[datetime] = []
        self.decisions: list[Decision] = []
        self.rules_by_cid: dict[str, object] = {}
        self._q: queue.Queue[_Work] = queue.Queue()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self._log = open(config.decision_log, "a", buffering=1) if config.decision_log else None  # noqa: SIM115
        self.errors: list[str] = []
        self.fills_seen = 0  # distinct executions handled (lockstep replays wait on it)
        self._ctx: RiskContext | None = None
        self._ctx_at = 0.0
        self.trade_from_us = None if config.trade_from is None else int(config.trade_from.value // 1000)

    # --- the worker ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued events, then stop (graceful: SIGTERM/SIGINT land here)."""
        if self._thread is not None:
            self._q.put(_Work("stop", None))
            self._thread.join(timeout)
        if self._log:
            self._log.close()
            self._log = None

    def on_bar(self, bar: object) -> None:
        """Feed callback (any thread): a completed bar with symbol, ts (UTC), open, high, low, close, volume."""
        self._q.put(_Work("bar", bar))

    def on_fill(self, fill: Fill) -> None:
        """Feed callback (any thread): one execution."""
        self._q.put(_Work("fill", fill))

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued event has been handled (lockstep replays call this)."""
        end = time.monotonic() + timeout
        marker = _Work("noop", None)
        self._q.put(marker)
        return marker.done.wait(max(0.0, end - time.monotonic()))

    def _loop(self) -> None:
        while True:
            if self._q.empty():
                self._prefetch()  # idle: refresh the broker snapshot now, not on the next bar's clock
            w = self._q.get()
            try:
                if w.kind == "stop":
                    return
                if w.kind == "bar":
                    self._bar(w.item)
                elif w.kind == "fill":
                    self._fill(w.item)
            except Exception as exc:  # one bad event must not kill the runner: log it, keep going
                log.exception("runner: %s event failed", w.kind)
                self.errors.append(f"{w.kind}: {type(exc).__name__}: {exc}")
                self._write({"event": "error", "kind": w.kind, "error": f"{type(exc).__name__}: {exc}"})
            finally:
                w.done.set()

    # --- bars -> decisions -> orders ----------------------------------------------------------------
    def _bar(self, bar: object) -> None:
        sym = bar.symbol
        ts = int(pd.Timestamp(bar.ts).tz_convert("UTC").value // 1000)
        h = self.history.setdefault(sym, {c: np.empty(0) for c in COLUMNS})
        if len(h["ts"]) and ts <= h["ts"][-1]:
            return  # a bar seen already (stream and poll overlap)
        for c, v in zip(COLUMNS, (ts, bar.open, bar.high, bar.low, bar.close, bar.volume)):
            h[c] = np.append(h[c], np.int64(v) if c == "ts" else float(v))
        for sleeve in self._watch.get(sym, ()):
            if sleeve.legs is None:
                d, _ = decide(sleeve, h, self.config.timeframe, self.regimes.get(sleeve.benchmark), self.trade_from_us)
                self.decisions.append(d)
                self._act(sleeve, d)
            elif all(len(self.history.get(x, {}).get("ts", ())) and self.history[x]["ts"][-1] == ts
                     for x in sleeve.data):  # the last leg's bar of this time: decide once
                bd = decide_basket(sleeve, self.history, self.config.timeframe, self.trade_from_us)
                self.decisions.append(bd)
                self._act_basket(sleeve, bd)

    def _prefetch(self) -> None:
        if self._ctx is None or time.monotonic() - self._ctx_at > self.config.snapshot_seconds:
            try:
                self._context()
            except Exception as exc:  # the broker is unreachable now: the next decision fetches again
                log.warning("runner: broker snapshot failed: %s", exc)
                self._ctx = None

    def _context(self, bar_time: pd.Timestamp | None = None) -> RiskContext:
        """The broker's state for the risk check (account, clock, positions, open orders: 4 REST calls).

        Fetched while the runner is idle and kept current by its own orders and cancels, so a bar's
        decisions do not wait for the broker; a fill drops it, and it is refetched when older than
        ``snapshot_seconds`` (the equity it sizes with is at most that old). ``bar_time=None``
        forces a fetch.
        """
        if bar_time is not None and self._ctx is not None \
                and time.monotonic() - self._ctx_at <= self.config.snapshot_seconds \
                and session_day(bar_time) == self._ctx.clock.session:  # a new session rolls the day state
            if bar_time >= self._ctx.clock.timestamp:  # the time rules (hours, cutoff, rate) need now
                self._ctx = replace(self._ctx, clock=self.broker.clock())
            return replace(self._ctx, recent_orders=tuple(self.recent))
        account, clock = self.broker.account(), self.broker.clock()
        self.day = DayState.begin(clock, account, self.store.halts(clock.session)) if self.day is None \
            else self.day.roll(clock, account)
        self._halts(account, clock)
        self._ctx = RiskContext(account, self.broker.positions(), self.broker.open_orders(), self.day,
                                self.store.peak_equity(account.equity), clock, tuple(self.recent))
        self._ctx_at = time.monotonic()
        return self._ctx

    def _act(self, sleeve: Sleeve, d: Decision) -> None:
        have = self.store.position(sleeve.strategy, sleeve.symbol).qty
        entry = {"event": "decision", **{k: getattr(d, k) for k in d.__dataclass_fields__}, "held_qty": have,
                 "actions": []}
        ctx = self._context(d.bar_time)
        mine = [o for o in ctx.open_orders if self._owner(o.client_order_id) == (sleeve.strategy, sleeve.symbol)]
        t = d.bar_time.to_pydatetime()
        if d.target == 0 and have != 0 and d.position == 0 and any(o.type == "stop" for o in mine):
            # the backtest's stop (or target) filled inside this bar: the broker's stop did too, and its
            # fill report is on its way; a market exit now would sell the same shares twice
            entry["actions"].append({"skip": "the stop filled inside the bar; waiting for its fill report"})
        elif d.target == 0 and have != 0:
            for o in mine:
                self._cancel(o, entry)
            side = "sell" if have > 0 else "buy"
            self._send(OrderIntent(client_order_id(sleeve.strategy, sleeve.symbol, t, "exit"), sleeve.symbol, side,
                                   abs(have), strategy=sleeve.strategy, reason=d.reason), d, ctx, entry)
        elif d.target != 0 and have == 0 and d.position == 0:
            stop_frac = d.rules.stop_loss or d.rules.trailing_stop or self.config.limits.default_stop_pct or 0.02
            qty = size(ctx.account.equity, d.close, d.close * stop_frac, self.config.limits,
                       drawdown_factor(ctx.account.equity, ctx.peak_equity, self.config.limits))
            if qty < 1:
                entry["actions"].append({"skip": f"entry sized to {qty:g} shares"})
            else:
                cid = client_order_id(sleeve.strategy, sleeve.symbol, t, "entry")
                self.rules_by_cid[cid] = d.rules
                self._send(OrderIntent(cid, sleeve.symbol, "buy" if d.target > 0 else "sell", qty,
                                       strategy=sleeve.strategy, reason=d.reason), d, ctx, entry, stop_frac)
        elif d.target != 0 and have != 0 and sign("buy" if have > 0 else "sell") == d.target and d.stop is not None:
            stops = [o for o in mine if o.type == "stop"]
            if not stops or abs((stops[0].stop_price or 0) - d.stop) > 1e-9:
                for o in stops:
                    self._cancel(o, entry)
                self._send(OrderIntent(client_order_id(sleeve.strategy, sleeve.symbol, t, "stop"), sleeve.symbol,
                                       "sell" if have > 0 else "buy", abs(have), type="stop", stop_price=d.stop,
                                       time_in_force="gtc", strategy=sleeve.strategy, reason="protective stop"),
                           d, ctx, entry)
        elif d.target != 0 and have == 0 and d.position != 0:
            entry["actions"].append({"skip": "the backtest holds a position the account does not (an entry was "
                                             "refused or missed): no late entry"})
        self._write(entry)

    def _act_basket(self, sleeve: Sleeve, d: BasketDecision) -> None:
        """Legs whose weight changed trade to it: exits first, then entries sized from the position cap.

        Entry sizes: the leg with the largest weight gets ``max_position_pct`` of equity (times the
        drawdown factor), the others in proportion, floored to whole shares; a pair enters only
        when both legs get at least one share. A leg whose weight is on but not held (an entry
        refused or missed) is not entered late.
        """
        entry = {"event": "decision", **{k: getattr(d, k) for k in d.__dataclass_fields__}, "actions": []}
        ctx = self._context(d.bar_time)
        t = d.bar_time.to_pydatetime()
        held = {leg: self.store.position(sleeve.strategy, leg).qty for leg in sleeve.traded}
        enters = [leg for leg in sleeve.traded if d.previous[leg] == 0 and d.target[leg] != 0 and held[leg] == 0]
        for leg in sleeve.traded:
            h, w0, w = held[leg], d.previous[leg], d.target[leg]
            if h != 0 and (w == 0 or w0 == 0 or (h > 0) != (w > 0)):  # to flat (held without a weight: too)
                qty, side = abs(h), "sell" if h > 0 else "buy"
            elif h != 0 and w != w0:  # a new size on the same side: trade the difference
                want = int(h * w / w0)
                qty, side = abs(want - h), "buy" if want > h else "sell"
            else:
                continue
            for o in ctx.open_orders:
                if self._owner(o.client_order_id) == (sleeve.strategy, leg):
                    self._cancel(o, entry)
            if qty >= 1:
                self._send(OrderIntent(client_order_id(sleeve.strategy, leg, t, "exit"), leg, side, qty,
                                       strategy=sleeve.strategy, reason=d.reason), _leg(d, leg), ctx, entry)
        if enters:
            top = max(abs(v) for v in d.target.values())
            cap = ctx.account.equity * self.config.limits.max_position_pct \
                * drawdown_factor(ctx.account.equity, ctx.peak_equity, self.config.limits)
            qty = {leg: int(abs(d.target[leg]) / top * cap / d.closes[leg]) for leg in enters}
            if sleeve.strategy == "pairs" and min(qty.values()) < 1:
                entry["actions"].append({"skip": f"pair entry sized to {qty}: a leg gets no share"})
                enters = []
            acks = []
            for leg in enters:
                if qty[leg] < 1:
                    entry["actions"].append({"skip": f"{leg} entry sized to 0 shares"})
                    continue
                acks.append(self._send(OrderIntent(client_order_id(sleeve.strategy, leg, t, "entry"), leg,
                                                   "buy" if d.target[leg] > 0 else "sell", qty[leg],
                                                   strategy=sleeve.strategy, reason=d.reason), _leg(d, leg), ctx, entry))
            if sleeve.strategy == "pairs" and None in acks:  # never one leg of a pair alone
                for ack in filter(None, acks):
                    self._cancel(ack, entry)
                entry["actions"].append({"skip": "pair entry abandoned: a leg was refused"})
        late = [leg for leg in sleeve.traded if d.target[leg] != 0 and d.target[leg] == d.previous[leg] and held[leg] == 0]
        if late:
            entry["actions"].append({"skip": f"weight on but not held ({', '.join(late)}): no late entry"})
        self._write(entry)

    def _halts(self, account, clock) -> None:
        """Day loss (flatten everything, halt until the next session) and strategy loss (off for the day)."""
        pnl = dict(self.store.daily_pnl(clock.session))
        for (strategy, symbol), p in self.store.positions().items():
            closes = self.history.get(symbol, {}).get("close")
            if p.qty and closes is not None and len(closes):
                pnl[strategy] = pnl.get(strategy, 0.0) + p.qty * (float(closes[-1]) - p.avg_price)
        self.day, events = self.day.update(account.equity, pnl, self.config.limits)
        for ev in events:
            self.store.record_halt(clock.session, ev.scope, ev.message)
            line = {"event": "halt", "scope": ev.scope, "rule": ev.rule, "message": ev.message}
            if ev.flatten_all:
                line["closing_orders"] = [a.client_order_id for a in self.broker.close_all()]
            log.warning("runner: halt %s: %s", ev.rule, ev.message)
            self._write(line)

    def _send(self, intent: OrderIntent, d: Decision, ctx: RiskContext, entry: dict,
              stop_frac: float | None = None) -> OrderAck | None:
        """Risk check, record, submit; the broker's ack, or None when refused (the record says why)."""
        verdict = self.risk.check(Proposal(intent, d.close, stop_frac), ctx)
        record = {"order": intent.client_order_id, "symbol": intent.symbol, "side": intent.side, "qty": intent.qty, "type": intent.type,
                  "allowed": verdict.allowed, "rule": verdict.rule, "risk": verdict.message}
        entry["actions"].append(record)
        if not verdict.allowed:
            return None
        for oid in verdict.cancel_first:
            self.broker.cancel(oid)
            if self._ctx is not None:
                self._ctx = replace(self._ctx, open_orders=tuple(x for x in self._ctx.open_orders if x.id != oid))
        order = verdict.order(intent)
        self.store.record_intent(order)
        self.recent = [x for x in self.recent if (ctx.clock.timestamp - x).total_seconds() < 60] + [ctx.clock.timestamp]
        try:
            ack = self.broker.submit(order)  # idempotent by client_order_id: a resend returns the same order
        except BrokerError as exc:  # the broker's own refusal (buying power, wash trade...): logged, not fatal
            record.update(status="refused by the broker", broker_error=str(exc))
            log.warning("runner: %s refused by the broker: %s", order.client_order_id, exc)
            return None
        self.store.record_order(ack)
        if self._ctx is not None:
            account = self._ctx.account
            if not verdict.reduces_risk:  # what the order holds of the buying power, until the next snapshot
                account = replace(account, buying_power=account.buying_power - order.qty * d.close)
            self._ctx = replace(self._ctx, account=account, open_orders=(*self._ctx.open_orders, ack))
        record.update(status=ack.status, broker_id=ack.id)
        return ack

    def _cancel(self, o: OrderAck, entry: dict) -> None:
        self.broker.cancel(o.id)
        if self._ctx is not None:
            self._ctx = replace(self._ctx, open_orders=tuple(x for x in self._ctx.open_orders if x.id != o.id))
        entry["actions"].append({"cancel": o.client_order_id})

    # --- fills -------------------------------------------------------------------------------------
    def _fill(self, fill: Fill) -> None:
        owner = self._owner(fill.client_order_id)
        strategy = owner[0] if owner else None
        if not self.store.record_fill(fill, strategy):
            return  # a duplicate trade update: counted once
        self.fills_seen += 1
        self._ctx = None  # positions and cash changed
        parsed = parse_client_order_id(fill.client_order_id, self.names)
        line = {"event": "fill", "order": fill.client_order_id, "side": fill.side, "qty": fill.qty,
                "price": fill.price, "at": fill.timestamp.isoformat(), "actions": []}
        if parsed is not None and parsed.intent == "entry" and owner is not None:
            rules = self.rules_by_cid.get(fill.client_order_id)
            qty = self.store.position(*owner).qty
            direction = 1 if qty > 0 else -1
            level = stop_price(direction, fill.price, fill.price, rules) if rules is not None else None
            if level is not None and qty != 0:
                cid = client_order_id(owner[0], owner[1], parsed.bar_time, "stop", 1)
                ctx = self._context()
                intent = OrderIntent(cid, owner[1], "sell" if qty > 0 else "buy", abs(qty), type="stop",
                                     stop_price=level, time_in_force="gtc", strategy=owner[0], reason="protective stop")
                d = Decision(owner[0], owner[1], pd.Timestamp(fill.timestamp), fill.price, "", direction, direction,
                             fill.price, level, None, rules, "stop on the entry fill")
                self._send(intent, d, ctx, line)
        self._write(line)

    def _owner(self, cid: str) -> tuple[str, str] | None:
        parsed = parse_client_order_id(cid, self.names)
        return None if parsed is None else (parsed.strategy, parsed.symbol)

    def _write(self, entry: dict) -> None:
        if self._log:
            entry.setdefault("logged_at", datetime.now(timezone.utc).isoformat())
            self._log.write(json.dumps(_jsonable(entry), default=str) + "\n")

    # --- start-up -------------------------------------------------------------------------------------
    def reconcile(self, tolerance: float = 1e-6) -> list[str]:
        """Adopt the broker's orders and positions, or raise ReconcileError naming every mismatch."""
        notes = []
        for intent in self.store.open_intents():  # sent before a crash? look it up before anything else
            ack = self.broker.order_by_client_id(intent.client_order_id)
            if ack is not None:
                self.store.record_order(ack)
                notes.append(f"adopted {intent.client_order_id} ({ack.status})")
        for o in self.broker.open_orders():
            if self._owner(o.client_order_id) is not None:
                self.store.record_order(o)
        broker = {s: p.qty for s, p in self.broker.positions().items()}
        stored = self.store.net_positions()
        bad = [f"{s}: broker {broker.get(s, 0):g} vs store {stored.get(s, 0):g}" for s in sorted(set(broker) | set(stored))
               if abs(broker.get(s, 0.0) - stored.get(s, 0.0)) > tolerance]
        if bad:
            raise ReconcileError("positions disagree; halting (close or adopt them by hand): " + "; ".join(bad))
        return notes


def _leg(d: BasketDecision, leg: str) -> Decision:
    """One leg of a basket decision in the shape ``_send`` (risk check, decision log) takes."""
    w = d.target[leg]
    return Decision(d.strategy, leg, d.bar_time, d.closes[leg], "all", int(np.sign(w)), int(np.sign(d.previous[leg])),
                    None, None, None, None, d.reason)


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, (pd.Timestamp, datetime)):
        return d.isoformat()
    if isinstance(d, float) and not np.isfinite(d):
        return None
    if hasattr(d, "__dataclass_fields__"):
        return _jsonable(asdict(d))
    return d
