"""The broker port: the whole broker surface the live runner needs, and the values that cross it
(orders, fills, order updates and bars: what the Alpaca adapter hands the runner).

The runner, the risk manager and the state store speak only these types; the Alpaca adapter
(``live_bridge/alpaca/``) is the one place in the live bridge that imports alpaca-py and translates
its models into them. Keeping the surface to a handful of methods keeps the test double small and
makes the simulator and live Alpaca interchangeable.

Conventions every implementation must keep:

* timestamps are timezone-aware UTC ``datetime``; money and quantities are ``float`` (fractional
  shares exist), quantities on orders and fills are positive and the side carries the sign;
* a ``Position.qty`` is signed (short < 0);
* ``Broker.submit`` is idempotent by ``client_order_id``: Alpaca answers 422 on a reused id (even
  after a cancel), and the adapter then returns the existing order instead of raising, so a runner
  that crashed between "sent" and "recorded" can resend the same intent safely;
* order updates arrive repeated, late and out of order: ``status_can_follow`` says which status
  changes are news, and fills the broker reports only as a cumulative ``filled_qty`` are counted
  as one ``synthetic_fill`` with an id that every reporter of them makes alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop"]
TimeInForce = Literal["day", "gtc"]

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop")
TIMES_IN_FORCE = ("day", "gtc")
#: Alpaca order statuses after which an order never changes again. ``done_for_day`` is not one:
#: a GTC order that is done for the day resumes at the next session.
TERMINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
#: Statuses of an order the broker has not started working yet; once past them it never returns.
EARLY_STATUSES = frozenset({"pending_new", "accepted", "new"})
NY = ZoneInfo("America/New_York")


def session_day(ts: datetime) -> date:
    """The New York calendar date of a UTC instant: the key of a trading day (daily P&L, halts)."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} is naive; the live bridge only takes timezone-aware UTC times")
    return _ny_date(ts)


@lru_cache(maxsize=4096)
def _ny_date(ts: datetime) -> date:  # cached: the runner asks for the same bar times many times per bar
    return ts.astimezone(NY).date()


def status_can_follow(old: str, new: str) -> bool:
    """Whether an order last seen in status ``old`` can next be in status ``new``.

    A terminal status is final, and an order never goes back to an early one: an update saying
    otherwise is stale (acks, polls and stream events race each other) and must not reopen or
    "unfill" an order. The state store and the fill feed both keep orders by this rule.
    """
    return old not in TERMINAL_STATUSES and not (new in EARLY_STATUSES and old not in EARLY_STATUSES)


def sign(side: str) -> int:
    """+1 for a buy, -1 for a sell: fills and orders carry positive qty, the side gives the sign."""
    if side not in SIDES:
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    return 1 if side == "buy" else -1


@dataclass(frozen=True, slots=True)
class Account:
    """Account figures in dollars; ``last_equity`` is equity at the previous session's close."""

    equity: float
    cash: float
    buying_power: float
    last_equity: float


@dataclass(frozen=True, slots=True)
class Position:
    """The broker's net position in one symbol, all strategies together; ``qty`` < 0 is short."""

    symbol: str
    qty: float
    avg_entry_price: float
    market_value: float  # signed like qty (Alpaca reports shorts with a negative market value)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the runner wants sent: what the strategy decided, before the broker sees it."""

    client_order_id: str
    symbol: str
    side: Side
    qty: float
    type: OrderType = "market"
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = "day"
    strategy: str = ""
    reason: str = ""
    #: A protective stop with a take-profit: one OCO order at the broker (the take-profit limit is
    #: the parent and carries ``client_order_id``; the stop is its leg, with an id the broker makes).
    take_profit: float | None = None

    def __post_init__(self) -> None:
        # Fail at construction, not at the broker: a malformed order is a bug in the caller.
        cid = self.client_order_id
        sign(self.side)
        if not self.qty > 0:
            raise ValueError(f"{cid}: qty must be positive (the side gives the sign), got {self.qty}")
        if self.type not in ORDER_TYPES:
            raise ValueError(f"{cid}: type must be one of {ORDER_TYPES}, got {self.type!r}")
        if self.time_in_force not in TIMES_IN_FORCE:
            raise ValueError(f"{cid}: time_in_force must be 'day' or 'gtc', got {self.time_in_force!r}")
        if (self.type == "limit") != (self.limit_price is not None):
            raise ValueError(f"{cid}: limit_price is required by, and only by, a limit order")
        if (self.type == "stop") != (self.stop_price is not None):
            raise ValueError(f"{cid}: stop_price is required by, and only by, a stop order")
        for price in (self.limit_price, self.stop_price, self.take_profit):
            if price is not None and not price > 0:
                raise ValueError(f"{cid}: prices must be positive, got {price}")
        if self.take_profit is not None:
            if self.type != "stop":
                raise ValueError(f"{cid}: take_profit goes with a protective stop order (one OCO), not a {self.type}")
            if (self.take_profit - self.stop_price) * (1 if self.side == "sell" else -1) <= 0:
                raise ValueError(f"{cid}: take_profit {self.take_profit} must be on the other side of the stop "
                                 f"{self.stop_price} ({'above' if self.side == 'sell' else 'below'} it for a {self.side})")

    @property
    def signed_qty(self) -> float:
        """qty with the side's sign: what the order does to the position if it fills."""
        return sign(self.side) * self.qty


@dataclass(frozen=True, slots=True)
class OrderAck:
    """The broker's view of one order, as returned by submit, lookups and trade updates."""

    id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    filled_qty: float
    filled_avg_price: float | None
    status: str  # Alpaca's status string: new, accepted, partially_filled, filled, canceled, ...
    type: OrderType
    stop_price: float | None
    limit_price: float | None
    submitted_at: datetime
    #: An OCO's stop leg(s) (the parent is the take-profit limit); each leg's ``parent`` is this
    #: order's client_order_id. Legs get broker-made client_order_ids.
    legs: tuple[OrderAck, ...] = ()
    parent: str | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the order can no longer fill or change."""
        return self.status in TERMINAL_STATUSES

    @property
    def remaining_qty(self) -> float:
        """Quantity still working at the broker (0 for a terminal order)."""
        return 0.0 if self.is_terminal else max(self.qty - self.filled_qty, 0.0)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. ``execution_id`` is unique per execution: trade updates can repeat it."""

    execution_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: float  # this execution's quantity, not the order's cumulative filled qty
    price: float
    timestamp: datetime


def synthetic_fill(ack: OrderAck, counted_qty: float, counted_notional: float, at: datetime) -> Fill | None:
    """The one Fill that brings an order's counted fills up to the broker's ``filled_qty``.

    For fills known only from the order (a poll, an update after missed ones, fills made while the
    runner was down). Its ``execution_id`` is ``<order id>:<cumulative qty>``, the same whoever makes
    it (the fill feed, the runner's recovery), so one never counts again what the other counted;
    its price makes the counted notional add up to ``filled_qty * filled_avg_price``. None when
    nothing is missing or the broker gives no average price.
    """
    step = ack.filled_qty - counted_qty
    if step <= 1e-9 or not ack.filled_avg_price:
        return None
    price = (ack.filled_qty * ack.filled_avg_price - counted_notional) / step
    return Fill(f"{ack.id}:{ack.filled_qty:.9g}", ack.id, ack.client_order_id, ack.symbol, ack.side, step, price, at)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """A change of an order's state; ``event`` is Alpaca's (new, fill, canceled, ...) or "poll"."""

    event: str
    order: OrderAck
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class LiveBar:
    """One closed bar from the broker's market data; ``ts`` is the bar's start (UTC), as Alpaca stamps bars."""

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
class MarketClock:
    """The broker's clock: the one source of "is the market open" (holidays and half days included)."""

    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime

    @property
    def session(self) -> date:
        """The New York date of ``timestamp``."""
        return session_day(self.timestamp)


#: How to build a broker again in another process: (factory, args, kwargs), picklable. It holds
#: the keys: it goes through a pipe to the child (``sender.ProcessSender``), never into a log.
SpawnSpec = tuple[Callable[..., "Broker"], tuple[Any, ...], dict[str, Any]]


@runtime_checkable
class Broker(Protocol):
    """Everything the runner asks of a broker. Implementations: the Alpaca adapter and test doubles."""

    def account(self) -> Account:
        """Current account figures."""
        ...

    def positions(self) -> dict[str, Position]:
        """Open positions by symbol (net of all strategies)."""
        ...

    def submit(self, intent: OrderIntent) -> OrderAck:
        """Send an order. Idempotent by client_order_id: a duplicate returns the existing order."""
        ...

    def order_by_client_id(self, client_order_id: str) -> OrderAck | None:
        """The order sent under this client_order_id, or None if the broker never accepted one."""
        ...

    def open_orders(self) -> list[OrderAck]:
        """Orders that can still fill."""
        ...

    def cancel(self, order_id: str) -> None:
        """Request cancellation of one order by broker id (a no-op if already terminal)."""
        ...

    def close_all(self) -> list[OrderAck]:
        """Cancel every open order and close every position; returns the closing orders.

        The closing orders carry broker-assigned client_order_ids, so their fills cannot be
        attributed to a strategy: prefer per-strategy ``flatten`` intents and keep this for the
        kill switch.
        """
        ...

    def clock(self) -> MarketClock:
        """The broker's market clock."""
        ...

    def spawn_spec(self) -> SpawnSpec | None:
        """How to build this broker again in another process (the runner's sender process), or None
        when it cannot be: a broker holding in-process state (a test double) is called from threads
        of the runner's own process only."""
        ...


class BrokerError(Exception):
    """The broker refused or failed a request: ``status`` (0 when no HTTP answer came), code, message.

    Adapters raise subclasses of it, so the runner can log a refusal without importing them.
    """

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status, self.code, self.message = status, code, message

    def __reduce__(self):  # noqa: ANN204 - pickles whole (the sender process hands errors back)
        return type(self), (self.status, self.code, self.message)
