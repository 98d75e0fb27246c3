"""The Alpaca adapter: ``ports.Broker`` on alpaca-py's ``TradingClient``, and the helpers its feeds share.

This module and ``alpaca_feeds`` are the only ones that import alpaca-py. Everything that leaves
them is a ``ports`` type (or ``LiveBar`` / ``OcoAck`` defined here), and every alpaca-py error
leaves as one :class:`BrokerError` carrying the broker's status, code and message.

Alpaca quirks handled here, because a runner trips on each of them:

* **Idempotent submit.** ``client_order_id`` is unique per account forever (422 "client_order_id
  must be unique", even after a cancel). alpaca-py itself re-POSTs an order answered 429/504 with
  the same body, so a 504 sent *after* Alpaca accepted the order comes back to us as that 422.
  Either way the order exists: we read it with ``get_order_by_client_id`` and return it. When
  the answer is lost outright (a timeout, a reset connection) we look the id up; if Alpaca has no
  such order we send it again, with the same id (a copy that did land meanwhile turns the resend
  into the 422 above), at most ``retry_attempts`` times. After 5xx answers alpaca-py has retried
  already, the lookup decides and nothing is resent.
* **Retries.** alpaca-py retries the statuses in ``_retry_codes`` ``_retry`` times (3), sleeping
  ``_retry_wait`` seconds (3) in between; its defaults are 429 and 504 only, so a lone 500 or 503
  failed a read and lost the runner's decisions on that bar. We retry :data:`RETRY_STATUSES`;
  that is safe for orders because every order carries a client_order_id (above). Its constructor
  ignores a wait of 0, so we set the attributes directly (``retry_attempts`` / ``retry_wait``).
  Alpaca sends no Retry-After on 429. Every such answer is logged (a warning naming the status
  and the path), retried or not.
* **Timeouts.** alpaca-py's ``requests.Session`` has no timeout at all: a half-open socket would
  hang the runner forever. We mount an adapter that applies ``timeout`` to every request and
  retries a GET or DELETE that got no answer (``retry_attempts`` times: both are idempotent; a
  DELETE of an order already cancelled answers 422, which ``cancel`` resolves).
* **Keys.** alpaca-py keeps the keys on its clients, and the ``websockets`` library logs every
  frame at DEBUG, the auth frame (with the keys) included. Nothing here logs a client, reprs
  show no key, and stream sockets get a logger that never logs frames (:func:`ws_params`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import ports
from .ports import Account, MarketClock, OrderAck, OrderIntent, Position

log = logging.getLogger(__name__)

DUPLICATE_ID = "client_order_id must be unique"
MAX_ORDERS = 500  # Alpaca's largest page of GET /v2/orders
#: Answers alpaca-py retries (its default is 429 and 504): rate limits and transient server errors.
RETRY_STATUSES = (429, 500, 502, 503, 504)


class BrokerError(ports.BrokerError):
    """A refusal or failure from Alpaca: ``status`` (0 when no HTTP answer came), code, message."""


@dataclass(frozen=True, slots=True)
class LiveBar:
    """One closed bar from Alpaca; ``ts`` is the bar's start (UTC), as Alpaca stamps bars."""

    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None
    trade_count: float | None


@dataclass(frozen=True, slots=True)
class OcoAck:
    """The two orders of a protective OCO: the take-profit limit (the parent) and its stop leg."""

    take_profit: OrderAck
    stop_loss: OrderAck


# ---------------------------------------------------------------------------------------- helpers
def broker_error(err: APIError) -> BrokerError:
    """The BrokerError for an alpaca-py APIError (its text is the JSON body Alpaca sent)."""
    text = str(err)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):  # not Alpaca's JSON (a proxy's HTML 502, say)
        body = {"message": text[:200] or "no message"}
    return BrokerError(err.status_code or 0, body.get("code"), str(body.get("message", text[:200])))


def network_error(err: requests.RequestException) -> BrokerError:
    """A BrokerError for a request that got no answer (its text names the URL, never a header)."""
    return BrokerError(0, None, f"no answer from Alpaca: {type(err).__name__}: {err}")


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout (alpaca-py sends none) and retries idempotent ones left unanswered."""

    def __init__(self, timeout: float, retries: int = 0) -> None:
        # Only answer-less failures: statuses are alpaca-py's to retry (RETRY_STATUSES). urllib3
        # retries a refused connection for any method (nothing was sent) and a read timeout or a
        # reset only for GET and DELETE; a POST without an answer goes to AlpacaBroker._submit.
        super().__init__(max_retries=Retry(total=retries, connect=retries, read=retries, status=0, other=0,
                                           redirect=False, allowed_methods=frozenset({"GET", "DELETE"}),
                                           respect_retry_after_header=False, raise_on_status=False))
        self.timeout = timeout

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 - requests' signature
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def _log_retryable(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A requests response hook: every answer in RETRY_STATUSES is a fault worth a line in the log."""
    if response.status_code in RETRY_STATUSES:
        log.warning("Alpaca answered %s to %s %s", response.status_code, response.request.method,
                    urlsplit(response.url).path)  # the path only: no query, and headers never


def tune_rest_client(client: Any, *, retry_attempts: int, retry_wait: float, timeout: float) -> None:
    """Set the retry policy (RETRY_STATUSES, unanswered GET/DELETE), a request timeout and the fault log
    on an alpaca-py REST client (see module doc)."""
    client._retry = max(0, int(retry_attempts))
    client._retry_wait = max(0.0, float(retry_wait))
    client._retry_codes = list(RETRY_STATUSES)
    adapter = _TimeoutAdapter(timeout, client._retry)
    client._session.mount("http://", adapter)
    client._session.mount("https://", adapter)
    if _log_retryable not in client._session.hooks["response"]:
        client._session.hooks["response"].append(_log_retryable)


def rest_url_for(ws_url: str | None) -> str | None:
    """The REST base of a websocket endpoint on the same host (ws://h:p/stream -> http://h:p).

    Trading's stream lives on its REST host (wss://paper-api.alpaca.markets/stream), and so does
    every simulator endpoint; market data does not, so the bar feed never guesses.
    """
    if ws_url is None:
        return None
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class _NoFrameLogger(logging.LoggerAdapter):
    """A logger for ``websockets`` that never logs at DEBUG (where it dumps frames: the auth frame
    carries the keys) and blanks the keys out of anything it does log."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__(logging.getLogger("live_bridge.alpaca.websocket"), {})
        self._secrets = tuple(s for s in secrets if s)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        kwargs.pop("extra", None)
        self.logger.log(level, text, **kwargs)


def ws_params(*secrets: str) -> dict[str, Any]:
    """alpaca-py's default websocket parameters plus the key-safe logger (they replace, not merge)."""
    return {"ping_interval": 10, "ping_timeout": 180, "max_queue": 1024, "logger": _NoFrameLogger(secrets)}


def _f(x: object) -> float | None:
    return None if x is None or x == "" else float(x)


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def order_ack(o: Any, parent: str | None = None) -> OrderAck:
    """The port's view of an alpaca-py ``Order`` (numbers arrive as strings), with its legs if any."""
    return OrderAck(
        id=str(o.id), client_order_id=o.client_order_id, symbol=o.symbol, side=_value(o.side),
        qty=_f(o.qty) or 0.0, filled_qty=_f(o.filled_qty) or 0.0, filled_avg_price=_f(o.filled_avg_price) or None,
        status=_value(o.status), type=_value(o.type or o.order_type), stop_price=_f(o.stop_price),
        limit_price=_f(o.limit_price), submitted_at=_utc(o.submitted_at or o.created_at),
        legs=tuple(order_ack(leg, o.client_order_id) for leg in getattr(o, "legs", None) or ()), parent=parent)


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


# ---------------------------------------------------------------------------------------- broker
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

    def spawn_spec(self) -> tuple:
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
            sign = -1.0 if _value(p.side) == "short" else 1.0
            out[p.symbol] = Position(p.symbol, sign * abs(float(p.qty)), float(p.avg_entry_price),
                                     sign * abs(_f(p.market_value) or 0.0))
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
        return MarketClock(_utc(c.timestamp), bool(c.is_open), _utc(c.next_open), _utc(c.next_close))

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
        if not o.legs and _value(o.order_class) in ("oco", "bracket", "oto"):
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
                if _value(old.status) != "replaced" or old.replaced_by is None:
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
