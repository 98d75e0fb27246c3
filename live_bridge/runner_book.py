"""Several strategies on one symbol: virtual positions per strategy, one net order to the broker.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size. A symbol is *netted* when two
single-leg strategies of the params file may hold it at once (``sleeves.netted_symbols``). Each
strategy keeps its own sleeve and its own virtual position (the state store's per-strategy
position), decided by its own signal function and exits exactly as its own backtest; the broker
sees one net position per symbol (Alpaca keeps one), and the runner keeps the store's sum equal to it.

At a bar close of a netted symbol every sleeve decides first, then ``_act_book``:
* A sleeve's exit is a change of ``-held``; its entry, a change of its sized quantity, checked by
  the risk manager as the sleeve's own entry (every entry rule, its strategy's halts and budget).
* The changes go out as ONE market order for their sum (``tl-book-<symbol>-<bar>-net``), after its
  plan is stored (``state_book``): Alpaca rejects an order facing an opposite-side open order (a
  potential wash trade), so a sleeve selling while another buys must never be two orders. Its
  fills are allocated back to the sleeves deterministically (crossed part first, then plan order).
  A zero sum sends nothing: the sleeves cross at the next bar's open, the backtest's fill price.
* No flip in one order: a sleeve may not enter against another sleeve's open position (the rule
  ``opposite_sleeves``, logged): the net position never changes sign in one order and the
  protective stops of a symbol are always on one side, so they can all rest at the broker.
* Protective stops stay per sleeve (its own id, level and quantity; their sum is the position).
  Adding to the position means buying against the resting sells: they are cancelled before the
  net order and every holding sleeve's stop is placed again once it fills (``_reprotect``); a
  sleeve whose level the runner does not know yet (a restart) gets it at the next bar close.
* Take-profits (OCO) on a netted symbol are refused at load (``runner_params.check_sleeves``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime

import pandas as pd

from research.exits import ExitRules, stop_price

from . import state_book
from .ids import client_order_id, parse_client_order_id
from .ports import Fill, OrderIntent
from .risk import Proposal, drawdown_factor, size
from .sleeves import Decision, Sleeve, decide

BOOK = "book"  # the strategy field of a netted symbol's net orders (their fills go to the plan's strategies)
_EPS = 1e-9


def netted_groups(sls: Sequence[Sleeve]) -> dict[str, list[Sleeve]]:
    """symbol -> its single-leg sleeves, sorted by strategy, for symbols with more than one."""
    by: dict[str, list[Sleeve]] = {}
    for s in sls:
        if s.legs is None:
            by.setdefault(s.symbol, []).append(s)
    return {sym: sorted(g, key=lambda s: s.strategy) for sym, g in by.items() if len(g) > 1}


class BookDesk:
    """Netting several strategies' sleeves on one symbol (mixed into Runner)."""

    def _decide_book(self, sym: str, ts: int, act: bool = True, only: frozenset[str] | None = None,
                     decided: Mapping[int, Decision] = {}) -> None:
        """Every sleeve of a netted symbol at its latest bar, then one act for them all. ``only``: the
        flat sleeves decided again once their regime benchmark's bar came (their entries are a second
        plan of the bar; the others' decisions of the bar stand)."""
        hist = self._hist[sym]
        ds = []
        for sl in self._netted[sym]:
            if only is not None and sl.strategy not in only:
                continue
            d = decided.get(id(sl)) or decide(sl, hist.arrays, self.config.timeframe, self.regimes_of(sl.benchmark),
                                              self.trade_from_us, bars=hist.bars, halts=self._halt_marks)[0]
            self.decisions.append(d)
            self._book_last[(sl.strategy, sym)] = d
            if d.regime_next == "unknown" and d.position == 0 and sl.by_regime:
                self._awaiting.setdefault(sl.benchmark, {})[(sl.strategy, sym)] = ts
            ds.append((sl, d))
        if not act:
            for _, d in ds:
                self._write({"event": "decision", **vars(d),
                             "actions": [{"skip": "a bar caught up late: a newer bar of the symbol decides"}]})
            return

        def go() -> None:
            if self._hist[sym].last_ts == ts:  # still the latest bar: its decisions stand
                self._act_book(sym, ds, 0 if only is None else 1)

        self._try(("act", BOOK, sym, only is None), go, f"deciding the book of {sym}", bar_time=ds[0][1].bar_time)

    def _act_book(self, sym: str, ds: list[tuple[Sleeve, Decision]], seq: int = 0) -> None:
        bar_time = ds[0][1].bar_time
        t = bar_time.to_pydatetime()
        minute = t.replace(second=0, microsecond=0)  # an order id's stamp: the key of the plans stored
        planned = (sym, minute, seq) in self._plans
        net_cid = client_order_id(BOOK, sym, t, "net", seq) if planned else None  # made when needed (~25 µs)
        ctx = self._context(bar_time)
        pend: dict[str, float] = {}  # a second plan of the bar: what the sleeves hold once the first one fills
        if seq and (sym, minute, 0) in self._plans:
            for r in state_book.plan(self.store, client_order_id(BOOK, sym, t, "net", 0)) or ():
                pend[r.strategy] = pend.get(r.strategy, 0.0) + r.remaining
        held = {sl.strategy: self.store.position(sl.strategy, sym).qty + pend.get(sl.strategy, 0.0)
                for sl in self._netted[sym]}
        line = {"event": "book", "symbol": sym, "bar_time": bar_time, "held": held, "actions": []}
        stored = state_book.plan(self.store, net_cid) if planned else None
        if stored is not None:  # decided before a restart: that plan stands (sent again, after its cancels, if never sent)
            intent = self.store.intent(net_cid)
            line["actions"].append({"skip": "this bar's book was decided before a restart: its plan stands"})
            if intent is not None:
                net = sum(r.qty for r in stored)
                self._resend(intent[0], line, self._book_cancels(sym, {r.strategy for r in stored}, net, held, ctx))
            self._write(line)
            return
        rows, lines, holds = [], [], []
        for sl, d in ds:
            entry = {"event": "decision", **vars(d),
                     "held_qty": held[sl.strategy], "actions": []}
            change = self._book_change(sl, d, held, ctx, entry)
            if change is None:
                holds.append((sl, d))
                continue
            if change and seq and change * held[sl.strategy] != 0:
                change = 0.0  # a second plan only enters: the first one's exits stand
            if change:  # an entry keeps its exit rules with the plan: the stop a restart places
                net_cid = net_cid or client_order_id(BOOK, sym, t, "net", seq)
                opening = not held[sl.strategy] and d.rules is not None
                rows.append((sl.strategy, change, json.dumps(asdict(d.rules)) if opening else None))
                entry["actions"].append({"book": net_cid, "change": change})
            lines.append(entry)
        net = sum(q for _, q, _ in rows)
        adds = bool(rows) and _adds(net, sum(held.values()))
        for entry in lines:
            self._write(entry)
        if rows:
            self._send_book(sym, net_cid, rows, net, held, bar_time, line)
        for sl, d in holds:  # stop moves: not while a net order buys against the resting stops
            if d.target == 0 and d.position == 0 and not held[sl.strategy]:  # flat, staying flat: nothing to do
                self._write({"event": "decision", **vars(d),
                             "held_qty": 0.0, "actions": []})
            elif adds:
                self._write({"event": "decision", **vars(d),
                             "actions": [{"skip": f"its stop is placed again when {net_cid} fills"}]})
            else:
                self._act(sl, d)
        if line["actions"] or rows:  # the sleeves' own decision lines say the rest
            self._write(line)

    def _book_change(self, sl: Sleeve, d: Decision, held: dict, ctx, entry: dict) -> float | None:
        """The sleeve's signed change of position for the next open (0: nothing, logged why; None: a
        hold or a case ``Runner._act`` handles: stop moves, skips)."""
        have, sym = held[sl.strategy], sl.symbol
        mine = [o for o in self._orders_on(ctx, sym) if self._owner(o.client_order_id) == (sl.strategy, sym)]
        if have and self.day is not None and self.day.halted:
            entry["actions"].append({"skip": "the account is halted: its flatten order closes the position"})
            return 0.0
        if d.target == 0 and have and d.position == 0 and any(o.type == "stop" for o in mine):
            entry["actions"].append({"skip": "the stop filled inside the bar; waiting for its fill report"})
            return 0.0
        if d.target == 0 and have:
            return -have
        if not (d.target and not have and d.position == 0):
            return None
        if sym in self._gapped:
            entry["actions"].append({"skip": "no entry on the first bar after a data gap (see the data_gap alert)"})
            return 0.0
        against = sorted(s for s, q in held.items() if q * d.target < 0)
        if against:
            entry["actions"].append({"rule": "opposite_sleeves", "skip": f"{', '.join(against)} hold {sym} the other "
                                     "way: no sleeve enters against another (one net position, no flip in one order)"})
            return 0.0
        stop_frac = d.rules.stop_loss or d.rules.trailing_stop or self.config.limits.default_stop_pct or 0.02
        qty = size(ctx.account.equity, d.close, d.close * stop_frac, self.config.limits,
                   drawdown_factor(ctx.account.equity, ctx.peak_equity, self.config.limits))
        if qty < 1:
            entry["actions"].append({"skip": f"entry sized to {qty:g} shares"})
            return 0.0
        intent = OrderIntent(client_order_id(sl.strategy, sym, d.bar_time.to_pydatetime(), "entry"), sym,
                             "buy" if d.target > 0 else "sell", qty, strategy=sl.strategy, reason=d.reason)
        # the sleeve's own entry, checked as one: the resting stops it will trade against are cancelled first
        view = replace(ctx, open_orders=tuple(o for o in ctx.open_orders if not (o.symbol == sym and o.type == "stop")))
        verdict = self.risk.check(Proposal(intent, d.close, stop_frac), view)
        entry["actions"].append({"order": intent.client_order_id, "symbol": sym, "side": intent.side, "qty": qty,
                                 "allowed": verdict.allowed, "rule": verdict.rule, "risk": verdict.message,
                                 "sent": "in the book's net order" if verdict.allowed else None})
        return d.target * verdict.qty if verdict.allowed else 0.0

    def _book_cancels(self, sym: str, movers: set[str], net: float, held: dict, ctx) -> list:
        """The open orders of ``sym`` that must go before its net order: the stops of the sleeves whose
        position changes and, when the order adds to the position (buying against resting sells), all."""
        adds = _adds(net, sum(held.values()))
        return [o for o in self._orders_on(ctx, sym) if not o.is_terminal
                and (adds or (self._owner(o.client_order_id) or ("",))[0] in movers)]

    def _send_book(self, sym: str, net_cid: str, rows: list, net: float, held: dict, bar_time: pd.Timestamp,
                   line: dict) -> None:
        """Cancel what must go first, then send the net order with its plan (stored with its intent,
        one transaction); a zero sum sends nothing and stores the plan to cross at the next open."""
        ctx = self._ctx if self._ctx is not None else self._context(bar_time)
        self._cancel_all(self._book_cancels(sym, {s for s, _, _ in rows}, net, held, ctx), line)
        line["plan"] = {s: q for s, q, _ in rows}
        p = parse_client_order_id(net_cid)
        self._plans.add((sym, p.bar_time, p.seq))
        if abs(net) < _EPS:
            state_book.record_plan(self.store, net_cid, sym, rows, crossed=True)
            self._crossing.add(sym)
            line["actions"].append({"cross": net_cid, "at": "the next bar's open"})
            return
        reason = "net of " + ", ".join(f"{s} {q:+g}" for s, q, _ in rows)
        intent = OrderIntent(net_cid, sym, "buy" if net > 0 else "sell", abs(net), strategy=BOOK, reason=reason)
        d = Decision(BOOK, sym, bar_time, ctx_close(self, sym), "", 0, 0, None, None, None, None, reason)
        if not self._send(intent, d, self._ctx or ctx, line, plan=tuple(rows)):
            self._reprotect(sym, bar_time.to_pydatetime(), line, 0)  # refused: every sleeve keeps its stop

    # --- fills ------------------------------------------------------------------------------------
    def _book_fill(self, fill: Fill) -> bool:
        """A fill of a netted order, allocated by its plan; False when ``fill`` is not one."""
        parsed = parse_client_order_id(fill.client_order_id)
        if parsed is None or not (parsed.intent == "net" and parsed.strategy == BOOK or parsed.intent == "flatten"
                                  and fill.symbol in self._netted):
            return False  # a netted symbol's own net order, or the HALT's one flatten order for its strategies
        alloc = state_book.record_book_fill(self.store, fill)
        if alloc is None:
            return False
        if alloc:
            self.fills_seen += 1
            self._ctx = None
            line = {"event": "fill", "order": fill.client_order_id, "side": fill.side, "qty": fill.qty,
                    "price": fill.price, "at": fill.timestamp.isoformat(), "allocated": alloc, "actions": []}
            n = state_book.broker_fills(self.store, fill.client_order_id)
            self._try(("protect", fill.client_order_id), lambda: self._reprotect(fill.symbol, parsed.bar_time, line, n),
                      f"placing the stops of {fill.symbol}'s strategies")
            self._write(line)
            if self.day is not None:
                self._try(("halts",), self._context, "checking the loss halts")
        return True

    def _cross_pending(self, sym: str, price: float, ts_us: int) -> None:
        """Zero-sum plans of ``sym`` cross at this bar's open (the price their backtests fill at)."""
        self._crossing.discard(sym)
        for cid in state_book.pending_crosses(self.store, sym):
            at = pd.Timestamp(ts_us, unit="us", tz="UTC").to_pydatetime()
            alloc = state_book.cross(self.store, cid, price, at)
            self._ctx = None
            line = {"event": "cross", "order": cid, "price": price, "allocated": alloc, "actions": []}
            self._try(("protect", cid), lambda c=cid, x=line: self._reprotect(sym, parse_client_order_id(c).bar_time, x, 0),
                      f"placing the stops of {sym}'s strategies")
            self._write(line)

    def _reprotect(self, sym: str, bar_time: datetime, line: dict, n: int) -> None:
        """Every holding sleeve of ``sym`` gets a stop covering exactly its position, at its level:
        the last decision's (a hold), else its entry's (``stop_price`` of its average price)."""
        ctx = self._context()
        for sl in self._netted.get(sym, ()):
            s = sl.strategy
            pos = self.store.position(s, sym)
            stops = [o for o in self._orders_on(ctx, sym) if o.type == "stop" and self._owner(o.client_order_id) == (s, sym)]
            if not pos.qty:
                self._cancel_all(stops, line)
                continue
            if len(stops) == 1 and abs(stops[0].qty - abs(pos.qty)) < _EPS:
                continue
            side = "sell" if pos.qty > 0 else "buy"
            working = [o.client_order_id for o in self._orders_on(ctx, sym) if o.side != side
                       and not o.is_terminal and not _done(self.store, o.client_order_id)]
            if working:  # the net order still works (a partial fill): a stop now would face it (wash trade)
                line["actions"].append({"skip": f"{s}: its stop waits for {', '.join(working)} (placed at its last "
                                        "fill, or at the next bar close)"})
                continue
            level, rules = self._book_level(s, sym, pos)
            if level is None:
                line["actions"].append({"skip": f"{s}: its stop level is decided at the next bar close"})
                continue
            self._cancel_all(stops, line)
            cid = client_order_id(s, sym, bar_time, "stop", 2 + n)
            intent = OrderIntent(cid, sym, side, abs(pos.qty), type="stop",
                                 stop_price=level, time_in_force="gtc", strategy=s, reason="protective stop (netted)")
            direction = 1 if pos.qty > 0 else -1
            d = Decision(s, sym, pd.Timestamp(bar_time), pos.avg_price, "", direction, direction, pos.avg_price,
                         level, None, rules, "stop of a netted sleeve")
            self._send(intent, d, self._ctx or ctx, line)

    def _book_level(self, strategy: str, sym: str, pos) -> tuple[float | None, ExitRules | None]:
        last = self._book_last.get((strategy, sym))
        if last is not None and last.stop is not None and last.position * pos.qty > 0:
            return last.stop, last.rules
        rules = last.rules if last is not None else None
        if rules is None and (stored := state_book.entry_rules(self.store, strategy, sym)) is not None:
            rules = ExitRules(**json.loads(stored))  # a restart: the rules its entry was planned with
        if rules is None:
            return None, None
        direction = 1 if pos.qty > 0 else -1
        return stop_price(direction, pos.avg_price, pos.avg_price, rules), rules


def _done(store, cid: str) -> bool:
    """A netted order whose plan has filled in full (the broker's snapshot or the ack may lag its fill)."""
    rows = state_book.plan(store, cid)
    return rows is not None and all(abs(r.remaining) < _EPS for r in rows)


def _adds(net: float, pos: float) -> bool:
    """The net order adds to the position (or opens it): it trades against the resting stops' side."""
    return abs(net) > _EPS and (abs(pos) < _EPS or net * pos > 0)


def ctx_close(runner, sym: str) -> float:
    """The symbol's last close (the net order's reference price)."""
    return float(runner._hist[sym].arrays["close"][-1])

