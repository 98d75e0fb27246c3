"""The runner's order desk: risk check, intent stored, the order handed to the sender, its answer.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size: it shares the runner's state
(store, broker, risk context, worker queue). Every broker call goes through ``Sender`` (one
symbol's calls in order, symbols in parallel) and its answer comes back to the worker thread as an
``ack`` event, so the state store keeps one writer. Decided intents are stored before they can
reach the broker; an intent found in the store (decided before a restart) is never decided again.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

import pandas as pd

from research.exits import ExitRules, stop_price, target_price

from .ids import client_order_id, parse_client_order_id
from .ports import BrokerError, OrderAck, OrderIntent
from .risk import Proposal, RiskContext
from .sleeves import Decision

log = logging.getLogger("live_bridge.runner")


@dataclass
class Work:
    """One event for the runner's worker thread."""

    kind: str  # "bar" | "fill" | "ack" | "order" | "call" | "reload" | "decide" | "alert" | "noop" | "stop"
    item: object
    done: threading.Event = field(default_factory=threading.Event)


class OrderDesk:
    """Sending, acknowledging and cancelling orders (mixed into Runner)."""

    def _send(self, intent: OrderIntent, d: Decision, ctx: RiskContext, entry: dict,
              stop_frac: float | None = None, plan: tuple = ()) -> bool:
        """Risk check, record the intent, hand the order to the sender; False when the risk check refused it.

        The broker's answer comes back through ``_ack`` (an "order" line in the decision log); until
        then the order counts in the risk context as pending (``_inflight``).
        """
        stored = self.store.intent(intent.client_order_id)
        if stored is not None:  # decided before a restart: that decision stands (at most one order per intent)
            return self._resend(stored[0], entry)
        ctx = self._ctx if self._ctx is not None else ctx  # current: cancels just made are out of it
        verdict = self.risk.check(Proposal(intent, d.close, stop_frac), ctx)
        record = {"order": intent.client_order_id, "symbol": intent.symbol, "side": intent.side, "qty": intent.qty,
                  "type": intent.type, "allowed": verdict.allowed, "rule": verdict.rule, "risk": verdict.message}
        entry["actions"].append(record)
        if not verdict.allowed:
            return False
        order = verdict.order(intent)
        rules = json.dumps(asdict(d.rules)) if d.rules is not None else None  # the stop a restart must place
        self.store.record_intent(order, decision_ref=rules, plan=plan)  # a netted order: its plan with it  # before it can reach the broker: a crash is reconciled by this id
        self.recent = [x for x in self.recent if (ctx.clock.timestamp - x).total_seconds() < 60] + [ctx.clock.timestamp]
        pending = _pending(order, ctx.clock.timestamp)
        self._inflight[order.client_order_id] = pending
        if self._ctx is not None:
            account = self._ctx.account
            if not verdict.reduces_risk:  # what the order holds of the buying power, until the next snapshot
                account = replace(account, buying_power=account.buying_power - order.qty * d.close)
            kept = tuple(x for x in self._ctx.open_orders if x.id not in verdict.cancel_first)
            self._ctx = replace(self._ctx, account=account, open_orders=(*kept, pending, *pending.legs))
            self._legs.update({leg.client_order_id: order.client_order_id for leg in pending.legs})
        self._dispatch(order, verdict.cancel_first)
        return True

    def _resend(self, order: OrderIntent, entry: dict, cancels: list[OrderAck] | None = None) -> bool:
        """An intent the store holds from before a restart: sent again only if the broker never got it,
        after ``cancels`` (the open orders its decision cancelled first: they may never have gone)."""
        known = self.store.order(order.client_order_id)
        entry["actions"].append({"order": order.client_order_id, "symbol": order.symbol, "side": order.side,
                                 "qty": order.qty, "type": order.type, "allowed": True, "rule": None,
                                 "risk": "decided before a restart: " + ("already at the broker" if known else
                                                                         "sent again with the same id")})
        if known is None and order.client_order_id not in self._inflight:
            self._cancel_all(cancels or [], entry)  # through the symbol's serial sender: before the order
            self._dispatch(order, ())
        return True

    def _dispatch(self, order: OrderIntent, cancels: tuple[str, ...]) -> None:
        """Hand a recorded order (and the cancels that must precede it) to the sender."""
        self.sender.call(order.symbol, "submit", (order, tuple(cancels)),
                         lambda ack, err: self._q.put(Work("ack", (order, ack, err))))

    def _ack(self, order: OrderIntent, ack: OrderAck | None, err: BaseException | None) -> None:
        """The broker's answer to an order the sender sent (on the worker thread: the store's one writer)."""
        self._inflight.pop(order.client_order_id, None)
        line = {"event": "order", "order": order.client_order_id, "symbol": order.symbol}
        if err is not None:
            drop = ("pending:" + order.client_order_id,)
            if self._ctx is not None:
                self._ctx = replace(self._ctx, open_orders=tuple(x for x in self._ctx.open_orders if x.id not in drop))
            # the broker's own refusal (buying power, wash trade...); a timeout or 5xx is a failure whose
            # intent stays open for reconcile
            refused = isinstance(err, BrokerError) and 400 <= err.status < 500
            line.update(status="refused by the broker" if refused else "failed", broker_error=f"{type(err).__name__}: {err}")
            log.warning("runner: %s %s: %s", order.client_order_id, line["status"], err)
            if not refused:
                self.errors.append(f"order {order.client_order_id}: {type(err).__name__}: {err}")
            self._abandon_pair(order.client_order_id, line)
        else:
            self._record(ack)
            if self._ctx is not None:  # the ack (and its legs) in place of the pending order (and its pending leg)
                kept = tuple(x for x in self._ctx.open_orders if x.client_order_id != ack.client_order_id
                             and self._legs.get(x.client_order_id) != ack.client_order_id)
                self._ctx = replace(self._ctx, open_orders=(*kept, ack, *ack.legs))
            line.update(status=ack.status, broker_id=ack.id)
            if ack.legs:
                line["legs"] = [{"order": leg.client_order_id, "type": leg.type, "broker_id": leg.id} for leg in ack.legs]
        self._write(line)

    def _order_update(self, update: object) -> None:
        """An order of ours changed status: stored; an order the broker ended without filling it all
        (canceled, expired, rejected: e.g. buying power at the open) leaves the risk context and is
        logged; a rejection is also alerted (the order never traded, the backtest may say otherwise)."""
        ack = update.order
        if self._owner(ack.client_order_id) is None or not self.store.record_order(ack):
            return
        if ack.status not in ("canceled", "expired", "rejected"):
            return
        if self._ctx is not None:
            self._ctx = replace(self._ctx, open_orders=tuple(x for x in self._ctx.open_orders if x.id != ack.id))
        line = {"event": "order_status", "order": ack.client_order_id, "symbol": ack.symbol, "status": ack.status,
                "filled_qty": ack.filled_qty, "at": update.timestamp.isoformat()}
        if ack.status == "rejected":
            self._alert("order_rejected", ack.symbol, f"{ack.client_order_id} ({ack.side} {ack.qty:g} {ack.type}) "
                        "rejected by the broker after it was accepted (e.g. buying power at the open): not traded",
                        order=ack.client_order_id)
            self._abandon_pair(ack.client_order_id, line)  # a pair's other leg does not trade alone
        self._write(line)

    def _abandon_pair(self, cid: str, line: dict) -> None:
        """A pair's entry leg the broker refused: cancel the other leg's entry of the same bar."""
        p = parse_client_order_id(cid, self.names)
        if p is None or p.strategy != "pairs" or p.intent != "entry" or self._ctx is None:
            return
        line["actions"] = []
        for o in self._pair_entries(p.bar_time):
            self._cancel(o, line)

    def _pair_entries(self, bar_time: datetime) -> list[OrderAck]:
        """The open (or in-flight) pairs entry orders decided at ``bar_time``."""
        out = []
        for o in self._ctx.open_orders if self._ctx is not None else ():
            q = parse_client_order_id(o.client_order_id, self.names)
            if q is not None and q.strategy == "pairs" and q.intent == "entry" and q.bar_time == bar_time:
                out.append(o)
        return out

    def _record(self, ack: OrderAck) -> None:
        """Store an order's ack; an OCO's legs too, with their parent (their ids are the broker's)."""
        self.store.record_order(ack)
        if ack.legs:
            self.store.record_legs(ack)
            for leg in ack.legs:
                self._legs[leg.client_order_id] = ack.client_order_id
                self.store.record_order(leg)

    def _cancel_all(self, orders: list[OrderAck], entry: dict) -> None:
        """Cancel these orders; an OCO's leg goes with its parent (one cancel at the broker)."""
        parents = {o.client_order_id for o in orders}
        for o in orders:
            if self._legs.get(o.client_order_id) in parents:
                if self._ctx is not None:
                    self._ctx = replace(self._ctx, open_orders=tuple(x for x in self._ctx.open_orders if x.id != o.id
                                                                     or x.client_order_id != o.client_order_id))
                continue
            self._cancel(o, entry)

    def _cancel(self, o: OrderAck, entry: dict) -> None:
        """Cancel an open order (through the sender: after the symbol's earlier calls)."""
        if self._ctx is not None:
            self._ctx = replace(self._ctx, open_orders=tuple(x for x in self._ctx.open_orders if x.id != o.id))
        entry["actions"].append({"cancel": o.client_order_id})

        def done(_, err: BaseException | None) -> None:
            if err is not None:
                log.warning("runner: cancel of %s failed: %s", o.client_order_id, err)
                self._q.put(Work("noop", None))

        self.sender.call(o.symbol, "cancel", (o,), done)

    # --- fills -------------------------------------------------------------------------------------

    def _protect(self, entry_cid: str, price: float, at: datetime, line: dict) -> None:
        """The protective stop of an entry filled at ``price``: research.exits.stop_price of the fill,
        with research.exits.target_price as its OCO take-profit when the rules have one."""
        parsed = parse_client_order_id(entry_cid, self.names)
        owner = (parsed.strategy, parsed.symbol)
        rules = self.rules_by_cid.get(entry_cid) or self._stored_rules(entry_cid)
        qty = self.store.position(*owner).qty
        direction = 1 if qty > 0 else -1
        level = stop_price(direction, price, price, rules) if rules is not None else None
        take = target_price(direction, price, rules) if rules is not None else None
        if level is not None and qty != 0:
            cid = client_order_id(owner[0], owner[1], parsed.bar_time, "stop", 1)
            intent = OrderIntent(cid, owner[1], "sell" if qty > 0 else "buy", abs(qty), type="stop",
                                 stop_price=level, time_in_force="gtc", strategy=owner[0], take_profit=take,
                                 reason="protective stop" + (" with take-profit (OCO)" if take else ""))
            d = Decision(owner[0], owner[1], pd.Timestamp(at), price, "", direction, direction,
                         price, level, take, rules, "stop on the entry fill")
            self._try(("protect", entry_cid), lambda: self._send(intent, d, self._context(), line),
                      f"placing the stop of {entry_cid}")

    def _stored_rules(self, cid: str) -> ExitRules | None:
        """The exit rules recorded with an entry's intent (a restart lost the in-memory ones)."""
        stored = self.store.intent(cid)
        return ExitRules(**json.loads(stored[1])) if stored is not None and stored[1] else None


def _pending(order: OrderIntent, at: datetime) -> OrderAck:
    """What a sent order counts as in the risk context until its ack; an OCO is its take-profit
    parent and its stop leg, as the broker will list them (both cancel under ``pending:<id>``)."""
    pid, cid = "pending:" + order.client_order_id, order.client_order_id
    if order.take_profit is None:
        return OrderAck(pid, cid, order.symbol, order.side, order.qty, 0.0, None, "pending_new", order.type,
                        order.stop_price, order.limit_price, at)
    leg = OrderAck(pid, cid + ":stop-leg", order.symbol, order.side, order.qty, 0.0, None, "pending_new", "stop",
                   order.stop_price, None, at, parent=cid)
    return OrderAck(pid, cid, order.symbol, order.side, order.qty, 0.0, None, "pending_new", "limit", None,
                    order.take_profit, at, legs=(leg,))
