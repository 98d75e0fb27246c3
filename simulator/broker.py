"""The simulated Alpaca account: Alpaca's order-entry rules and views on top of the matching engine.

Pure Python, no HTTP (``trading.py`` puts it on the wire); ``engine.py`` runs the orders against
the clock's bars. Construct it on a clock and it listens to that clock::

    clock = ReplayClock({"AAPL": frame}, "1Day")
    broker = SimBroker(clock, BrokerConfig(cash=100_000, slippage=0.0005))
    order = broker.submit({"symbol": "AAPL", "qty": 10, "side": "buy", "type": "market",
                           "time_in_force": "day", "client_order_id": "a-1"})
    clock.step()  # fills at the next bar's open (plus slippage)

Alpaca behaviours reproduced because clients trip on them (HTTP status, code, message):

* a reused ``client_order_id`` -> 422 40010001 "client_order_id must be unique", even after the
  first order was cancelled or filled. Idempotence: alpaca-py retries POST /v2/orders on 429/504
  with the same body, so a 504 *after* acceptance turns the retry into a 422 duplicate while the
  order exists; the client must then read it with GET /v2/orders:by_client_order_id. Without a
  client_order_id the server makes one per request, so such a retry places a *second* order.
  ``accepted`` counts orders per client_order_id (never above 1), ``duplicates`` the refusals;
* an open order on the other side of the same symbol -> 422 42210000 "potential wash trade
  detected. use complex orders" (stricter than Alpaca, which also compares prices);
* an order that opens or adds beyond the buying power -> 403 40310000 "insufficient buying power";
  an order that reduces a position may not exceed what open exits leave -> 403 "insufficient qty
  available for order (requested: q, available: a)", so one order never flips a position;
* a short on a non-shortable asset (or with shorting disabled) -> 422 "asset X cannot be sold short";
* a price with more than 2 decimals from $1 (4 below) -> 422 "... sub-penny increment ...";
* bracket / OCO exits on the wrong side of the base price -> 422;
* unknown symbol -> 422 "asset not found: X"; qty <= 0 -> 422 "qty must be > 0"; fractional qty,
  notional, trailing stops, ioc/fok/opg/cls, extended hours -> 422 naming what is unsupported;
  any other malformed field (a wrong type, an unknown enum, NaN, a qty or price past the bounds in
  ``orders.py``) -> 422 naming the field, and nothing changes (tests/chaos/test_fuzz_simulator.py).
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable

from .clock import ReplayClock
from .engine import Engine
from .hub import Hub
from .ledger import Asset, BrokerConfig
from .orders import (TIFS, Order, OrderError, OrderSpec, asset_id, num, parse_client_order_id, parse_order,
                     parse_percentage, parse_price, parse_qty, unprocessable)

NOT_FOUND = 40410000


class SimBroker(Engine):
    """One simulated account trading the clock's symbols; see the module docstring."""

    def __init__(self, clock: ReplayClock, config: BrokerConfig | None = None,
                 assets: Iterable[Asset] | None = None, hub: Hub | None = None) -> None:
        super().__init__(clock, config, hub)
        self.assets = {a.symbol: a for a in assets} if assets else {s: Asset(s) for s in clock.symbols}
        self.accepted: Counter[str] = Counter()  # orders accepted per client_order_id (always <= 1)
        self.duplicates: Counter[str] = Counter()  # 422 duplicate refusals per client_order_id
        self._seq = 0

    # ------------------------------------------------------------------------------ placing
    def submit(self, body: dict) -> Order:
        """POST /v2/orders: check the body and the account, place the order (and its legs)."""
        with self.lock:
            spec = parse_order(body)
            if spec.client_order_id is not None:
                self._unique(spec.client_order_id)
            asset = self._asset(spec.symbol)
            if any(o.symbol == spec.symbol and o.side != spec.side for o in self._live.values()):
                raise unprocessable("potential wash trade detected. use complex orders")
            opening = self._check_exposure(spec, asset)
            self._check_exits(spec)
            return self._create(spec, opening)

    def _unique(self, cid: str) -> None:
        if cid in self._by_cid:
            self.duplicates[cid] += 1
            raise OrderError(422, 40010001, "client_order_id must be unique")

    def _asset(self, symbol: str) -> Asset:
        asset = self.assets.get(symbol)
        if asset is None:
            raise OrderError(422, 40010001, f"asset not found: {symbol}")
        if not asset.tradable:
            raise unprocessable(f"asset {symbol} is not tradable")
        return asset

    def _check_exposure(self, spec: OrderSpec, asset: Asset, ignore: Order | None = None) -> bool:
        """Refuse what Alpaca refuses; True when the order opens or adds (needs buying power)."""
        pos = self.ledger.qty(spec.symbol)
        buy = spec.side == "buy"
        if pos != 0 and (pos > 0) != buy:  # reduces the position
            skip = {o.id for o in self._family(ignore)} if ignore else set()
            held = self._held(spec.symbol, spec.side, skip)
            available = max(0, abs(pos) - held)
            if spec.qty > available:
                related = [o.id for o in self._live.values()
                           if o.symbol == spec.symbol and o.side == spec.side]
                message = (f"insufficient qty available for order (requested: {spec.qty}, "
                           f"available: {available})")
                raise OrderError(403, 40310000, message, available=num(available), existing_qty=num(abs(pos)),
                                 held_for_orders=num(held), related_orders=related, symbol=spec.symbol)
            return False
        if not buy and pos == 0 and not (self.config.shorting_enabled and asset.shortable):
            raise unprocessable(f"asset {spec.symbol} cannot be sold short")
        cost = spec.qty * self._ref(spec)
        bp = self.ledger.buying_power(self._holds(ignore.id if ignore else None))
        if cost > bp + 1e-9:
            raise OrderError(403, 40310000, "insufficient buying power", buying_power=num(bp),
                             cost_basis=num(cost), symbol=spec.symbol)
        return True

    def _check_exits(self, spec: OrderSpec) -> None:
        """Bracket/OCO/OTO exits must sit a cent or more beyond the base price, on the right side."""
        if not spec.order_class:
            return
        limit_entry = spec.type in ("limit", "stop_limit") and spec.order_class != "oco"
        base = spec.limit_price if limit_entry else self.price(spec.symbol)
        protects_long = (spec.side == "buy") != (spec.order_class == "oco")
        for name, price, above in (("take_profit.limit_price", spec.take_profit, protects_long),
                                   ("stop_loss.stop_price", spec.stop_loss, not protects_long)):
            if price is None:
                continue
            if above and price < base + 0.01 - 1e-9:
                raise unprocessable(f"{name} must be >= {base + 0.01:.2f}")
            if not above and price > base - 0.01 + 1e-9:
                raise unprocessable(f"{name} must be <= {base - 0.01:.2f}")

    def _new_order(self, spec: OrderSpec, **kw) -> Order:
        now = self.clock.now_us
        self._seq += 1
        fields = dict(symbol=spec.symbol, side=spec.side, type=spec.type, qty=spec.qty,
                      time_in_force=spec.time_in_force, client_order_id=str(uuid.uuid4()),
                      submitted_us=now, expires_us=self.clock.expiry_us(spec.time_in_force, now),
                      seq=self._seq, limit_price=spec.limit_price, stop_price=spec.stop_price,
                      order_class=spec.order_class, status="new" if self.clock.is_open() else "accepted",
                      position_intent=spec.position_intent)
        fields.update(kw)
        o = Order(**fields)
        self._orders[o.id] = o
        self._by_cid[o.client_order_id] = o
        self._live[o.id] = o
        return o

    def _create(self, spec: OrderSpec, opening: bool) -> Order:
        cid = spec.client_order_id or str(uuid.uuid4())
        parent = self._new_order(spec, client_order_id=cid, opening=opening)
        self.accepted[cid] += 1
        exit_side = "sell" if spec.side == "buy" else "buy"
        if spec.order_class == "oco":  # the parent is the take-profit limit, the leg the stop-loss
            parent.opening = False
            self._leg(parent, spec, spec.side, status=parent.status)
        elif spec.order_class in ("bracket", "oto"):
            if spec.take_profit is not None:
                self._leg(parent, spec, exit_side, "limit", limit=spec.take_profit)
            if spec.stop_loss is not None:
                self._leg(parent, spec, exit_side)
        if spec.order_class in ("oco", "bracket") and parent.legs:
            members = ([parent] if spec.order_class == "oco" else []) + parent.legs
            self._groups[parent.id] = members
            for o in members:
                o.group = parent.id
        self._emit(parent.status, parent, parent.submitted_us)
        for leg in parent.legs:
            if leg.status != "held":
                self._emit(leg.status, leg, leg.submitted_us)
        return parent

    def _leg(self, parent: Order, spec: OrderSpec, side: str, kind: str | None = None,
             limit: float | None = None, status: str = "held") -> Order:
        if kind is None:  # the stop-loss leg
            kind = "stop_limit" if spec.stop_loss_limit is not None else "stop"
            limit = spec.stop_loss_limit
        stop = spec.stop_loss if kind != "limit" else None
        leg_spec = OrderSpec(spec.symbol, side, kind, spec.qty, spec.time_in_force, limit, stop,
                             spec.order_class, None, None, None, None, None)
        leg = self._new_order(leg_spec, opening=False, parent=parent, status=status)
        parent.legs.append(leg)
        return leg

    # ------------------------------------------------------------------------------ changing
    def get(self, order_id: str) -> Order:
        with self.lock:
            o = self._orders.get(order_id)
            if o is None:
                raise OrderError(404, NOT_FOUND, f"order not found for {order_id}")
            return o

    def by_client_order_id(self, cid: str) -> Order:
        """The order placed with ``cid``: how a client resolves a submit whose answer it lost."""
        with self.lock:
            o = self._by_cid.get(cid)
            if o is None:
                raise OrderError(404, NOT_FOUND, f"order not found for {cid}")
            return o

    def cancel(self, order_id: str) -> Order:
        """DELETE /v2/orders/{id}: cancelled at once (Alpaca passes through pending_cancel)."""
        with self.lock:
            o = self.get(order_id)
            if not o.is_open:
                raise unprocessable("order is not cancelable")
            self._close(o, "canceled", self.clock.now_us)
            return o

    def cancel_all(self) -> list[Order]:
        """DELETE /v2/orders: every open order cancelled (held legs with their entry); returns them."""
        with self.lock:
            before = sorted(self._live.values(), key=lambda o: o.seq)
            for o in before:
                if o.is_open:
                    self._close(o, "canceled", self.clock.now_us)
            return [o for o in before if o.status == "canceled"]

    def replace(self, order_id: str, body: dict) -> Order:
        """PATCH /v2/orders/{id}: a new order takes the old one's place (and legs); the old is ``replaced``.

        Only orders with nothing filled can be replaced here (Alpaca also replaces partly filled ones).
        """
        with self.lock:
            old = self.get(order_id)
            if old.status not in ("new", "accepted", "held") or old.filled_qty:
                raise unprocessable("order is not replaceable")
            tif = body.get("time_in_force") or old.time_in_force
            if tif not in TIFS:
                raise unprocessable(f"time_in_force {tif} is not supported by the simulator (day, gtc)",
                                    40010001)
            qty = parse_qty(body["qty"]) if body.get("qty") is not None else old.qty
            limit = parse_price(body.get("limit_price"), "limit_price") or old.limit_price
            stop = parse_price(body.get("stop_price"), "stop_price") or old.stop_price
            cid = parse_client_order_id(body.get("client_order_id")) or str(uuid.uuid4())
            self._unique(cid)
            spec = OrderSpec(old.symbol, old.side, old.type, qty, tif, limit, stop, old.order_class, cid,
                             None, None, None, old.position_intent)
            if old.status != "held":
                self._check_exposure(spec, self.assets[old.symbol], ignore=old)
            now = self.clock.now_us
            new = self._new_order(spec, client_order_id=cid, opening=old.opening, parent=old.parent,
                                  group=old.group, legs=old.legs, replaces=old.id, triggered=old.triggered,
                                  status=old.status if old.status in ("accepted", "held") else "new")
            for leg in new.legs:
                leg.parent = new
            if old.parent is not None:
                old.parent.legs[old.parent.legs.index(old)] = new
            if old.group:
                members = self._groups[old.group]
                members[members.index(old)] = new
            old.legs, old.replaced_by, old.replaced_us = [], new.id, now
            self._set(old, "replaced", now)
            self._emit("replaced", old, now)
            if new.status != "held":
                self._emit(new.status, new, now)
            return new

    # ------------------------------------------------------------------------------ positions
    def resolve_symbol(self, symbol_or_id: str) -> str:
        """The symbol named by a symbol or an asset id (as Alpaca accepts either in paths)."""
        for sym in self.assets:
            if symbol_or_id in (sym, asset_id(sym)):
                return sym
        return symbol_or_id.upper()

    def close_position(self, symbol_or_id: str, qty: str | None = None,
                       percentage: str | None = None) -> Order:
        """DELETE /v2/positions/{symbol}: a market order for all (or ``qty``/``percentage``) of it.

        It goes through the same checks as any order, so open exits holding the shares make it a
        403 "insufficient qty available", as on Alpaca.
        """
        with self.lock:
            sym = self.resolve_symbol(symbol_or_id)
            pos = self.ledger.qty(sym)
            if pos == 0:
                raise OrderError(404, NOT_FOUND, "position does not exist")
            n = abs(pos)
            if qty is not None:
                n = parse_qty(qty)
            elif percentage is not None:
                pct = parse_percentage(percentage)
                n = math.floor(abs(pos) * pct / 100)  # whole shares only
                if n == 0:
                    raise unprocessable("qty must be > 0")
            side = "sell" if pos > 0 else "buy"
            return self.submit({"symbol": sym, "qty": n, "side": side, "type": "market",
                                "time_in_force": "day"})

    def close_all(self, cancel_orders: bool = False) -> list[dict]:
        """DELETE /v2/positions: one ``{"symbol", "status", "body"}`` per position (Alpaca's 207 body)."""
        with self.lock:
            if cancel_orders:
                self.cancel_all()
            out = []
            for sym in sorted(self.ledger.positions):
                try:
                    out.append({"symbol": sym, "status": 200, "body": self.close_position(sym).to_json()})
                except OrderError as err:
                    out.append({"symbol": sym, "status": err.status, "body": err.body()})
            return out

    # ------------------------------------------------------------------------------ views
    def account_json(self) -> dict:
        with self.lock:
            return self.ledger.account_json(self._holds(), self.clock.now_us, self.config.shorting_enabled)

    def positions_json(self) -> list[dict]:
        with self.lock:
            return [self._position_json(sym) for sym in sorted(self.ledger.positions)]

    def position_json(self, symbol_or_id: str) -> dict:
        with self.lock:
            sym = self.resolve_symbol(symbol_or_id)
            if sym not in self.ledger.positions:
                raise OrderError(404, NOT_FOUND, "position does not exist")
            return self._position_json(sym)

    def _position_json(self, sym: str) -> dict:
        p = self.ledger.positions[sym]
        held = self._held(sym, "sell" if p.qty > 0 else "buy")
        exchange = self.assets[sym].exchange if sym in self.assets else "NASDAQ"
        return self.ledger.position_json(p, held, exchange)

    def list_orders(self, status: str = "open", limit: int = 50, after_us: int | None = None,
                    until_us: int | None = None, direction: str = "desc", nested: bool = False,
                    symbols: set[str] | None = None, side: str | None = None) -> list[dict]:
        """GET /v2/orders: by submission time; ``nested`` rolls legs up under their entry."""
        def wanted(o: Order) -> bool:
            family = [o, *o.legs] if nested else [o]
            return status == "all" or any(m.is_open == (status == "open") for m in family)

        with self.lock:
            rows = [o for o in self._orders.values()
                    if (not nested or o.parent is None) and wanted(o)
                    and (symbols is None or o.symbol in symbols) and (side is None or o.side == side)
                    and (after_us is None or o.submitted_us > after_us)
                    and (until_us is None or o.submitted_us < until_us)]
            rows.sort(key=lambda o: (o.submitted_us, o.seq), reverse=direction == "desc")
            return [o.to_json(nested=nested) for o in rows[:limit]]
