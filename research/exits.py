"""The fill convention and the exit rules every strategy shares, in one kernel.

Fill convention (the only one in tradelab):

* A decision taken at bar t's close, from data up to t, fills at bar t+1's open.
* A stop or target that triggers inside a bar fills at its level; if the bar opens beyond the
  level (a gap through it), it fills at the open: the open comes first, so a gap beyond the
  target takes it even if the bar later trades through the stop. When a stop and a target both
  lie inside one bar, the stop is assumed hit first (the conservative reading of an unknown
  path). A broker holding both as one OCO order fills the same way (the live bridge does).
* Levels are set from the entry fill price, put on the exchange's tick the way an order at the
  broker must be (``tick_nb``: a sell level rounds up, a buy level down), and are live from the
  entry bar on. A trailing stop
  trails the highest high (lowest low for shorts) of the bars *before* the current one since
  entry, so it never uses the current bar's extreme to stop out within that same bar.
* Time stop: after N bars held (the entry bar counts as 1), exit at the next open.
* Flat at session end (intraday): at the close of the bar before the session's last bar, any
  position is closed (filled at the last bar's open) and no entry is taken in the last two bars.
  "Last bar" comes from the calendar (Bars.bars_left). Known limit: if a feed has no bars for a
  session's final minutes (IEX, thin names), the exit decision never comes that session and the
  position is closed at the next open (tests/research pins this as a strict xfail).
* Signals on the same bar to enter long and short cancel out. A long position with a short entry
  signal reverses (and vice versa) when shorts are allowed.

The loop is ``research.kernels.simulate.simulate_nb``, the only one: a sweep's combinations, this
module's ``simulate_exits``, the per-regime switching of a params file, the live bridge and the
parity check all run it.

Slippage and fees are applied to these fill prices by the simulation that uses them (sweep,
live parity); this kernel decides *when* and *at which raw price* positions change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .bars import Bars
from .kernels.simulate import ExitReason, RuleArrays, level_hit_nb, rule_arrays, simulate_rule_nb, tick_nb
from .signals.base import Signals

__all__ = ["ExitReason", "ExitRules", "Path", "RuleArrays", "Trades", "level_hit_nb", "rule_arrays",
           "simulate_exits", "stop_price", "target_price", "tick_nb"]


@dataclass(frozen=True, slots=True)
class ExitRules:
    """Exit rules as fractions of the entry price (0 = off) and bar counts (0 = off)."""

    stop_loss: float = 0.0
    take_profit: float = 0.0
    trailing_stop: float = 0.0
    time_stop: int = 0
    flat_at_close: bool = False
    allow_short: bool = True

    def __post_init__(self) -> None:
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            v = getattr(self, name)
            if not (0.0 <= v < 1.0):
                raise ValueError(f"{name} must be a fraction in [0, 1), got {v}")
        if self.time_stop < 0:
            raise ValueError(f"time_stop must be >= 0 bars, got {self.time_stop}")


class Trades(NamedTuple):
    """One row per trade; an open trade has exit_bar -1 and exit_price NaN."""

    entry_bar: np.ndarray
    entry_price: np.ndarray
    exit_bar: np.ndarray
    exit_price: np.ndarray
    direction: np.ndarray  # +1 long, -1 short
    reason: np.ndarray  # ExitReason codes


class Path(NamedTuple):
    """Per-bar positions and the trades that produced them."""

    position: np.ndarray  # int8: position held at bar t's close (after t's fills and stops)
    target: np.ndarray  # int8: position to hold from bar t+1's open (the decision at t's close)
    trades: Trades


def stop_price(direction: int, entry: float, extreme: float, rules: ExitRules) -> float | None:
    """The protective stop for the next bar of an open position, as the backtest applies it.

    ``entry`` is the entry fill's raw price, ``extreme`` the highest high (long; lowest low
    short) of the bars since entry before the next one (the entry bar's open at first). None when
    the rules set no stop. The live bridge sends this price: one function, two callers.
    """
    up = direction > 0
    sign = -1.0 if up else 1.0
    levels = [tick_nb(entry * (1.0 + sign * rules.stop_loss), up)] if rules.stop_loss > 0 else []
    if rules.trailing_stop > 0:
        levels.append(tick_nb(extreme * (1.0 + sign * rules.trailing_stop), up))
    if not levels:
        return None
    return float(max(levels) if up else min(levels))


def target_price(direction: int, entry: float, rules: ExitRules) -> float | None:
    """The take-profit level of an open position (None when the rules set none)."""
    if rules.take_profit <= 0:
        return None
    up = direction > 0
    return float(tick_nb(entry * (1.0 + (rules.take_profit if up else -rules.take_profit)), up))


def simulate_exits(bars: Bars, signals: Signals, rules: ExitRules) -> Path:
    """Apply the fill convention and exit rules to one strategy's signals on one symbol's bars."""
    if rules.flat_at_close and len(bars) > 1 and not bars.bars_left.any():
        raise ValueError("flat_at_close applies to intraday bars; these look like 1Day bars (one bar per session)")
    sig = (np.ascontiguousarray(a, dtype=np.bool_) for a in signals)
    r = simulate_rule_nb(bars, *sig, rule_arrays([rules]), 0)
    return Path(r[0], r[1], Trades(*r[3:9]))
