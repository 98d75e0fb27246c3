"""The risk limits of STRATEGY_DEFAULTS.md, the sizing and price rounding they imply, and the day's halts.

``RiskLimits`` holds the numbers; ``size`` turns a stop distance into a quantity within them and
``round_price`` puts a price on Alpaca's tick, toward safety. ``DEFAULT_BUDGETS`` is each strategy's
share of equity (its capital budget). ``DayState`` carries the day's
halts (2% day loss: flatten everything and stop until the next session; 1% strategy loss: that
strategy stops for the day) and rolls over with the broker's clock. The pre-trade check that
reads them all is ``risk.RiskManager``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from types import MappingProxyType

from research.exits import tick_nb

from .ports import Account, MarketClock, sign

ACCOUNT = "*"  # the halt scope of the whole account (the others are strategy names)
_EPS = 1e-9

#: Capital budgets, the top of each range in STRATEGY_DEFAULTS.md ("share of the day's capital each
#: strategy may use": a budget is a ceiling, so the top of the range the traders use). Names are
#: research/signals' strategies. The table lists no budget for sma_cross, rsi_reversion and
#: sma_convergence: all three hold for days (daily bars, no time stop), so they take the "swing /
#: overnight holds" bucket, 10-15%, top 15%. A strategy in neither list gets ``default_budget``
#: (the same 15%: a new strategy starts as small as the smallest swing bucket, not unlimited).
DEFAULT_BUDGETS: Mapping[str, float] = MappingProxyType({
    "gap": 0.15,  # 10-15%
    "breakout": 0.20,  # breakout / momentum 15-20%
    "momentum": 0.20,
    "pairs": 0.25,  # 20-25%
    "vwap_reversion": 0.10,  # 10%, only in a ranging regime (the regime switch decides that)
    "rotation": 0.10,  # 10%
    "sma_cross": 0.15,  # swing / overnight bucket 10-15% (see above)
    "rsi_reversion": 0.15,
    "sma_convergence": 0.15,
})


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The risk limits, as fractions of equity unless named otherwise (defaults: STRATEGY_DEFAULTS.md)."""

    max_position_pct: float = 0.10  # one symbol's position value / equity
    max_gross_exposure: float = 0.80  # sum of |position values| (pending entries included) / equity
    daily_loss_halt: float = 0.02  # day loss / start-of-day equity: flatten all, halt until next session
    strategy_daily_loss: float = 0.01  # a strategy's day P&L / start-of-day equity: strategy off
    drawdown_halve: float = 0.08  # drawdown from peak equity at which sizes (and the cap) halve
    require_stop: bool = True  # every entry carries a protective stop
    default_stop_pct: float | None = 0.02  # the stop given to an entry without one; None: reject it
    risk_per_trade: float = 0.0025  # equity risked between entry and stop (0.25-0.5% in the defaults)
    max_orders_per_minute: int = 100  # Alpaca allows 200 requests/min; leave room for lookups
    no_new_entries_minutes: float = 15.0  # before the close (the broker clock knows half days)
    max_spread: float = 0.003  # (ask - bid) / mid, when the proposal carries a quote
    max_positions_per_sector: int = 3  # needs RiskContext.sectors; skipped without it
    # A strategy's gross exposure (its positions + pending entries) / equity: entries are trimmed to
    # fit, refused below one share. Not hashed (a mapping); frozen as a read-only copy.
    strategy_budgets: Mapping[str, float] = field(default_factory=lambda: DEFAULT_BUDGETS, hash=False)
    default_budget: float = 0.15  # a strategy not in strategy_budgets
    max_correlated: int = 3  # open positions (the entry counted) correlated above the threshold
    correlation_threshold: float = 0.7  # of daily log returns; "above" is strict (0.7 itself is not)
    correlation_days: int = 60  # daily returns in the correlation window (sessions before today)
    # Daily bars decide at the close and fill at the next open (the fill convention): their entries
    # are sent while the market is closed and queue for the open, so the hours rules let them pass.
    queue_for_next_open: bool = False

    def __post_init__(self) -> None:
        for name in ("max_position_pct", "max_gross_exposure", "daily_loss_halt", "strategy_daily_loss",
                     "drawdown_halve", "risk_per_trade", "max_spread"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"RiskLimits.{name} must be in (0, 1], got {getattr(self, name)}")
        if self.default_stop_pct is not None and not 0 < self.default_stop_pct < 1:
            raise ValueError("RiskLimits.default_stop_pct must be in (0, 1) or None, "
                             f"got {self.default_stop_pct}")
        counts = min(self.max_orders_per_minute, self.max_positions_per_sector)
        if counts < 1 or self.no_new_entries_minutes < 0:
            raise ValueError("RiskLimits: max_orders_per_minute and max_positions_per_sector must be >= 1, "
                             "no_new_entries_minutes >= 0")
        budgets = dict(self.strategy_budgets)
        for name, share in budgets.items():
            if not isinstance(name, str) or not isinstance(share, (int, float)) or not 0 < share <= 1:
                raise ValueError(f"RiskLimits.strategy_budgets[{name!r}] must be in (0, 1], got {share!r}")
        object.__setattr__(self, "strategy_budgets", MappingProxyType(budgets))
        if not 0 < self.default_budget <= 1:
            raise ValueError(f"RiskLimits.default_budget must be in (0, 1], got {self.default_budget}")
        if isinstance(self.max_correlated, bool) or not isinstance(self.max_correlated, int) \
                or self.max_correlated < 1:
            raise ValueError(f"RiskLimits.max_correlated must be an int >= 1, got {self.max_correlated!r}")
        if not 0 < self.correlation_threshold < 1:
            raise ValueError(f"RiskLimits.correlation_threshold must be in (0, 1), got {self.correlation_threshold}")
        if isinstance(self.correlation_days, bool) or not isinstance(self.correlation_days, int) \
                or self.correlation_days < 2:
            raise ValueError(f"RiskLimits.correlation_days must be an int >= 2, got {self.correlation_days!r}")

    @classmethod
    def per_sleeve(cls, **kw) -> RiskLimits:
        """The limits without the portfolio rules (every budget 100%, no correlated-group limit): what a
        per-sleeve backtest reaches, so a replay compared with it (parity) must use these."""
        return cls(**({"strategy_budgets": {}, "default_budget": 1.0, "max_correlated": 10**9} | kw))

    def budget_of(self, strategy: str) -> float:
        """A strategy's capital budget as a share of equity (``default_budget`` when not listed)."""
        return self.strategy_budgets.get(strategy, self.default_budget)

    def __reduce__(self):  # noqa: ANN204 - the budgets' read-only view does not pickle: a dict does
        state = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return _limits, (state | {"strategy_budgets": dict(self.strategy_budgets)},)


def _limits(state: dict) -> RiskLimits:
    return RiskLimits(**state)


# --- pure helpers ---------------------------------------------------------------------------------

def round_price(price: float, side: str) -> float:
    """Round a limit or stop price to what Alpaca takes (>= $1: 2 decimals, < $1: 4), toward safety.

    Buys round down and sells round up. For limits that means never paying more, or selling for
    less, than the strategy asked. For stops it moves the trigger toward the market: a sell stop
    under a long rounds up and a buy stop over a short rounds down, so the stop fires no later and
    the loss is never larger than planned. It is the backtest's tick (``research.exits.tick_nb``),
    so a level the sweep simulated is the level sent: float noise (95.00000000000001) stays 95.00.
    """
    if not price > 0:
        raise ValueError(f"price must be positive, got {price}")
    return float(tick_nb(float(price), sign(side) < 0))


def drawdown_factor(equity: float, peak_equity: float, limits: RiskLimits) -> float:
    """0.5 once equity is ``drawdown_halve`` or more below its peak, else 1.0."""
    if peak_equity <= 0:
        return 1.0
    return 0.5 if 1 - equity / peak_equity >= limits.drawdown_halve - _EPS else 1.0


def size(equity: float, price: float, stop_distance: float, limits: RiskLimits,
         drawdown_factor: float = 1.0, *, whole_shares: bool = True) -> float:
    """Shares to buy or sell: risk ``risk_per_trade`` of equity to the stop, capped by the position cap.

    ``stop_distance`` is dollars per share between entry and stop. The result is multiplied by
    ``drawdown_factor`` (0.5 in drawdown) and rounded down: to whole shares, or to 1e-6 shares
    when fractional (Alpaca: market/day buys only).
    """
    if not price > 0 or not stop_distance > 0:
        raise ValueError(f"price and stop_distance must be positive, got {price} and {stop_distance}")
    if equity <= 0:
        return 0.0
    by_risk = equity * limits.risk_per_trade / stop_distance
    by_cap = equity * limits.max_position_pct / price
    qty = min(by_risk, by_cap) * drawdown_factor
    return float(math.floor(qty + _EPS)) if whole_shares else math.floor(qty * 1e6 + _EPS) / 1e6


def orders_in_last_minute(sent_at: Sequence[datetime], now: datetime) -> int:
    """How many of the send times fall in the minute before ``now``."""
    start = now - timedelta(minutes=1)
    return sum(1 for t in sent_at if start < t <= now)


# --- the day's halts ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HaltEvent:
    """A halt that has just tripped; ``scope`` is ACCOUNT (flatten everything) or a strategy name."""

    scope: str
    rule: str  # "daily_loss" | "strategy_loss"
    message: str

    @property
    def flatten_all(self) -> bool:
        """True when the runner must close every position and cancel every order."""
        return self.scope == ACCOUNT


@dataclass(frozen=True, slots=True)
class DayState:
    """One session's P&L per strategy and halts. Immutable: ``update`` and ``roll`` return new states.

    ``start_equity`` is the broker's ``last_equity`` (equity at the previous close): the daily loss
    limits are fractions of it. Persist ``halts()`` (``StateStore.record_halt``) so that a restart
    in the same session stays halted: pass them back to ``begin``.
    """

    session: date
    start_equity: float
    strategy_pnl: Mapping[str, float] = field(default_factory=dict)
    halted: str | None = None  # why the account is halted, if it is
    disabled: Mapping[str, str] = field(default_factory=dict)  # strategy -> why it is off

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy_pnl", MappingProxyType(dict(self.strategy_pnl)))
        object.__setattr__(self, "disabled", MappingProxyType(dict(self.disabled)))

    @classmethod
    def begin(cls, clock: MarketClock, account: Account, halts: Mapping[str, str] | None = None) -> DayState:
        """The state at the start of the clock's session, with any halts already recorded for it."""
        halts = dict(halts or {})
        start = account.last_equity if account.last_equity > 0 else account.equity
        return cls(clock.session, start, {}, halts.pop(ACCOUNT, None), halts)

    def roll(self, clock: MarketClock, account: Account) -> DayState:
        """Self while the clock is in this session; a fresh, unhalted state once it moves on."""
        return self if clock.session == self.session else DayState.begin(clock, account)

    def day_return(self, equity: float) -> float:
        """Equity change since the start of the day, as a fraction of start-of-day equity."""
        return equity / self.start_equity - 1 if self.start_equity > 0 else 0.0

    def strategy_return(self, strategy: str) -> float:
        """A strategy's P&L today as a fraction of start-of-day equity."""
        return self.strategy_pnl.get(strategy, 0.0) / self.start_equity if self.start_equity > 0 else 0.0

    def halts(self) -> dict[str, str]:
        """The halts in force, scope -> reason (ACCOUNT for the whole account): what to persist."""
        return ({ACCOUNT: self.halted} if self.halted else {}) | dict(self.disabled)

    def update(self, equity: float, strategy_pnl: Mapping[str, float],
               limits: RiskLimits) -> tuple[DayState, tuple[HaltEvent, ...]]:
        """Take the latest equity and per-strategy P&L (dollars, realized + unrealized).

        Returns the new state and the halts that tripped *now* (each fires once per session), so
        the runner flattens on the event, not on every tick after it.
        """
        new = replace(self, strategy_pnl=strategy_pnl)
        events: list[HaltEvent] = []
        if new.halted is None and (msg := day_loss_message(new, equity, limits)):
            new = replace(new, halted=msg)
            events.append(HaltEvent(ACCOUNT, "daily_loss", msg))
        disabled = dict(new.disabled)
        for strategy in sorted(strategy_pnl):
            if strategy not in disabled and (msg := strategy_loss_message(new, strategy, limits)):
                disabled[strategy] = msg
                events.append(HaltEvent(strategy, "strategy_loss", msg))
        return replace(new, disabled=disabled), tuple(events)


def day_loss_message(day: DayState, equity: float, limits: RiskLimits) -> str | None:
    """Why the account halts at ``equity`` today (the day loss reached ``daily_loss_halt``), or None."""
    loss = -day.day_return(equity)
    if loss >= limits.daily_loss_halt - _EPS:
        return (f"day loss {loss:.2%} >= {limits.daily_loss_halt:.2%} of start-of-day equity "
                f"{day.start_equity:,.2f}: flatten all and halt until the next session")
    return None


def strategy_loss_message(day: DayState, strategy: str, limits: RiskLimits) -> str | None:
    """Why ``strategy`` is off today (its loss reached ``strategy_daily_loss``), or None."""
    loss = -day.strategy_return(strategy)
    if loss >= limits.strategy_daily_loss - _EPS:
        return (f"strategy {strategy} lost {loss:.2%} of capital today >= {limits.strategy_daily_loss:.2%}: "
                "off for the rest of the session")
    return None
