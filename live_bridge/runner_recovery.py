"""The runner's start-up after a crash: adopt the broker's orders, count what filled while down,
send the stops that never went out, and halt on positions that still disagree.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size. Missed fills are counted as
``ports.synthetic_fill`` (the fill feed's execution id ``<order id>:<cum qty>``), and the feed is
then seeded from the store (``seed_fill_feed``), so nothing is counted twice.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import state_book
from .ids import parse_client_order_id
from .ports import OrderAck, sign, synthetic_fill


class ReconcileError(RuntimeError):
    """The broker and the state store disagree beyond tolerance: the runner halts with this report."""


class Recovery:
    """Start-up reconciliation (mixed into Runner)."""

    def _catch_up(self, ack: OrderAck) -> list[str]:
        """Count the fills of an order that happened while the runner was down (its stop too, for an entry).

        The missed quantity becomes one ``ports.synthetic_fill`` (the fill feed makes the same one:
        id ``<order id>:<cum qty>``, the price that makes the counted notional add up to ``filled_qty *
        filled_avg_price``), so a feed seeded from the store (``seed_fill_feed``) never counts it again.
        """
        qty, notional = self.store.fill_totals().get(ack.client_order_id, (0.0, 0.0))
        fill = synthetic_fill(ack, qty, notional, ack.submitted_at)
        if fill is None:
            return []
        self._fill(replace(fill, timestamp=self.broker.clock().timestamp))  # stamped now, by the broker's clock
        return [f"counted {fill.qty:g} {ack.symbol} filled while down ({ack.client_order_id})"]

    def seed_fill_feed(self, feed) -> None:
        """Tell a fill feed what the store has counted already, and which orders are still open (before
        ``feed.start()`` after a restart): an open order that fills before the feed's stream is subscribed
        is then found by its polls (chaos found one that was not: a stop adopted at reconcile, filled a
        moment later, never counted)."""
        for cid, (qty, notional) in self.store.fill_totals().items():
            feed.seed(cid, qty, notional / qty if qty else None)
        if hasattr(feed, "watch"):
            for oid, cid in self.store.open_orders():
                feed.watch(oid, cid)

    def reconcile(self, tolerance: float = 1e-6) -> list[str]:
        """Adopt the broker's orders, count the fills missed while down, then compare positions:
        ReconcileError naming every mismatch."""
        notes, unsent = [], []
        for intent in self.store.open_intents():  # sent before a crash? look it up before anything else
            ack = self.broker.order_by_client_id(intent.client_order_id)
            if ack is not None:
                self._record(ack)  # an OCO's legs too: their fills are this intent's strategy's
                notes.append(f"adopted {intent.client_order_id} ({ack.status})")
                notes += self._catch_up(ack)
                for leg in ack.legs:  # the stop of an OCO that filled while down
                    notes += self._catch_up(leg)
            else:
                unsent.append(intent)
        for cid in self.store.uncounted_fills():  # acknowledged as filled, the fill itself never counted
            ack = self.broker.order_by_client_id(cid)
            if ack is not None:
                notes += self._catch_up(ack)
        for intent in unsent:  # stored, never sent: a stop still protecting its position goes out now;
            # an entry or exit is the decision of its bar (re-deciding that bar sends it, a later bar decides anew)
            have = self.store.position(intent.strategy, intent.symbol).qty
            if intent.type == "stop" and have and sign(intent.side) == -np.sign(have) and intent.qty <= abs(have) + 1e-9:
                self._dispatch(intent, ())
                notes.append(f"sent the stop {intent.client_order_id} stored before the crash")
            else:
                notes.append(f"not sent: {intent.client_order_id} ({intent.type} {intent.side}), decided before the crash")
        stops = {self._owner(o.client_order_id) for o in self.broker.open_orders() if o.type == "stop"}
        stops |= {(i.strategy, i.symbol) for i in unsent if i.type == "stop" and i.client_order_id in self._inflight}
        totals = self.store.fill_totals()
        for (strategy, symbol), p in self.store.positions().items():  # a fill counted, its stop never placed
            entry = self.store.last_entry(strategy, symbol)
            if strategy in self.names and (strategy, symbol) not in stops and entry in totals:
                q, notional = totals[entry]
                line = {"event": "reconcile", "order": entry, "actions": []}
                self._protect(entry, notional / q, self.broker.clock().timestamp, line)
                self._write(line)
                notes.append(f"placed the missing stop of {entry}")
        for sym in self._netted:  # netted symbols: every holding strategy's stop, at its entry's level, under
            # the ids the fill of the symbol's last plan gives them (so a stop it placed already is not doubled)
            cid = state_book.last_plan(self.store, sym)
            if cid is None:
                continue
            line = {"event": "reconcile", "symbol": sym, "actions": []}
            self._reprotect(sym, parse_client_order_id(cid).bar_time, line, state_book.broker_fills(self.store, cid))
            if line["actions"]:
                self._write(line)
                notes.append(f"checked the stops of {sym}'s strategies: {len(line['actions'])} actions")
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
