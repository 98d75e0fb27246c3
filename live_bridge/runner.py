"""The live runner: at each bar close, the sweeps' own functions decide; risk checks; the broker trades.

Events (bars from the market-data feed, fills from the trade-updates feed) go through ONE worker
thread in arrival order, so decisions are deterministic and the state store has one writer.

At a bar close of a symbol, for every sleeve (strategy, symbol) of the params file (one sleeve per
symbol; a mixed one switches strategy with the regime, and acts as the strategy of the entry governing
its decision, ``Decision.strategy``):
1. ``sleeves.decide`` runs the strategy's signal function and the exit rules over the bars since
   the anchor (``research.switching``): the position to hold from the next open and the stop.
2. The decision becomes intents: an entry (market, sized by ``risk.size`` from the stop distance
   and capped), an exit (market, after cancelling the sleeve's stop), or a stop to (re)place.
3. Each intent passes ``RiskManager.check`` (rejections name the rule), is recorded in the state
   store, then handed to the sender (runner_orders.py: broker calls off this thread) with its
   deterministic ``client_order_id``; the ack comes back as an event and is recorded.
4. An entry's fill places its protective stop at ``research.exits.stop_price`` of the fill price,
   so it works for the rest of the entry bar as in the backtest; with a take-profit, the stop and
   ``research.exits.target_price`` go out as one OCO (the target is the parent; the stop leg's id is
   the broker's, and ``self._legs``, kept in the store, says whose it is).
Every decision, verdict and order is a line of the JSONL decision log (no keys, ever).
Multi-leg sleeves (pairs, rotation) trade their legs' target weights (``_act_basket``). Start-up
after a crash is runner_recovery.py; the broker snapshot a decision reads, runner_snapshot.py; bad
bars and data gaps are refused here (history.py).
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from research.params import ParamsFile

from .history import COLUMNS, History
from .ids import client_order_id, parse_client_order_id
from .ports import Broker, Fill, OrderAck, OrderIntent, OrderUpdate, SpawnSpec, sign
from .risk import DayState, RiskContext, RiskLimits, RiskManager, drawdown_factor, size
from .runner_alerts import AlertDesk, _write_all, json_line
from .runner_bars import BarDesk
from .runner_baskets import BasketDesk
from .runner_book import BookDesk
from .runner_orders import OrderDesk, Work
from .runner_halts import HaltDesk
from .runner_params import ParamsDesk
from .runner_recovery import ReconcileError, Recovery
from .runner_snapshot import SnapshotDesk
from .regimes_live import OnlineRegimes, regime_params_of
from .sender import ProcessSender, Sender
from .sleeves import BasketDecision, Decision, Sleeve, decide, decide_basket, holder
from .state import StateStore
from .state_book import crossing_symbols, plan_keys

log = logging.getLogger(__name__)
__all__ = ["COLUMNS", "ReconcileError", "Runner", "RunnerConfig"]


@dataclass(frozen=True)
class RunnerConfig:
    """How the runner trades. ``trade_from``: no entry is decided on a bar before it (warm-up)."""

    timeframe: str = "1Day"
    limits: RiskLimits = RiskLimits()
    trade_from: pd.Timestamp | None = None
    decision_log: Path | None = None
    snapshot_seconds: float = 30.0  # max age of the broker snapshot a decision may use (see _context)
    sender_threads: int = 4  # broker calls in flight at once (different symbols; see sender.py)
    keep_decisions: int | None = None  # decisions kept in memory (None: all, as replays need; the log has every one)
    sender_process: bool = False  # broker calls from a child process (the live daemon; the broker's spawn_spec())
    max_bar_jump: float = 0.5  # |log(close / previous close)| beyond which a bar is refused (history.bar_problem)
    max_missing_bars: int = 3  # more bars missing before a bar than this: no new entry on it, and an alert
    decide_at_start: bool = False  # decide each symbol's last history bar at start if it is at/after trade_from
    # (the daemon: a decision whose fill is still ahead, e.g. after the close and before the next open)


class Runner(BarDesk, OrderDesk, BasketDesk, BookDesk, Recovery, ParamsDesk, HaltDesk, AlertDesk, SnapshotDesk):
    """Trades one params file on one broker; see the module docstring."""

    def __init__(self, broker: Broker, params: ParamsFile, history: Mapping[str, Mapping[str, np.ndarray]],
                 regime_daily: Mapping[str, Mapping[str, np.ndarray]], store: StateStore,
                 config: RunnerConfig = RunnerConfig(), *, candidates: bool = False,
                 epochs: Sequence[tuple[int, ParamsFile]] | None = None, notifier=None) -> None:
        """``history``: warm-up bars per symbol; ``regime_daily``: daily bars (ts, open, high, low, close)
        of each regime benchmark up to the start, which the runner labels sessions from as its bars
        come (runner_params.py); ``epochs``: the params files traded so far, (from_us, file) oldest
        first, as the state store keeps them (default: ``params`` alone)."""
        self.broker, self.store, self.config, self.candidates = broker, store, config, candidates
        # what the sender process builds its own broker from (it holds the keys: never logged)
        self._spawn: SpawnSpec | None = broker.spawn_spec() if config.sender_process else None
        if config.sender_process and self._spawn is None:
            raise ValueError(f"sender_process needs a broker that can be built again in another process; "
                             f"{broker!r} cannot (its spawn_spec() is None)")
        self.notifier = notifier  # alerts.Notifier: halts, refusals, reload failures, stale data
        # sessions labelled with the params file's own regime definition (the one the nightly used)
        definition = regime_params_of(list(epochs) if epochs else [params])
        self.books = {b: OnlineRegimes(b, a, definition) for b, a in regime_daily.items()}
        self._use(list(epochs) if epochs else [(0, params)], candidates)  # candidates: replays only (sleeves.py)
        self._awaiting: dict[str, dict[tuple[str, str], int]] = {}  # benchmark -> flat sleeves waiting for its bar
        self._book_last: dict[tuple[str, str], Decision] = {}  # a netted sleeve's last decision (runner_book.py)
        self._plans, self._crossing = plan_keys(store), crossing_symbols(store)  # netted plans stored, symbols to cross
        self._halt_marks: list[tuple[int, str]] = store.halt_marks()  # every decision path models them
        self._hist = {sym: History(a, config.timeframe) for sym, a in history.items()}
        self.history = {sym: h.arrays for sym, h in self._hist.items()}  # views, current after every bar
        self._seed_books()
        self.risk = RiskManager(config.limits)
        self.day: DayState | None = None
        self.recent: list[datetime] = []
        # the latest decisions (replays keep all; the daemon keeps the last keep_decisions: a list that
        # grows all day is memory, and every full GC walks it)
        self.decisions: deque[Decision | BasketDecision] = deque(maxlen=config.keep_decisions)
        self.rules_by_cid: dict[str, object] = {}
        self._legs: dict[str, str] = store.leg_parents()  # an OCO leg's client_order_id -> its parent's
        self._q: queue.Queue[Work] = queue.Queue()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        # unbuffered, whole lines per write (O_APPEND): a line is in the file once written, none lost to a
        # crash, and a line another process appends (a control action) never lands inside one of ours
        self._log = open(config.decision_log, "ab", buffering=0) if config.decision_log else None  # noqa: SIM115
        self._held: list[tuple[dict, float]] | None = None  # a batch of bars' lines, written after its orders
        self.errors: list[str] = []
        self.fills_seen = store.fill_count()  # distinct executions counted, a restart's included (lockstep waits on it)
        self._ctx: RiskContext | None = None
        self._by_symbol: tuple[Sequence[OrderAck] | None, dict] = (None, {})  # _orders_on's index
        self._ctx_at = 0.0
        self._sender: Sender | None = None  # REST calls off the worker thread, in order per symbol (lazy)
        self._inflight: dict[str, OrderAck] = {}
        self._pending_acts: dict[tuple[str, str], tuple] = {}  # decisions to act on once the broker answers
        self._gapped: set[str] = set()  # symbols whose latest bar came after a data gap: no entry on it
        self.alerts: list[dict] = []
        self._stale: dict[str, int] = {}  # symbol -> last bar ts already alerted as stale  # bad bars, data gaps, stale feeds: also in the decision log  # handed to the sender, not acknowledged yet (by client_order_id)
        self.trade_from_us = None if config.trade_from is None else int(config.trade_from.value // 1000)

    # --- the worker ------------------------------------------------------------------------------
    def start(self) -> None:
        self._warm_up()
        if self.config.sender_process:  # the child starts now (a second or two), not on the first order's path
            self._write({"event": "start", "order_sender": f"process {self.sender._proc.pid}"})
        # Everything alive now (modules, history, kernels) is kept out of the cyclic GC: a full
        # collection over it paused the worker 50-85 ms in bench/live.py, on the bar path.
        gc.collect()
        gc.freeze()
        self._thread = threading.Thread(target=self._loop, name="runner", daemon=True)
        self._thread.start()
        if self.config.decide_at_start and self.trade_from_us is not None:
            for sym, h in self._hist.items():  # benchmarks first: they label the next session
                if h.last_ts is not None and h.last_ts >= self.trade_from_us and sym in self.books:
                    self._q.put(Work("decide", sym))
            for sym, h in self._hist.items():
                if h.last_ts is not None and h.last_ts >= self.trade_from_us and sym not in self.books:
                    self._q.put(Work("decide", sym))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued events and the orders in flight, then stop (graceful: SIGTERM/SIGINT land here)."""
        if self._thread is not None:
            self.settle(timeout)
            self._q.put(Work("stop", None))
            self._thread.join(timeout)
        if self._sender is not None:
            self._sender.close(timeout)
        if self._thread is not None:
            gc.unfreeze()  # the process may go on (tests, notebooks): its objects are collectable again
        if self._log:
            self._log.close()
            self._log = None

    @property
    def sender(self) -> Sender | ProcessSender:
        if self._sender is None:
            if self._spawn is not None:
                self._sender = ProcessSender(self._spawn, self.config.sender_threads)
            else:
                self._sender = Sender(self.broker, self.config.sender_threads)
        return self._sender

    def _warm_up(self) -> None:
        """Decide once per sleeve on the history, one by one and batched: numba loads its kernels now,
        not on the first live bar."""
        self._decide_all([sym for sym, h in self._hist.items() if len(h)])
        for sl in self.sleeves:
            if not all(len(self.history.get(x, {}).get("ts", ())) for x in sl.data):
                continue
            if sl.legs is None:
                decide(sl, self.history[sl.symbol], self.config.timeframe, self.regimes_of(sl.benchmark),
                       self.trade_from_us, halts=self._halt_marks)
            else:
                decide_basket(sl, self.history, self.config.timeframe, self.trade_from_us)

    def on_bar(self, bar: object, act: bool = True) -> None:
        """Feed callback (any thread): a completed bar with symbol, ts (UTC), open, high, low, close, volume.
        ``act=False``: a bar caught up after a gap that a newer bar follows: decided, logged, not traded."""
        self._q.put(Work("bar", bar if act else (bar, False)))

    def on_fill(self, fill: Fill) -> None:
        """Feed callback (any thread): one execution."""
        self._q.put(Work("fill", fill))

    def on_order(self, update: OrderUpdate) -> None:
        """Feed callback (any thread): an order's status changed."""
        self._q.put(Work("order", update))

    def on_update(self, update: Fill | OrderUpdate) -> None:
        """The trade-updates feed's callback: executions to ``on_fill``, status changes to ``on_order``."""
        (self.on_fill if isinstance(update, Fill) else self.on_order)(update)

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued event has been handled and every order sent and acknowledged
        (lockstep replays call this)."""
        end = time.monotonic() + timeout
        while True:
            marker = Work("noop", None)
            self._q.put(marker)
            if not marker.done.wait(max(0.0, end - time.monotonic())):
                return False
            if (self._sender is None or self._sender.pending == 0) and not self._inflight:
                if not self._pending_acts:
                    return True
                time.sleep(0.05)  # a decision waits for the broker to answer (_retry_acts)
            if not self.sender.drain(max(0.0, end - time.monotonic())):
                return False

    def _loop(self) -> None:
        while True:
            if self._q.empty():
                self._prefetch()  # idle: refresh the broker snapshot now, not on the next bar's clock
                self._watch_feed()
                self._retry_acts()
            try:  # wake up while idle to keep the snapshot fresh (_prefetch) and to retry decisions
                w = self._q.get(timeout=0.2 if self._pending_acts else self.config.snapshot_seconds / 4)
            except queue.Empty:
                continue
            try:
                if w.kind == "stop":
                    return
                if w.kind == "bar":
                    more = self._more_bars()  # the bars queued behind it: one close of many symbols
                    try:
                        self._bars([w.item, *(x.item for x in more)])
                    finally:
                        for x in more:
                            x.done.set()
                            self._q.task_done()
                elif w.kind == "reload":
                    self._reload(*w.item)
                elif w.kind == "decide":
                    self._decide_symbol(w.item, self._hist[w.item])
                elif w.kind == "call":  # a control request run on the worker (live_bridge.control): never raises
                    w.item()
                elif w.kind == "alert":
                    self._alert(*w.item)
                elif w.kind == "fill":
                    self._fill(w.item)
                elif w.kind == "ack":
                    self._ack(*w.item)
                elif w.kind == "order":
                    self._order_update(w.item)
            except Exception as exc:  # one bad event must not kill the runner: log it, keep going
                log.exception("runner: %s event failed", w.kind)
                self.errors.append(f"{w.kind}: {type(exc).__name__}: {exc}")
                self._write({"event": "error", "kind": w.kind, "error": f"{type(exc).__name__}: {exc}"})
            finally:  # the log is unbuffered: a kill -9 loses no line of a handled event
                w.done.set()
                self._q.task_done()

    # --- bars -> decisions -> orders ----------------------------------------------------------------
    def _decide_symbol(self, sym: str, hist: History, act: bool = True, decided: dict = {}) -> None:  # noqa: B006
        """Every sleeve deciding on this symbol's bars, at its latest bar (``decided``: decisions made
        already, by id(sleeve): ``_decide_all``)."""
        ts = hist.last_ts
        netted = sym in self._netted
        if netted:  # several strategies on this symbol: all decide, then one net order (runner_book.py)
            self._decide_book(sym, ts, act, decided=decided)
        for sleeve in self._watch.get(sym, ()):
            if sleeve.legs is None and netted:
                continue
            if sleeve.legs is None:
                self._decide_sleeve(sleeve, sym, ts, hist, act, decided.get(id(sleeve)))
            elif decided.get(("basket", id(sleeve))) == ts:
                continue  # a batch held several of its legs' bars: decided at the first of them
            elif all(len(self.history.get(x, {}).get("ts", ())) and self.history[x]["ts"][-1] == ts
                     for x in sleeve.data):  # the last leg's bar of this time: decide once
                if decided:
                    decided[("basket", id(sleeve))] = ts
                bd = decide_basket(sleeve, self.history, self.config.timeframe, self.trade_from_us)
                self.decisions.append(bd)
                if act:
                    self._act_now(sleeve, bd, sym, ts)

    def _decide_sleeve(self, sleeve: Sleeve, sym: str, ts: int, hist: History, act: bool = True,
                       d: Decision | None = None) -> None:
        if d is None:
            d, _ = decide(sleeve, hist.arrays, self.config.timeframe, self.regimes_of(sleeve.benchmark),
                          self.trade_from_us, bars=hist.bars, halts=self._halt_marks)
        self.decisions.append(d)
        if d.regime_next == "unknown" and d.position == 0 and sleeve.by_regime:  # its benchmark's bar is not here yet
            self._awaiting.setdefault(sleeve.benchmark, {})[(sleeve.strategy, sym)] = ts
        if act:
            self._act_now(sleeve, d, sym, ts)
        else:
            self._write({"event": "decision", **vars(d),
                         "actions": [{"skip": "a bar caught up late: a newer bar of the symbol decides"}]})

    def _act_now(self, sleeve: Sleeve, d: Decision | BasketDecision, sym: str, ts: int) -> None:
        """Act on a decision; if the broker cannot be read right now (after the adapter's retries), act
        on it again when idle, unless a newer bar of the symbol came first (ids are per bar: never twice)."""
        def act() -> None:
            if self._hist[sym].last_ts == ts:  # still the latest bar: its decision stands
                (self._act if sleeve.legs is None else self._act_basket)(sleeve, d)

        self._try(("act", sleeve.strategy, sleeve.symbol), act, f"deciding {sleeve.strategy} {sleeve.symbol}",
                  bar_time=d.bar_time)

    def _act(self, sleeve: Sleeve, d: Decision) -> None:
        # who acts: the decision's strategy (a mixed sleeve: the open position's entry's, or the next
        # regime's), unless another of the sleeve's strategies still holds the symbol in the books
        who, have = holder(d.strategy, {s: self.store.position(s, sleeve.symbol).qty for s in sleeve.names})
        entry = {"event": "decision", **vars(d), "held_qty": have,
                 **({"held_by": who} if who != d.strategy else {}), "actions": []}
        ctx = self._context(d.bar_time)
        owners = {(s, sleeve.symbol) for s in sleeve.names}
        mine = [o for o in self._orders_on(ctx, sleeve.symbol)  # an OCO's stop leg is its parent's (self._legs)
                if self._owner(o.client_order_id) in owners]
        t = d.bar_time.to_pydatetime()
        if have != 0 and self.day is not None and self.day.halted:
            entry["actions"].append({"skip": "the account is halted: its flatten order closes the position"})
        elif d.target == 0 and have != 0 and d.position == 0 and any(o.type == "stop" for o in mine):
            # the backtest's stop (or target) filled inside this bar: the broker's stop did too, and its
            # fill report is on its way; a market exit now would sell the same shares twice
            entry["actions"].append({"skip": "the stop filled inside the bar; waiting for its fill report"})
        elif d.target == 0 and have != 0 and self._acted_before(who, sleeve.symbol, t, "exit", entry, mine):
            pass  # this bar's exit was decided before a restart: it stands (resent after its cancels if never sent)
        elif d.target == 0 and have != 0:
            self._cancel_all(mine, entry)
            side = "sell" if have > 0 else "buy"
            self._send(OrderIntent(client_order_id(who, sleeve.symbol, t, "exit"), sleeve.symbol, side,
                                   abs(have), strategy=who, reason=d.reason), d, ctx, entry)
        elif d.target != 0 and have == 0 and d.position == 0 and sleeve.symbol in self._gapped:
            entry["actions"].append({"skip": "no entry on the first bar after a data gap (see the data_gap alert)"})
        elif d.target != 0 and have == 0 and d.position == 0:
            stop_frac = d.rules.stop_loss or d.rules.trailing_stop or self.config.limits.default_stop_pct or 0.02
            qty = size(ctx.account.equity, d.close, d.close * stop_frac, self.config.limits,
                       drawdown_factor(ctx.account.equity, ctx.peak_equity, self.config.limits))
            if qty < 1:
                entry["actions"].append({"skip": f"entry sized to {qty:g} shares"})
            else:
                cid = client_order_id(who, sleeve.symbol, t, "entry")
                self.rules_by_cid[cid] = d.rules
                self._send(OrderIntent(cid, sleeve.symbol, "buy" if d.target > 0 else "sell", qty,
                                       strategy=who, reason=d.reason), d, ctx, entry, stop_frac)
        elif d.target != 0 and have != 0 and sign("buy" if have > 0 else "sell") == d.target and d.stop is not None:
            stops = [o for o in mine if o.type == "stop"]
            targets = [o for o in mine if o.type == "limit" and o.client_order_id not in self._legs]  # OCO parents
            moved = not stops or abs((stops[0].stop_price or 0) - d.stop) > 1e-9 or abs(stops[0].qty - abs(have)) > 1e-9
            if d.take_profit is not None:  # the target rides with the stop as one OCO: both must be there, at their levels
                moved = moved or not targets or abs((targets[0].limit_price or 0) - d.take_profit) > 1e-9
            if moved and self._acted_before(who, sleeve.symbol, t, "stop", entry, stops + targets):
                pass  # this bar's stop was decided before a restart: never sent twice
            elif moved:
                # a new level, or a stop that does not cover the position (a partial entry fill after it)
                self._cancel_all(stops + targets, entry)
                self._send(OrderIntent(client_order_id(who, sleeve.symbol, t, "stop"), sleeve.symbol,
                                       "sell" if have > 0 else "buy", abs(have), type="stop", stop_price=d.stop,
                                       time_in_force="gtc", strategy=who, take_profit=d.take_profit,
                                       reason="protective stop" + (" with take-profit (OCO)" if d.take_profit else "")),
                           d, ctx, entry)
        elif d.target != 0 and have == 0 and d.position != 0:
            entry["actions"].append({"skip": "the backtest holds a position the account does not (an entry was "
                                             "refused or missed): no late entry"})
        self._write(entry)

    def _acted_before(self, strategy: str, symbol: str, t: datetime, intent: str, entry: dict,
                      cancels: list[OrderAck]) -> bool:
        """This bar's ``intent`` is stored already (decided before a restart; a store lookup on exits and
        stop moves only). If the broker got it, it stands and so do the orders it left. If not, the
        process died between storing it and sending it, maybe before the cancels that had to go first
        (the old stop holds the shares an exit sells): ``cancels`` go first, then the same order."""
        stored = self.store.intent(client_order_id(strategy, symbol, t, intent))
        if stored is None:
            return False
        self._resend(stored[0], entry, [o for o in cancels if o.client_order_id != stored[0].client_order_id])
        return True

    def _fill(self, fill: Fill) -> None:
        if self._book_fill(fill):  # a netted symbol's order: allocated to its strategies by its plan
            return
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
            self._protect(fill.client_order_id, fill.price, fill.timestamp, line)
        self._write(line)
        if self.day is not None:  # a loss halt trips on the fill that makes the loss, not at the next bar
            self._try(("halts",), self._context, "checking the loss halts")

    def _orders_on(self, ctx: RiskContext, sym: str) -> Sequence[OrderAck]:
        """``ctx``'s open orders of ``sym``, indexed once per snapshot (a bar of 500 sleeves read them
        500 times: with a stop per position, a scan of every open order each time)."""
        orders = ctx.open_orders
        if self._by_symbol[0] is not orders:
            index: dict[str, list[OrderAck]] = {}
            for o in orders:
                index.setdefault(o.symbol, []).append(o)
            self._by_symbol = (orders, index)
        return self._by_symbol[1].get(sym, ())

    def _owner(self, cid: str) -> tuple[str, str] | None:
        return _owner(self._legs.get(cid, cid), tuple(self.names))

    def _write(self, entry: dict) -> None:
        """One decision-log line (JSON). In a batch of bars the line is held, stamped, and written once
        the batch's orders are on their way (``_release_log``): a line is complete when written, and
        no code changes an entry after writing it."""
        if self._log:
            if self._held is not None:
                self._held.append((entry, time.time()))
            else:
                entry.setdefault("logged_at", datetime.now(timezone.utc).isoformat())
                _write_all(self._log, json_line(entry))

    def _release_log(self) -> None:
        """The lines a batch held, serialized and written in one write."""
        held, self._held = self._held, None
        if held and self._log:
            for entry, at in held:
                if "logged_at" not in entry:
                    entry["logged_at"] = datetime.fromtimestamp(at, timezone.utc).isoformat()
            _write_all(self._log, b"".join(json_line(entry) for entry, _ in held))


@lru_cache(maxsize=8192)
def _owner(cid: str, names: tuple[str, ...]) -> tuple[str, str] | None:
    """(strategy, symbol) of a tradelab client_order_id (None: not ours); cached, ids repeat every bar."""
    parsed = parse_client_order_id(cid, names)
    return None if parsed is None else (parsed.strategy, parsed.symbol)
