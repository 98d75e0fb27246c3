"""The runner's multi-leg trades (pairs, rotation): legs whose target weight changed trade to it.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size; the weights come from
``sleeves.decide_basket`` (research/baskets.py), the same functions parity backtests with.
"""

from __future__ import annotations

import numpy as np

from .ids import client_order_id
from .ports import OrderIntent
from .risk import drawdown_factor
from .sleeves import BasketDecision, Decision, Sleeve


class BasketDesk:
    """Acting on a basket decision (mixed into Runner)."""

    def _act_basket(self, sleeve: Sleeve, d: BasketDecision) -> None:
        """Legs whose weight changed trade to it: exits first, then entries sized from the position cap.

        Entry sizes: the leg with the largest weight gets ``max_position_pct`` of equity (times the
        drawdown factor), the others in proportion, all of them scaled down to fit the strategy's
        capital budget (``RiskLimits.budget_of``) beside its held legs, floored to whole shares; a pair enters only
        when both legs get at least one share. A leg whose weight is on but not held (an entry
        refused or missed) is not entered late.
        """
        entry = {"event": "decision", **vars(d), "actions": []}
        ctx = self._context(d.bar_time)
        t = d.bar_time.to_pydatetime()
        held = {leg: self.store.position(sleeve.strategy, leg).qty for leg in sleeve.traded}
        enters = [leg for leg in sleeve.traded if d.previous[leg] == 0 and d.target[leg] != 0 and held[leg] == 0]
        if enters and self._gapped & set(sleeve.data):
            entry["actions"].append({"skip": f"no entry after a data gap in {', '.join(sorted(self._gapped & set(sleeve.data)))}"})
            enters = []
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
                if o.symbol == leg and self._owner(o.client_order_id) == (sleeve.strategy, leg):
                    self._cancel(o, entry)
            if qty >= 1:
                self._send(OrderIntent(client_order_id(sleeve.strategy, leg, t, "exit"), leg, side, qty,
                                       strategy=sleeve.strategy, reason=d.reason), _leg(d, leg), ctx, entry)
        if enters:
            top = max(abs(v) for v in d.target.values())
            limits, equity = self.config.limits, ctx.account.equity
            cap = equity * limits.max_position_pct * drawdown_factor(equity, ctx.peak_equity, limits)
            # the strategy's capital budget holds the whole basket: the entering legs share what its held
            # legs leave, in proportion to their weights (one leg trimmed alone would break the hedge)
            room = limits.budget_of(sleeve.strategy) * equity - sum(abs(held[x]) * d.closes[x] for x in sleeve.traded)
            cap = max(0.0, min(cap, room * top / sum(abs(d.target[x]) for x in enters)))
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
            if sleeve.strategy == "pairs" and False in acks:  # never one leg of a pair alone
                for o in self._pair_entries(t):
                    self._cancel(o, entry)
                entry["actions"].append({"skip": "pair entry abandoned: a leg was refused"})
        late = [leg for leg in sleeve.traded if d.target[leg] != 0 and d.target[leg] == d.previous[leg] and held[leg] == 0]
        if late:
            entry["actions"].append({"skip": f"weight on but not held ({', '.join(late)}): no late entry"})
        self._write(entry)


def _leg(d: BasketDecision, leg: str) -> Decision:
    """One leg of a basket decision in the shape ``_send`` (risk check, decision log) takes."""
    w = d.target[leg]
    return Decision(d.strategy, leg, d.bar_time, d.closes[leg], "all", int(np.sign(w)), int(np.sign(d.previous[leg])),
                    None, None, None, None, d.reason)
