"""The simulated account's books: cash, positions, fills, and their JSON as Alpaca sends it.

Accounting, kept simple on purpose (and stated here so nobody reverse-engineers it):

* equity = cash + long market value + short market value (short value is negative), marked at
  each symbol's last closed bar;
* a buy takes ``qty * price + fee`` from cash, a sell adds ``qty * price - fee``; a short sale
  therefore raises cash, and the short position's negative value offsets it in equity;
* ``fee_rate`` is a fraction of notional per fill. Alpaca charges no commission on stocks, so it
  defaults to 0 (regulatory TAF/SEC fees on sells are not modelled);
* initial margin = gross position value / multiplier; buying power =
  (equity - initial margin) * multiplier - what open opening orders hold. With multiplier 1 that
  is the cash of a cash account (less open buys); with 2 it is Reg T margin, with 4 Alpaca's
  intraday margin. It is never negative;
* a position keeps its average entry price while it shrinks; a fill through zero (which the
  broker's qty checks normally prevent) reopens it at the fill price.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from .orders import NAMESPACE, asset_id, iso, num


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Account and execution settings of the simulated broker (all fractions, not percents)."""

    cash: float = 100_000.0
    multiplier: float = 1.0  # 1 cash-like, 2 Reg T margin, 4 intraday margin
    shorting_enabled: bool = True
    slippage: float = 0.0  # moves market and stop fills against the trader
    slip_limit_orders: bool = False  # also slip limit fills (research/metrics slips every fill)
    fee_rate: float = 0.0  # per fill, of notional; Alpaca's stock commission is 0
    max_volume_fraction: float | None = None  # partial fills: at most this share of a bar's volume
    account_number: str = "PA3SIMULATOR"

    def __post_init__(self) -> None:
        if self.cash < 0 or self.multiplier < 1:
            raise ValueError("cash must be >= 0 and multiplier >= 1")
        for name in ("slippage", "fee_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1)")
        if self.max_volume_fraction is not None and not 0.0 < self.max_volume_fraction <= 1.0:
            raise ValueError("max_volume_fraction must be in (0, 1] (or None for no cap)")


@dataclass(frozen=True, slots=True)
class Asset:
    """A tradable symbol as GET /v2/assets describes it."""

    symbol: str
    name: str = ""
    exchange: str = "NASDAQ"
    tradable: bool = True
    shortable: bool = True
    easy_to_borrow: bool = True
    marginable: bool = True

    def to_json(self) -> dict:
        # fractionable is false: the simulator trades whole shares only.
        return {"id": asset_id(self.symbol), "class": "us_equity", "exchange": self.exchange,
                "symbol": self.symbol, "name": self.name or self.symbol, "status": "active",
                "tradable": self.tradable, "marginable": self.marginable, "shortable": self.shortable,
                "easy_to_borrow": self.easy_to_borrow, "fractionable": False,
                "maintenance_margin_requirement": 30, "attributes": []}


@dataclass
class Position:
    symbol: str
    qty: int = 0  # signed: negative for a short
    avg_entry_price: float = 0.0
    opened_us: int = 0


@dataclass(frozen=True, slots=True)
class SimFill:
    """One execution: the evidence chaos tests count (one per fill or partial fill)."""

    execution_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: int
    price: float
    fee: float
    timestamp_us: int
    position_qty: int


class Ledger:
    """Cash, positions and marks; not thread-safe by itself (the broker holds the clock's lock)."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.cash = float(config.cash)
        self.positions: dict[str, Position] = {}
        self.fills: list[SimFill] = []
        self.mark: dict[str, float] = {}  # last close per symbol
        self.lastday: dict[str, float] = {}  # close of the previous session per symbol
        self.session_open: dict[str, int] = {}  # open of the session of the symbol's last bar
        self.closes: list[tuple[date, float]] = []  # (New York date, equity) at each session's close
        self.account_id = str(uuid.uuid5(NAMESPACE, config.account_number))

    def qty(self, symbol: str) -> int:
        p = self.positions.get(symbol)
        return p.qty if p else 0

    def apply(self, symbol: str, signed: int, price: float, fee: float, t: int) -> int:
        """Book an execution of ``signed`` shares (negative: sold); returns the position qty after it."""
        self.cash -= signed * price + fee
        p = self.positions.setdefault(symbol, Position(symbol))
        if p.qty == 0 or (p.qty > 0) == (signed > 0):  # opening or adding
            total = abs(p.qty) + abs(signed)
            p.avg_entry_price = (p.avg_entry_price * abs(p.qty) + price * abs(signed)) / total
            p.opened_us = p.opened_us if p.qty else t
            p.qty += signed
        else:
            before = p.qty
            p.qty += signed
            if p.qty != 0 and (p.qty > 0) != (before > 0):  # through zero: reopened at the fill
                p.avg_entry_price, p.opened_us = price, t
        if p.qty == 0:
            del self.positions[symbol]
        return p.qty

    # ------------------------------------------------------------------------------ valuation
    def market_values(self) -> tuple[float, float]:
        """(long market value, short market value <= 0) at the marks."""
        long_mv = short_mv = 0.0
        for p in self.positions.values():
            v = p.qty * self.mark.get(p.symbol, p.avg_entry_price)
            if v >= 0:
                long_mv += v
            else:
                short_mv += v
        return long_mv, short_mv

    def equity(self) -> float:
        long_mv, short_mv = self.market_values()
        return self.cash + long_mv + short_mv

    def buying_power(self, holds: float) -> float:
        """(equity - initial margin) * multiplier, less ``holds`` of open opening orders; >= 0."""
        long_mv, short_mv = self.market_values()
        m = self.config.multiplier
        initial = (long_mv - short_mv) / m
        return max(0.0, (self.cash + long_mv + short_mv - initial) * m - holds)

    def close_session(self, close_us: int) -> None:
        """Record the equity at a session's close (``last_equity`` from the next day on)."""
        self.closes.append((_ny_date(close_us), self.equity()))

    def last_equity(self, now_us: int) -> float:
        """Alpaca's ``last_equity``: the equity at the close of the last trading day before today
        (New York), so after today's close it still says yesterday's until the date changes."""
        today = _ny_date(now_us)
        for day, equity in reversed(self.closes):
            if day < today:
                return equity
        return float(self.config.cash)

    # ------------------------------------------------------------------------------ JSON
    def account_json(self, holds: float, now_us: int, shorting: bool) -> dict:
        """GET /v2/account, every amount a string as Alpaca sends it."""
        long_mv, short_mv = self.market_values()
        equity = self.cash + long_mv + short_mv
        m = self.config.multiplier
        bp = self.buying_power(holds)
        initial = (long_mv - short_mv) / m
        maintenance = 0.25 * long_mv - 0.30 * short_mv
        money = {
            "buying_power": bp, "regt_buying_power": bp, "daytrading_buying_power": 0.0,
            "effective_buying_power": bp, "non_marginable_buying_power": max(0.0, min(bp, self.cash)),
            "options_buying_power": 0.0, "bod_dtbp": 0.0, "cash": self.cash, "accrued_fees": 0.0,
            "pending_transfer_in": 0.0, "portfolio_value": equity, "equity": equity,
            "last_equity": self.last_equity(now_us), "long_market_value": long_mv, "short_market_value": short_mv,
            "position_market_value": long_mv - short_mv, "initial_margin": initial,
            "maintenance_margin": maintenance, "last_maintenance_margin": maintenance, "sma": 0.0,
            "intraday_adjustments": 0.0, "pending_reg_taf_fees": 0.0,
        }
        return {
            "id": self.account_id, "account_number": self.config.account_number, "status": "ACTIVE",
            "crypto_status": "INACTIVE", "currency": "USD", **{k: num(v) for k, v in money.items()},
            "multiplier": num(m), "shorting_enabled": shorting, "pattern_day_trader": False,
            "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
            "trade_suspended_by_user": False, "created_at": "2020-01-01T00:00:00Z", "daytrade_count": 0,
            "balance_asof": iso(now_us)[:10], "options_approved_level": 0, "options_trading_level": 0,
        }

    def position_json(self, p: Position, held: int, exchange: str) -> dict:
        """One GET /v2/positions entry: signed qty and values (negative for a short)."""
        price = self.mark.get(p.symbol, p.avg_entry_price)
        last = self.lastday.get(p.symbol, price)
        value, cost = p.qty * price, p.qty * p.avg_entry_price
        # Intraday P&L runs from yesterday's close for a position held overnight, else from entry.
        ref = last if p.opened_us < self.session_open.get(p.symbol, 0) else p.avg_entry_price
        intraday = p.qty * (price - ref)
        sign = 1 if p.qty > 0 else -1
        return {
            "asset_id": asset_id(p.symbol), "symbol": p.symbol, "exchange": exchange,
            "asset_class": "us_equity", "asset_marginable": True, "qty": num(p.qty),
            "avg_entry_price": num(p.avg_entry_price), "side": "long" if p.qty > 0 else "short",
            "market_value": num(value), "cost_basis": num(cost), "unrealized_pl": num(value - cost),
            "unrealized_plpc": num((value - cost) / abs(cost)) if cost else "0",
            "unrealized_intraday_pl": num(intraday),
            "unrealized_intraday_plpc": num(intraday / abs(p.qty * ref)) if ref else "0",
            "current_price": num(price), "lastday_price": num(last),
            "change_today": num(price / last - 1.0) if last else "0",
            "qty_available": num(sign * max(0, abs(p.qty) - held)),
        }


def _ny_date(us: int) -> date:
    return datetime.fromtimestamp(us / 1e6, ZoneInfo("America/New_York")).date()
