"""What the runner knows of the broker when it decides, and acting again when the broker cannot be read.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size. A decision needs the account,
the clock, the positions and the open orders (``RiskContext``): four REST calls a bar cannot wait
for, so the snapshot is fetched while the runner is idle and kept current by its own orders. A
decision the broker could not be read for (after the adapter's retries) is kept and acted on when
the broker answers again, unless a newer bar of its symbol came first: order ids are per bar, so
acting again never sends an order twice.

The snapshot also carries what the portfolio rules read: each strategy's positions from the state
store (its capital budget), the latest closes (pending market entries' value) and the session's
daily-return correlations (``correlation.py``), built once per session from the closes of the
sessions before it: no bar of today, so no decision depends on which symbol's bar came first.

Every read of the account is also kept as the equity mark of its minute (``state_equity.py``: the
live page's curve), one INSERT and no broker call more on a decision's path. A read while idle is
bracketed by a second clock read: the account has no timestamp, and a replay's clock can step
between two calls (09:30 -> 16:00), so an idle read the clock moved across is not kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import pandas as pd

from .correlation import Correlations, LastCloses, correlations_from_sessions, session_index
from .ports import Account, BrokerError, MarketClock, Position, session_day
from .risk import DayState, RiskContext
from .state_equity import minute_us

log = logging.getLogger("live_bridge.runner")


class SnapshotDesk:
    """The broker snapshot and the decisions waiting for the broker (mixed into Runner)."""

    def _try(self, key: tuple, fn, what: str, **info) -> None:
        """Run ``fn``; if the broker cannot be read right now (after the adapter's retries: status 0, 429,
        5xx), run it again when idle (``_retry_acts``). Order ids are deterministic: a rerun never doubles."""
        try:
            fn()
        except BrokerError as err:
            if not (err.status == 0 or err.status == 429 or err.status >= 500):
                raise
            self._pending_acts[key] = (fn, what, info)
            self._write({"event": "broker_unavailable", "what": what, **info, "error": str(err),
                         "then": "again when the broker answers"})
            log.warning("runner: broker unavailable %s: %s (retrying when idle)", what, err)

    def _retry_acts(self) -> None:
        for key, (fn, what, info) in list(self._pending_acts.items()):
            del self._pending_acts[key]
            self._try(key, fn, what, **info)

    def _prefetch(self) -> None:
        """While idle: refetch the snapshot at half its allowed age, so a bar never waits for it."""
        if self._ctx is None or time.monotonic() - self._ctx_at > self.config.snapshot_seconds / 2:
            try:
                self._context(idle=True)
            except Exception as exc:  # the broker is unreachable now: the next decision fetches again
                log.warning("runner: broker snapshot failed: %s", exc)
                self._ctx = None

    def _context(self, bar_time: pd.Timestamp | None = None, *, idle: bool = False) -> RiskContext:
        """The broker's state for the risk check (account, clock, positions, open orders: 4 REST calls).

        Fetched while the runner is idle and kept current by its own orders and cancels, so a bar's
        decisions do not wait for the broker; a fill drops it, and it is refetched when older than
        ``snapshot_seconds`` (the equity it sizes with is at most that old). ``bar_time=None``
        forces a fetch; ``idle``: no decision waits, so the account's read is dated by a clock read
        before it too (``_mark_equity``).
        """
        if bar_time is not None and self._ctx is not None \
                and time.monotonic() - self._ctx_at <= self.config.snapshot_seconds \
                and session_day(bar_time) == self._ctx.clock.session:  # a new session rolls the day state
            if bar_time >= self._ctx.clock.timestamp:  # the time rules (hours, cutoff, rate) need now
                self._ctx = replace(self._ctx, clock=self.broker.clock())
            recent = tuple(self.recent)
            if recent != self._ctx.recent_orders:
                self._ctx = replace(self._ctx, recent_orders=recent)
            return self._ctx
        before = self.broker.clock().timestamp if idle else None
        account, clock = self.broker.account(), self.broker.clock()
        self._mark_equity(account, clock, before)
        self.day = DayState.begin(clock, account, self.store.halts(clock.session)) if self.day is None \
            else self.day.roll(clock, account)
        self._halts(account, clock)
        orders = self.broker.open_orders()
        known = {o.client_order_id for o in orders}
        orders = (*orders, *(x for c, p in self._inflight.items() if c not in known  # sent, not acknowledged yet
                             for x in (p, *p.legs)))
        positions = self.broker.positions()
        self._ctx = RiskContext(account, positions, orders, self.day, self.store.peak_equity(account.equity), clock,
                                tuple(self.recent), strategy_positions=self._strategy_books(positions),
                                marks=LastCloses(self.history), correlations=self._correlations(clock.session))
        self._ctx_at = time.monotonic()
        return self._ctx

    def _mark_equity(self, account: Account, clock: MarketClock, before=None) -> None:
        """Keep the account's equity and cash as the mark of the broker clock's minute (one INSERT), unless
        it is the mark kept last, or the clock read ``before`` the account is in another minute (which
        minute's equity it is cannot be told)."""
        at = clock.timestamp
        if before is not None and minute_us(before) != minute_us(at):
            return
        key = (minute_us(at), account.equity, account.cash)
        if getattr(self, "_last_mark", None) == key:  # (Runner.__init__ does not know it: set lazily)
            return
        try:
            self.store.mark_equity(at, account.equity, account.cash)
        except ValueError as exc:  # a broken account answer: no mark, the decision goes on
            log.warning("runner: equity mark not kept: %s", exc)
            return
        self._last_mark = key

    def _strategy_books(self, broker: dict[str, Position]) -> dict[str, dict[str, Position]]:
        """strategy -> symbol -> its position from the store, valued at the broker's mark (else the last
        close, else its average cost): the exposure its capital budget limits. Changes only with fills,
        and a fill drops the snapshot."""
        out: dict[str, dict[str, Position]] = {}
        for (strategy, symbol), p in self.store.positions().items():
            net = broker.get(symbol)
            if net is not None and net.qty:
                mark = abs(net.market_value / net.qty)
            else:
                close = self.history.get(symbol, {}).get("close")
                mark = float(close[-1]) if close is not None and len(close) else p.avg_price
            out.setdefault(strategy, {})[symbol] = Position(symbol, p.qty, p.avg_price, p.qty * mark)
        return out

    def _correlations(self, day) -> Correlations:
        """The daily-return correlations of every symbol the runner holds bars of, for decisions in session
        ``day``: the ``correlation_days`` returns up to the session before it. Cached per session (and
        rebuilt when a reload adds symbols): past closes do not change during the session."""
        session, days = session_index(day), self.config.limits.correlation_days
        key = (session, days, len(self._hist))
        cached = getattr(self, "_corr_cache", None)  # (Runner.__init__ does not know it: set lazily)
        if cached is not None and cached[0] == key:
            return cached[1]
        series = {sym: (h.bars.session, h.arrays["close"]) for sym, h in self._hist.items()}
        corr = correlations_from_sessions(series, session, days)
        self._corr_cache = (key, corr)
        return corr
