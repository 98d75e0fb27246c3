"""The simulator's order: its state, its JSON as Alpaca sends it, and the checks on a new order's body.

Wire details copied from Alpaca because clients (alpaca-py's ``Order`` model) depend on them:

* numbers are strings (``"qty": "10"``, ``"filled_avg_price": "101.25"``), absent values are null;
* times are RFC 3339 UTC with ``Z`` and trailing zeros trimmed, like Go's ``RFC3339Nano``;
* a simple order's ``order_class`` is ``""`` (alpaca-py maps it to ``simple``); ``legs`` is null
  unless the order has legs and the request asked for ``nested``;
* refusals are ``{"code": ..., "message": ...}`` with Alpaca's codes (40010001 bad field, 40310000
  forbidden, 40410000 not found, 42210000 unprocessable), see :class:`OrderError`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

#: Statuses GET /v2/orders?status=open returns; everything else is closed.
OPEN_STATUSES = frozenset({
    "new", "partially_filled", "accepted", "held", "pending_new", "done_for_day", "pending_cancel",
    "pending_replace", "accepted_for_bidding", "calculated", "stopped", "suspended",
})
WORKING = ("new", "partially_filled")  # statuses the matching engine looks at
SUB_PENNY = "sub-penny increment does not fulfill minimum pricing criteria"
TYPES = ("market", "limit", "stop", "stop_limit")
CLASSES = {"": "", "simple": "", "bracket": "bracket", "oco": "oco", "oto": "oto"}
TIFS = ("day", "gtc")
INTENTS = ("buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close")
MAX_CLIENT_ORDER_ID = 128
# Bounds no real order comes near; they keep qty x price finite (1e400 shares would overflow a float,
# and int() of "1e999999999" would build a billion-digit number before any other check ran).
MAX_QTY = 10**9
MAX_PRICE = 10**7
NAMESPACE = uuid.UUID("6f1c6c52-4b53-4a8e-9f55-7d0a4c1e2b10")  # asset ids are uuid5(symbol)


class OrderError(Exception):
    """A refusal Alpaca answers with ``status`` and ``{"code", "message", **extra}``."""

    def __init__(self, status: int, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


def unprocessable(message: str, code: int = 42210000) -> OrderError:
    return OrderError(422, code, message)


def asset_id(symbol: str) -> str:
    """A stable asset id per symbol (Alpaca's ids are uuids; these are uuid5 of the symbol)."""
    return str(uuid.uuid5(NAMESPACE, symbol))


def iso(us: int | None) -> str | None:
    """UTC microseconds as RFC 3339 with ``Z``, fraction trimmed the way Go prints it."""
    if us is None:
        return None
    text = str(np.datetime64(int(us), "us"))
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "Z"


def num(x: float | int | None) -> str | None:
    """A number as Alpaca's string: integral values without a fraction, others to 9 decimals."""
    if x is None:
        return None
    r = round(float(x), 9)
    if r == int(r):
        return str(int(r))
    return format(r, "f").rstrip("0")


@dataclass(eq=False)
class Order:
    """One order as the engine tracks it; ``to_json`` renders Alpaca's shape."""

    symbol: str
    side: str
    type: str
    qty: int
    time_in_force: str
    client_order_id: str
    submitted_us: int
    expires_us: int
    seq: int
    limit_price: float | None = None
    stop_price: float | None = None
    order_class: str = ""
    status: str = "new"
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    opening: bool = True  # raises |position| (needs buying power) rather than reducing it
    triggered: bool = False  # a stop that has triggered acts as market, a stop_limit as limit
    filled_qty: int = 0
    filled_notional: float = 0.0
    updated_us: int = 0
    filled_us: int | None = None
    canceled_us: int | None = None
    expired_us: int | None = None
    failed_us: int | None = None
    replaced_us: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    position_intent: str | None = None
    legs: list[Order] = field(default_factory=list)
    parent: Order | None = field(default=None, repr=False)
    group: str | None = None  # one-cancels-other group (bracket / oco exits)

    def __post_init__(self) -> None:
        self.updated_us = self.updated_us or self.submitted_us

    @property
    def remaining(self) -> int:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def buy(self) -> bool:
        return self.side == "buy"

    @property
    def filled_avg_price(self) -> float | None:
        return self.filled_notional / self.filled_qty if self.filled_qty else None

    def to_json(self, nested: bool = True) -> dict[str, Any]:
        """The order as Alpaca's REST API and ``trade_updates`` send it."""
        return {
            "id": self.id, "client_order_id": self.client_order_id,
            "created_at": iso(self.submitted_us), "updated_at": iso(self.updated_us),
            "submitted_at": iso(self.submitted_us), "filled_at": iso(self.filled_us),
            "expired_at": iso(self.expired_us), "canceled_at": iso(self.canceled_us),
            "failed_at": iso(self.failed_us), "replaced_at": iso(self.replaced_us),
            "replaced_by": self.replaced_by, "replaces": self.replaces,
            "asset_id": asset_id(self.symbol), "symbol": self.symbol, "asset_class": "us_equity",
            "notional": None, "qty": num(self.qty), "filled_qty": num(self.filled_qty),
            "filled_avg_price": num(self.filled_avg_price), "order_class": self.order_class,
            "order_type": self.type, "type": self.type, "side": self.side,
            "position_intent": self.position_intent, "time_in_force": self.time_in_force,
            "limit_price": num(self.limit_price), "stop_price": num(self.stop_price),
            "status": self.status, "extended_hours": False,
            "legs": [leg.to_json() for leg in self.legs] if nested and self.legs else None,
            "trail_percent": None, "trail_price": None, "hwm": None, "subtag": None, "source": None,
            "expires_at": iso(self.expires_us),
        }


# ------------------------------------------------------------------------------ request bodies
@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A POST /v2/orders body once checked: what the broker needs to place the order."""

    symbol: str
    side: str
    type: str
    qty: int
    time_in_force: str
    limit_price: float | None
    stop_price: float | None
    order_class: str
    client_order_id: str | None
    take_profit: float | None  # bracket / oco / oto exit legs
    stop_loss: float | None
    stop_loss_limit: float | None
    position_intent: str | None


def _decimal(value: Any, name: str) -> Decimal:
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise unprocessable(f"invalid {name}", 40010001) from None
    if not d.is_finite():
        raise unprocessable(f"invalid {name}", 40010001)
    return d


def parse_qty(value: Any) -> int:
    """Whole shares > 0. Fractional quantities are refused: the simulator trades whole shares."""
    if value is None or value == "":
        raise unprocessable("qty is required", 40010001)
    d = _decimal(value, "qty")
    if d <= 0:
        raise unprocessable("qty must be > 0")
    if d > MAX_QTY:
        raise unprocessable(f"qty must be <= {MAX_QTY}", 40010001)
    if d != d.to_integral_value():
        raise unprocessable("fractional qty is not supported by the simulator: qty must be whole shares")
    return int(d)


def parse_price(value: Any, name: str) -> float | None:
    """A price > 0 on Alpaca's grid: at most 2 decimals from $1 up, at most 4 below $1."""
    if value is None or value == "":
        return None
    d = _decimal(value, name)
    if d <= 0:
        raise unprocessable(f"{name} must be > 0", 40010001)
    if d > MAX_PRICE:
        raise unprocessable(f"{name} must be <= {MAX_PRICE}", 40010001)
    places = -d.normalize().as_tuple().exponent
    if places > (2 if d >= 1 else 4):
        raise unprocessable(f"invalid {name} {value}. {SUB_PENNY}")
    return float(d)


def parse_percentage(value: Any) -> float:
    """A percentage of a position in (0, 100] (DELETE /v2/positions/{symbol}?percentage=)."""
    d = _decimal(value, "percentage")
    if not 0 < d <= 100:
        raise unprocessable("percentage must be in (0, 100]", 40010001)
    return float(d)


def parse_client_order_id(value: Any) -> str | None:
    """A client_order_id: a string of at most 128 characters; null or "" leaves it to the server."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_CLIENT_ORDER_ID:
        raise unprocessable(f"client_order_id must be a string of at most {MAX_CLIENT_ORDER_ID} characters",
                            40010001)
    return value


def _leg(body: dict, name: str) -> dict:
    leg = body.get(name)
    if leg is not None and not isinstance(leg, dict):
        raise unprocessable(f"invalid {name}: must be an object", 40010001)
    return leg or {}


def parse_order(body: Any) -> OrderSpec:
    """Check a POST /v2/orders body the way Alpaca does; raise :class:`OrderError` (422) if wrong."""
    if not isinstance(body, dict):
        raise OrderError(400, 40010000, "request body format is invalid")
    symbol = str(body.get("symbol") or "").strip().upper()
    if not symbol:
        raise unprocessable("symbol is required", 40010001)
    if body.get("notional") not in (None, ""):
        raise unprocessable("notional orders are not supported by the simulator: send qty in whole shares")
    qty = parse_qty(body.get("qty"))
    side = body.get("side")
    if side not in ("buy", "sell"):
        raise unprocessable(f"invalid side: {side}", 40010001)
    kind = body.get("type")
    if kind not in TYPES:
        raise unprocessable(f"order type {kind} is not supported by the simulator", 40010001)
    tif = body.get("time_in_force")
    if tif not in TIFS:
        raise unprocessable(f"time_in_force {tif} is not supported by the simulator (day, gtc)", 40010001)
    if body.get("extended_hours"):
        raise unprocessable("extended_hours orders are not supported by the simulator", 40010001)
    klass = body.get("order_class") or ""
    klass = CLASSES.get(klass) if isinstance(klass, str) else None
    if klass is None:
        raise unprocessable(f"order_class {body.get('order_class')} is not supported by the simulator",
                            40010001)
    tp, sl = _leg(body, "take_profit"), _leg(body, "stop_loss")
    take_profit = parse_price(tp.get("limit_price"), "take_profit.limit_price")
    stop_loss = parse_price(sl.get("stop_price"), "stop_loss.stop_price")
    stop_loss_limit = parse_price(sl.get("limit_price"), "stop_loss.limit_price")
    limit = parse_price(body.get("limit_price"), "limit_price")
    stop = parse_price(body.get("stop_price"), "stop_price")
    if klass == "oco":
        if kind != "limit":
            raise unprocessable("oco orders must be limit orders", 40010001)
        limit = limit or take_profit
    if kind in ("limit", "stop_limit") and limit is None:
        raise unprocessable("limit_price is required", 40010001)
    if kind in ("stop", "stop_limit") and stop is None:
        raise unprocessable("stop_price is required", 40010001)
    if klass in ("bracket", "oco") and (take_profit is None or stop_loss is None):
        raise unprocessable(f"{klass} orders require take_profit.limit_price and stop_loss.stop_price",
                            40010001)
    if klass == "oto" and take_profit is None and stop_loss is None:
        raise unprocessable("oto orders require take_profit or stop_loss", 40010001)
    coid = parse_client_order_id(body.get("client_order_id"))
    intent = body.get("position_intent")
    if intent is not None and intent not in INTENTS:
        raise unprocessable(f"invalid position_intent: {intent}", 40010001)
    return OrderSpec(symbol, side, kind, qty, tif, limit, stop, klass, coid,
                     take_profit, stop_loss, stop_loss_limit, intent)
