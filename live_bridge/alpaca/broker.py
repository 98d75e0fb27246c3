"""``ports.Broker`` on alpaca-py's ``TradingClient``: orders, positions, the account and the clock.

**Idempotent submit.** ``client_order_id`` is unique per account forever (422 "client_order_id
must be unique", even after a cancel). alpaca-py itself re-POSTs an order answered 429/504 with
the same body, so a 504 sent *after* Alpaca accepted the order comes back to us as that 422.
Either way the order exists: we read it with ``get_order_by_client_id`` and return it. When the
answer is lost outright (a timeout, a reset connection) we look the id up; if Alpaca has no such
order we send it again, with the same id (a copy that did land meanwhile turns the resend into
the 422 above), at most ``retry_attempts`` times. After 5xx answers alpaca-py has retried already
(``client.RETRY_STATUSES``), the lookup decides and nothing is resent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from ..ports import Account, MarketClock, OrderAck, OrderIntent, Position, SpawnSpec
from .client import (MAX_ORDERS, BrokerError, broker_error, enum_str, network_error, order_ack, to_float, to_utc,
                     tune_rest_client)

log = logging.getLogger(__name__)

DUPLICATE_ID = "client_order_id must be unique"


@dataclass(frozen=True, slots=True)
class OcoAck:
    """The two orders of a protective OCO: the take-profit limit (the parent) and its stop leg."""

    take_profit: OrderAck
    stop_loss: OrderAck


def _order_request(intent: OrderIntent):  # noqa: ANN202 - one of three alpaca-py request types
    qty = int(intent.qty) if float(intent.qty).is_integer() else intent.qty  # "10", not "10.0", on the wire
    common = dict(symbol=intent.symbol, qty=qty, side=OrderSide(intent.side),
                  time_in_force=TimeInForce(intent.time_in_force), client_order_id=intent.client_order_id)
    if intent.take_profit is not None:  # a protective stop with its target: one OCO (ports.OrderIntent)
        return LimitOrderRequest(order_class=OrderClass.OCO, take_profit=TakeProfitRequest(limit_price=intent.take_profit),
                                 stop_loss=StopLossRequest(stop_price=intent.stop_price), **common)
    if intent.type == "limit":
        return LimitOrderRequest(limit_price=intent.limit_price, **common)
    if intent.type == "stop":
        return StopOrderRequest(stop_price=intent.stop_price, **common)
    return MarketOrderRequest(**common)


class AlpacaBroker:
    """``ports.Broker`` over Alpaca's trading REST API (paper, live, or the simulator via ``url_override``)."""

    def __init__(self, api_key: str, secret_key: str, *, paper: bool = True, url_override: str | None = None,
                 retry_attempts: int = 3, retry_wait: float = 3.0, timeout: float = 10.0) -> None:
        self._client = TradingClient(api_key, secret_key, paper=paper, url_override=url_override)
        tune_rest_client(self._client, retry_attempts=retry_attempts, retry_wait=retry_wait, timeout=timeout)
        self._where = url_override or ("paper" if paper else "live")
        self._spec = (type(self), (api_key, secret_key),
                      {"paper": paper, "url_override": url_override, "retry_attempts": retry_attempts,
                       "retry_wait": retry_wait, "timeout": timeout})

    def spawn_spec(self) -> SpawnSpec:
        """(class, args, kwargs) that build this broker again in another process (sender.ProcessSender).
        It holds the keys: it goes through a pipe to the child, never into a log or a command line."""
        return self._spec

    def __repr__(self) -> str:
        return f"AlpacaBroker({self._where!r})"

    def _call(self, fn, *args):  # noqa: ANN001, ANN202
        try:
            return fn(*args)
        except APIError as err:
            raise broker_error(err) from None  # `from None`: the APIError adds nothing but noise
        except requests.RequestException as err:
            raise network_error(err) from None

    # ------------------------------------------------------------------------------------ reads
    def account(self) -> Account:
        """Current account figures."""
        a = self._call(self._client.get_account)
        return Account(equity=float(a.equity), cash=float(a.cash), buying_power=float(a.buying_power),
                       last_equity=float(a.last_equity))

    def positions(self) -> dict[str, Position]:
        """Open positions by symbol; qty and market value negative for a short."""
        out = {}
        for p in self._call(self._client.get_all_positions):
            sign = -1.0 if enum_str(p.side) == "short" else 1.0
            out[p.symbol] = Position(p.symbol, sign * abs(float(p.qty)), float(p.avg_entry_price),
                                     sign * abs(to_float(p.market_value) or 0.0))
        return out

    def order_by_client_id(self, client_order_id: str) -> OrderAck | None:
        """The order sent under ``client_order_id``, or None if Alpaca has none (404)."""
        try:
            return order_ack(self._with_legs(self._call(self._client.get_order_by_client_id, client_order_id)))
        except BrokerError as err:
            if err.status == 404:
                return None
            raise

    def open_orders(self) -> list[OrderAck]:
        """Orders that can still fill, legs of OCO/bracket orders listed on their own."""
        query = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=MAX_ORDERS, nested=False)
        return [order_ack(o) for o in self._call(self._client.get_orders, query)]

    def clock(self) -> MarketClock:
        """Alpaca's market clock, in UTC (Alpaca sends New York times)."""
        c = self._call(self._client.get_clock)
        return MarketClock(to_utc(c.timestamp), bool(c.is_open), to_utc(c.next_open), to_utc(c.next_close))

    # ------------------------------------------------------------------------------------ orders
    def submit(self, intent: OrderIntent) -> OrderAck:
        """Send an order; if Alpaca already has one under this client_order_id, return that one.

        An intent with a ``take_profit`` goes as one OCO; the ack carries its stop leg (``legs``)."""
        o = self._submit(_order_request(intent), intent.client_order_id, (intent.symbol, intent.side, intent.qty))
        ack = order_ack(self._with_legs(o))
        if intent.take_profit is not None and not any(leg.type == "stop" for leg in ack.legs):
            raise BrokerError(0, None, f"OCO {intent.client_order_id} came back without its stop leg")
        return ack

    def _with_legs(self, o: Any) -> Any:
        """An OCO/bracket order with its legs (a lookup may come back flat: ask for them explicitly)."""
        if not o.legs and enum_str(o.order_class) in ("oco", "bracket", "oto"):
            return self._call(self._client.get_order_by_id, o.id, GetOrderByIdRequest(nested=True))
        return o

    def submit_oco(self, client_order_id: str, symbol: str, side: str, qty: float, stop_price: float,
                   limit_price: float, time_in_force: str = "day") -> OcoAck:
        """A protective stop + take-profit pair (one cancels the other), idempotent like ``submit``.

        ``side`` is the exit side (sell protects a long). Alpaca makes the take-profit limit the
        parent order and the stop its one leg; ``replace_stop`` moves the stop by the leg's id.
        """
        ack = self.submit(OrderIntent(client_order_id, symbol, side, qty, type="stop", stop_price=stop_price,
                                      time_in_force=time_in_force, take_profit=limit_price))
        return OcoAck(ack, next(leg for leg in ack.legs if leg.type == "stop"))

    def _submit(self, request: Any, cid: str, what: tuple[str, str, float]):  # noqa: ANN202
        resends = self._client._retry
        while True:
            try:
                return self._call(self._client.submit_order, request)
            except BrokerError as err:
                duplicate = err.status == 422 and DUPLICATE_ID in err.message
                if not (duplicate or err.status == 0 or err.status >= 500):
                    raise
                # The order may exist: refused as a duplicate, or accepted and its answer lost.
                try:
                    existing = self._call(self._client.get_order_by_client_id, cid)
                except BrokerError as lookup:
                    if not (lookup.status == 404 and err.status == 0 and resends > 0):
                        raise err from None
                    # No answer and no such order: send it again, under the same id (module doc).
                    resends -= 1
                    log.warning("order %s: %s, and Alpaca has no such order: sending it again", cid, err)
                    continue
                ack = order_ack(existing)
                if (ack.symbol, ack.side, ack.qty) != (what[0], what[1], float(what[2])):
                    raise BrokerError(422, err.code, f"client_order_id {cid} is already used by another "
                                                     f"order ({ack.side} {ack.qty:g} {ack.symbol})") from None
                log.info("order %s already at the broker (%s after %s); not sent again", cid, ack.status, err)
                return existing

    def replace_stop(self, order_id: str, stop_price: float) -> OrderAck:
        """Move a working stop (PATCH /v2/orders/{id}); returns the new order that replaces it.

        A PATCH retried by alpaca-py after a 504 finds the old order already replaced (422): the
        replacement is then read from the old order's ``replaced_by`` and returned if it carries
        the asked stop price.
        """
        try:
            return order_ack(self._call(self._client.replace_order_by_id, order_id,
                                        ReplaceOrderRequest(stop_price=stop_price)))
        except BrokerError as err:
            if not (err.status == 422 or err.status == 0 or err.status >= 500):
                raise
            try:
                old = self._call(self._client.get_order_by_id, order_id)
                if enum_str(old.status) != "replaced" or old.replaced_by is None:
                    raise err
                new = order_ack(self._call(self._client.get_order_by_id, old.replaced_by))
            except BrokerError:
                raise err from None
            if new.stop_price is None or abs(new.stop_price - stop_price) > 1e-9:
                raise err from None
            log.info("stop %s was already replaced by %s at %s", order_id, new.id, stop_price)
            return new

    def cancel(self, order_id: str) -> None:
        """Cancel one order; an order already filled, canceled or expired is left alone (logged)."""
        try:
            self._call(self._client.cancel_order_by_id, order_id)
        except BrokerError as err:
            if err.status != 422:  # Alpaca answers 422 "order is not cancelable" for a terminal order
                raise
            ack = order_ack(self._call(self._client.get_order_by_id, order_id))
            if not ack.is_terminal:
                raise
            log.info("cancel %s: already %s, nothing to do", order_id, ack.status)

    def close_all(self) -> list[OrderAck]:
        """Cancel every open order and close every position; returns the closing orders.

        Alpaca answers 207 with one entry per position; a position it refused to close raises a
        BrokerError naming each refusal, after the others were sent (see ``open_orders``).
        """
        answers = self._call(self._client.close_all_positions, True)
        closing, refused = [], []
        for a in answers:
            if a.status is not None and 200 <= a.status < 300 and hasattr(a.body, "client_order_id"):
                closing.append(order_ack(a.body))
            else:
                refused.append(f"{a.symbol}: {a.status} {getattr(a.body, 'message', a.body)}")
        if refused:
            raise BrokerError(207, None, "close_all could not close " + "; ".join(refused))
        return closing
