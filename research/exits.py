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

Slippage and fees are applied to these fill prices by the simulation that uses them (sweep,
live parity); this kernel decides *when* and *at which raw price* positions change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from .bars import Bars
from .signals.base import Signals


class ExitReason:
    """Why a trade closed (int8 codes in the trade records)."""

    SIGNAL, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, TIME_STOP, SESSION_END, OPEN = 0, 1, 2, 3, 4, 5, -1
    NAMES = {0: "signal", 1: "stop_loss", 2: "take_profit", 3: "trailing_stop", 4: "time_stop",
             5: "session_end", -1: "open"}


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


@njit(cache=True)
def tick_nb(price, up):
    """``price`` on the exchange's tick ($0.01 at or above $1, $0.0001 below), up or down.

    Stop and target levels are orders at the broker, and Alpaca refuses sub-penny prices, so the
    backtest uses the very prices the live bridge can send: a sell (a long's stop or target)
    rounds up, a buy (a short's) rounds down, i.e. a stop never fires later than planned and a
    target never fills worse. The inner round() absorbs float noise (95.00000000000001 -> 95.00).

    >>> tick_nb(95.00000000000001, True), tick_nb(95.001, True), tick_nb(0.12345, False)
    (95.0, 95.01, 0.1234)
    """
    scale = 100.0 if price >= 1.0 else 10000.0
    x = round(price * scale, 6)
    return (np.ceil(x) if up else np.floor(x)) / scale


@njit(cache=True)
def level_hit_nb(pos, o, h, l, entry, extreme, stop_loss, take_profit, trailing):  # noqa: E741
    """(hit code, fill price) of the stops and target inside one bar of an open position; 0 = none.

    Levels on the tick (``tick_nb``); the stop is the fixed stop or the trailing one, whichever is
    nearer. The open comes first: a bar opening beyond a level (stop or target) fills it at the
    open. Inside the bar the order of high and low is unknown, so the stop wins over the target.
    A broker holding the stop and the target as one OCO order fills the same way.

    >>> level_hit_nb(1, 100.0, 101.0, 94.0, 100.0, 100.0, 0.05, 0.10, 0.0)  # long, 5% stop at 95
    (1, 95.0)
    """
    if pos == 1:
        stop = tick_nb(entry * (1.0 - stop_loss), True) if stop_loss > 0.0 else -np.inf
        trail = tick_nb(extreme * (1.0 - trailing), True) if trailing > 0.0 else -np.inf
        lvl = max(stop, trail)
        tp = tick_nb(entry * (1.0 + take_profit), True) if take_profit > 0.0 else np.inf
        if lvl > -np.inf and o <= lvl:
            return (1 if stop >= trail else 3), o
        if o >= tp:
            return 2, o
        if lvl > -np.inf and l <= lvl:
            return (1 if stop >= trail else 3), lvl
        if h >= tp:
            return 2, tp
        return 0, np.nan
    stop = tick_nb(entry * (1.0 + stop_loss), False) if stop_loss > 0.0 else np.inf
    trail = tick_nb(extreme * (1.0 + trailing), False) if trailing > 0.0 else np.inf
    lvl = min(stop, trail)
    tp = tick_nb(entry * (1.0 - take_profit), False) if take_profit > 0.0 else -np.inf
    if lvl < np.inf and o >= lvl:
        return (1 if stop <= trail else 3), o
    if o <= tp:
        return 2, o
    if lvl < np.inf and h >= lvl:
        return (1 if stop <= trail else 3), lvl
    if l <= tp:
        return 2, tp
    return 0, np.nan


@njit(cache=True)
def simulate_exits_nb(o, h, l, c, bars_left, le, lx, se, sx,  # noqa: E741
                      stop_loss, take_profit, trailing, time_stop, flat_at_close, allow_short):
    """Run signals through the fill convention and exit rules; see the module docstring.

    >>> px = np.array([10.0, 11.0, 12.0, 13.0])
    >>> le, lx, no = np.array([1, 0, 0, 0], bool), np.array([0, 0, 1, 0], bool), np.zeros(4, bool)
    >>> position, target, e_bar, e_px, x_bar, x_px, direction, reason = simulate_exits_nb(
    ...     px, px, px, px, np.zeros(4, np.int64), le, lx, no, no, 0.0, 0.0, 0.0, 0, False, True)
    >>> position, e_bar, e_px, x_bar, x_px  # decided at bar 0's / 2's close, filled at the next open
    (array([0, 1, 1, 0], dtype=int8), array([1]), array([11.]), array([3]), array([13.]))
    """
    n = c.shape[0]
    position = np.zeros(n, np.int8)
    target = np.zeros(n, np.int8)
    e_bar = np.empty(n, np.int64)
    e_px = np.empty(n)
    x_bar = np.empty(n, np.int64)
    x_px = np.empty(n)
    dirs = np.empty(n, np.int8)
    why = np.empty(n, np.int8)
    k = 0
    pos = 0
    pending = 0
    pending_why = 0
    entry = np.nan
    extreme = np.nan
    held = 0
    for t in range(n):
        # 1) the open: fill what was decided at the previous close
        if pending != pos:
            if pos != 0:
                x_bar[k - 1] = t
                x_px[k - 1] = o[t]
                why[k - 1] = pending_why
            if pending != 0:
                e_bar[k] = t
                e_px[k] = o[t]
                dirs[k] = pending
                x_bar[k] = -1
                x_px[k] = np.nan
                why[k] = -1
                k += 1
                entry = o[t]
                extreme = o[t]
                held = 0
            pos = pending
        # 2) inside the bar: stops and targets
        if pos != 0:
            hit, px = level_hit_nb(pos, o[t], h[t], l[t], entry, extreme, stop_loss, take_profit, trailing)
            if hit != 0:
                x_bar[k - 1] = t
                x_px[k - 1] = px
                why[k - 1] = hit
                pos = 0
            else:
                held += 1
                if pos == 1 and h[t] > extreme:
                    extreme = h[t]
                if pos == -1 and l[t] < extreme:
                    extreme = l[t]
        position[t] = pos
        # 3) the close: decide the position for the next open
        new = pos
        reason = 0
        go_long = le[t] and not se[t]
        go_short = se[t] and not le[t] and allow_short
        if pos == 1:
            if go_short:
                new = -1
            elif lx[t]:
                new = 0
        elif pos == -1:
            if go_long:
                new = 1
            elif sx[t]:
                new = 0
        else:
            if go_long:
                new = 1
            elif go_short:
                new = -1
        if time_stop > 0 and pos != 0 and held >= time_stop and new == pos:
            new = 0
            reason = 4
        if flat_at_close and bars_left[t] <= 1:
            if new != 0 and pos != 0:
                reason = 5
            new = 0
        pending = new
        pending_why = reason
        target[t] = new
    return position, target, e_bar[:k], e_px[:k], x_bar[:k], x_px[:k], dirs[:k], why[:k]


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
    r = simulate_exits_nb(
        bars.open, bars.high, bars.low, bars.close, bars.bars_left,
        signals.long_entry, signals.long_exit, signals.short_entry, signals.short_exit,
        rules.stop_loss, rules.take_profit, rules.trailing_stop, rules.time_stop,
        rules.flat_at_close, rules.allow_short,
    )
    return Path(r[0], r[1], Trades(*r[2:]))
