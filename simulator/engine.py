"""The order state machine and matching engine under the simulated broker (no HTTP, no entry rules).

The engine listens to a :class:`ReplayClock`. ``on_bars`` routes orders queued while the market
was closed (``accepted`` -> ``new`` at the symbol's first bar of the session, after a buying-power
re-check that can ``reject`` them) and matches working orders against each closed bar:

1. the open: market orders, triggered stops and orders the bar opens through fill at the open; an
   entry that fills wakes its held bracket legs, which may fill at that same open;
2. inside the bar: stops before limits (``matching.py``), at their levels. Legs woken inside the
   bar start working from the next bar (the path inside the bar is unknown). The clock calls
   ``on_open`` and ``on_bars`` as two phases with its lock released in between, so an order placed
   on an open fill (a protective stop after an entry, as the live bridge does) works inside that
   same bar, exactly like the backtest's stop, which is live from the entry bar on.

With ``max_volume_fraction`` the fills of one bar share at most that fraction of its volume; the
rest stays open (``partial_fill`` events) and keeps working. ``on_session_close`` expires orders
whose time is up (day orders at their session's close) and records the equity that is the
account's ``last_equity`` from the next New York day on (as Alpaca: yesterday's close until the
date changes, not today's from its close).

Every order event goes to the hub as Alpaca's ``trade_updates`` data::

    {"event": "fill", "execution_id": uuid, "order": {...Order JSON...}, "timestamp": RFC 3339,
     "price": "101.5", "qty": "10", "position_qty": "10"}   # the last three only on fills

Events: accepted (placed while closed), new, partial_fill, fill, canceled, expired, replaced,
rejected (a queued order refused at routing).
"""

from __future__ import annotations

import copy
import math
import uuid

from .clock import Bar, ReplayClock
from .hub import Hub
from .ledger import BrokerConfig, SimFill, Ledger
from .matching import at_open, inside, priority, slipped
from .orders import WORKING, Order, OrderSpec, iso, num


class Engine:
    """Orders, their transitions and their fills against the clock's bars; see the module docstring."""

    def __init__(self, clock: ReplayClock, config: BrokerConfig | None = None,
                 hub: Hub | None = None) -> None:
        self.clock = clock
        self.config = config or BrokerConfig()
        self.hub = hub or clock.hub
        self.lock = clock.lock  # one lock for stepping and trading: no order slips into a step
        self.ledger = Ledger(self.config)
        self._orders: dict[str, Order] = {}
        self._by_cid: dict[str, Order] = {}
        self._live: dict[str, Order] = {}  # open orders by id
        self._groups: dict[str, list[Order]] = {}  # one-cancels-other groups
        self._events: list[dict] = []
        self._room: dict[str, list[float]] = {}  # volume left to fill in the bar being matched
        self._opened: dict[str, int] = {}  # the bar whose open phase ran, per symbol
        clock.listeners.append(self)

    # ------------------------------------------------------------------------------ evidence
    def orders(self) -> list[Order]:
        """Snapshots of every order (legs and replaced ones included), in submission order."""
        with self.lock:
            return [copy.copy(o) for o in self._orders.values()]

    def fills(self) -> list[SimFill]:
        with self.lock:
            return list(self.ledger.fills)

    def events(self) -> list[dict]:
        """Every trade_update published, in order."""
        with self.lock:
            return list(self._events)

    # ------------------------------------------------------------------------------ holds
    def _held(self, symbol: str, side: str, ignore: set[str] = frozenset()) -> int:
        """Shares that working exits on ``side`` hold (a one-cancels-other group counts once)."""
        by_group: dict[str, int] = {}
        for o in self._live.values():
            if o.symbol == symbol and o.side == side and not o.opening and o.status != "held" \
                    and o.id not in ignore:
                key = o.group or o.id
                by_group[key] = max(by_group.get(key, 0), o.remaining)
        return sum(by_group.values())

    def _holds(self, ignore: str | None = None) -> float:
        """What open opening orders hold of the buying power."""
        return sum(o.remaining * self._ref(o) for o in self._live.values() if o.opening and o.id != ignore)

    def price(self, symbol: str) -> float:
        """The last close the account knows (the clock's first open before any): what a market
        order is checked against. Never the bar being matched, which is not yet known to traders."""
        mark = self.ledger.mark.get(symbol)
        return mark if mark is not None else self.clock.first_open(symbol)

    def _ref(self, o: Order | OrderSpec) -> float:
        if o.type in ("limit", "stop_limit"):
            return o.limit_price
        return o.stop_price if o.type == "stop" else self.price(o.symbol)

    def _family(self, o: Order) -> list[Order]:
        return self._groups.get(o.group, [o]) if o.group else [o]

    # ------------------------------------------------------------------------------ transitions
    def _set(self, o: Order, status: str, t: int) -> None:
        o.status, o.updated_us = status, max(o.updated_us, t)
        if o.is_open:
            self._live[o.id] = o
        else:
            self._live.pop(o.id, None)

    def _close(self, o: Order, status: str, t: int) -> None:
        """Cancel or expire ``o``; legs still held either follow it or protect its partial fill."""
        if status == "canceled":
            o.canceled_us = t
        else:
            o.expired_us = t
        self._set(o, status, t)
        self._emit(status, o, t)
        held = [leg for leg in o.legs if leg.status == "held"]
        if held and o.filled_qty:
            for leg in held:
                leg.qty = o.filled_qty
                self._activate(leg, t)
        else:
            for leg in held:
                self._close(leg, "canceled", t)
        if o.order_class == "oco":  # an OCO's stop leg works beside it and goes with it
            for leg in o.legs:
                if leg.is_open:
                    self._close(leg, "canceled", t)

    def _activate(self, leg: Order, t: int) -> None:
        self._set(leg, "new", t)
        self._emit("new", leg, t)

    # ------------------------------------------------------------------------------ clock hooks
    def on_open(self, now_us: int, bars: dict[str, Bar]) -> None:
        """The bars' opens: route queued orders, fill what is marketable at the open."""
        with self.lock:
            for sym, bar in bars.items():
                led = self.ledger
                session = self.clock.session_index(bar.open_us)
                if session < 0:
                    continue
                opened = int(self.clock.sessions.open_us[session])
                if led.session_open.get(sym) != opened and sym in led.mark:
                    led.lastday[sym] = led.mark[sym]
                led.session_open[sym] = opened
                self._route(sym, bar)
                self._room[sym] = [math.inf if self.config.max_volume_fraction is None
                                   else math.floor(bar.volume * self.config.max_volume_fraction)]
                self._match_open(sym, bar, self._room[sym])
                self._opened[sym] = bar.ts_us

    def on_bars(self, now_us: int, bars: dict[str, Bar]) -> None:
        """The bars' closes: match working orders inside each bar (those placed after its open
        included: a stop placed on an entry's fill works for the rest of that bar), then mark."""
        with self.lock:
            for sym, bar in bars.items():
                if self._opened.get(sym) != bar.ts_us:  # a listener-less clock: open and inside at once
                    self.on_open(now_us, {sym: bar})
                if self.clock.session_index(bar.open_us) >= 0:
                    self._match_inside(sym, bar, self._room.get(sym, [math.inf]))
                self.ledger.mark[sym] = bar.close

    def on_session_close(self, close_us: int) -> None:
        """Expire orders whose time is up (day orders at their session's close)."""
        with self.lock:
            for o in sorted(self._live.values(), key=lambda o: o.seq):
                if o.is_open and o.status != "held" and o.expires_us <= close_us:
                    self._close(o, "expired", close_us)
            self.ledger.close_session(close_us)

    def _route(self, sym: str, bar: Bar) -> None:
        for o in sorted((o for o in self._live.values() if o.symbol == sym and o.status == "accepted"),
                        key=lambda o: o.seq):
            if o.opening and o.remaining * self._ref(o) > self.ledger.buying_power(self._holds(o.id)) + 1e-9:
                o.failed_us = bar.open_us
                self._set(o, "rejected", bar.open_us)
                self._emit("rejected", o, bar.open_us)
                for leg in o.legs:
                    self._close(leg, "canceled", bar.open_us)
            else:
                self._set(o, "new", bar.open_us)
                self._emit("new", o, bar.open_us)

    def _working(self, sym: str) -> list[Order]:
        return sorted((o for o in self._live.values() if o.symbol == sym and o.status in WORKING),
                      key=lambda o: (priority(o.type, o.triggered), o.seq))

    def _match_open(self, sym: str, bar: Bar, room: list[float]) -> None:
        seen: set[str] = set()
        while True:  # the open: entries fill, their legs wake up and may fill at the open too
            todo = [o for o in self._working(sym) if o.id not in seen]
            if not todo:
                break
            for o in todo:
                seen.add(o.id)
                if o.status in WORKING:
                    d = at_open(o.type, o.buy, o.limit_price, o.stop_price, o.triggered, bar.open)
                    o.triggered = d.triggered
                    if d.price is not None:
                        self._fill(o, d.price, bar.open_us, room)

    def _match_inside(self, sym: str, bar: Bar, room: list[float]) -> None:
        for o in self._working(sym):  # inside the bar: stops first; market orders wait for an open
            if o.status in WORKING:
                d = inside(o.type, o.buy, o.limit_price, o.stop_price, o.triggered, bar.high, bar.low)
                o.triggered = d.triggered
                if d.price is not None:
                    self._fill(o, d.price, bar.close_us - 1, room)  # inside the bar, not the next one's open

    def _fill(self, o: Order, raw: float, t: int, room: list[float]) -> None:
        qty = int(min(o.remaining, room[0]))
        if qty <= 0:
            return
        room[0] -= qty
        slip = self.config.slippage if o.type in ("market", "stop") or self.config.slip_limit_orders else 0.0
        px = slipped(raw, o.buy, slip)
        fee = px * qty * self.config.fee_rate
        position = self.ledger.apply(o.symbol, qty if o.buy else -qty, px, fee, t)
        fill = SimFill(str(uuid.uuid4()), o.id, o.client_order_id, o.symbol, o.side, qty, px, fee, t, position)
        self.ledger.fills.append(fill)
        o.filled_qty += qty
        o.filled_notional += qty * px
        full = o.remaining == 0
        if full:
            o.filled_us = t
        self._set(o, "filled" if full else "partially_filled", t)
        self._emit("fill" if full else "partial_fill", o, t, fill)
        for sib in self._family(o):
            if sib is not o and sib.is_open:
                if full or sib.qty - qty <= sib.filled_qty:
                    self._close(sib, "canceled", t)
                else:
                    sib.qty -= qty
        if full:
            for leg in o.legs:
                if leg.status == "held":
                    self._activate(leg, t)

    def _emit(self, event: str, o: Order, t: int, fill: SimFill | None = None) -> None:
        update = {"event": event, "execution_id": fill.execution_id if fill else str(uuid.uuid4()),
                  "order": o.to_json(), "timestamp": iso(t)}
        if fill is not None:
            update.update(price=num(fill.price), qty=num(fill.qty), position_qty=num(fill.position_qty))
        self._events.append(update)
        self.hub.publish_trade_update(update)

