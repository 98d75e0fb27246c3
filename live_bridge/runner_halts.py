"""The runner's loss halts: the day loss of the account and the day loss of each strategy.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size. A strategy's P&L *of the day*
is what its fills of the day and the moves of what it holds made since the start of the session:
cash flows of the day's fills, plus what it holds now at the last close, minus what it held at the
start of the day at the last close before the session (not the unrealized P&L since the entry,
which would halt a strategy for a gain it gave back over several days).
"""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd

log = logging.getLogger("live_bridge.runner")


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
