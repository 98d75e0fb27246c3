"""The one simulation kernel: the fill convention and the exit rules, bar by bar.

``simulate_nb`` is the only loop in tradelab that turns signals into positions and trades. Its
callers differ only in what they hand it:

* one strategy's signals on one symbol (``research.exits.simulate_exits``, and every combination
  of a sweep through ``simulate_rule_nb``): one entry, code 0 on every bar;
* per-regime entries switched by the regime of the next session (``research.switching``: the
  params file traded as a whole; the live bridge and the parity check).

The convention itself is written out in ``research.exits``' docstring. The rules come as one
``RuleArrays`` (a NamedTuple of arrays, one value per entry code), the bars as ``research.bars.Bars``
(or any NamedTuple with ``open``, ``high``, ``low``, ``bars_left``) and the signals as a 4-tuple of
bool arrays of shape (codes, bars): long entry, long exit, short entry, short exit.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numba import njit


class ExitReason(IntEnum):
    """Why a trade closed (the int8 ``reason`` of the trade records)."""

    SIGNAL = 0
    STOP_LOSS = 1
    TAKE_PROFIT = 2
    TRAILING_STOP = 3
    TIME_STOP = 4
    SESSION_END = 5
    OPEN = -1  # still open at the last bar

    @classmethod
    def label(cls, code: int) -> str:
        """``"stop_loss"`` for 1; the code itself as text if it is none of these."""
        try:
            return cls(int(code)).name.lower()
        except ValueError:
            return str(code)


class RuleArrays(NamedTuple):
    """Exit rules as the kernel reads them: one value per entry code (see ``research.exits.ExitRules``)."""

    stop_loss: np.ndarray  # float64: fraction of the entry price, 0 = off
    take_profit: np.ndarray  # float64
    trailing_stop: np.ndarray  # float64
    time_stop: np.ndarray  # int64: bars held, 0 = off
    flat_at_close: np.ndarray  # bool
    allow_short: np.ndarray  # bool


_RULE_DTYPES = (np.float64, np.float64, np.float64, np.int64, np.bool_, np.bool_)


def rule_arrays(rules: Iterable[object]) -> RuleArrays:
    """``RuleArrays`` of rule objects with the ``RuleArrays`` fields as attributes (``ExitRules``).

    >>> from types import SimpleNamespace as R
    >>> rule_arrays([R(stop_loss=0.05, take_profit=0.0, trailing_stop=0.0, time_stop=3,
    ...                flat_at_close=False, allow_short=True)]).time_stop
    array([3])
    """
    rules = list(rules)
    return RuleArrays(*(np.ascontiguousarray([getattr(r, name) for r in rules], dtype=dt)
                        for name, dt in zip(RuleArrays._fields, _RULE_DTYPES)))


@njit(cache=True)
def tick_nb(price, up):
    """``price`` on the exchange's tick ($0.01 at or above $1, $0.0001 below), up or down.

    Stop and target levels are orders at the broker, and Alpaca refuses sub-penny prices, so the
    backtest uses the very prices the live bridge can send: a sell (a long's stop or target)
    rounds up, a buy (a short's) rounds down, i.e. a stop never fires later than planned and a
    target never fills worse. The inner round() absorbs float noise (95.00000000000001 -> 95.00).
    The live bridge's ``round_price`` is this function.

    >>> tick_nb(95.00000000000001, True), tick_nb(95.001, True), tick_nb(0.12345, False)
    (95.0, 95.01, 0.1234)
    """
    scale = 100.0 if price >= 1.0 else 10000.0
    x = round(price * scale, 6)
    return (np.ceil(x) if up else np.floor(x)) / scale


@njit(cache=True)
def level_hit_nb(pos, o, h, l, entry, extreme, stop_loss, take_profit, trailing):  # noqa: E741
    """(ExitReason, fill price) of the stops and target inside one bar of an open position.

    ``ExitReason.SIGNAL`` (0) with a NaN price = nothing hit. Levels on the tick (``tick_nb``);
    the stop is the fixed stop or the trailing one, whichever is nearer. The open comes first: a
    bar opening beyond a level (stop or target) fills it at the open. Inside the bar the order of
    high and low is unknown, so the stop wins over the target. A broker holding the stop and the
    target as one OCO order fills the same way.

    >>> level_hit_nb(1, 100.0, 101.0, 94.0, 100.0, 100.0, 0.05, 0.10, 0.0)  # long, 5% stop at 95
    (<ExitReason.STOP_LOSS: 1>, 95.0)
    """
    if pos == 1:
        stop = tick_nb(entry * (1.0 - stop_loss), True) if stop_loss > 0.0 else -np.inf
        trail = tick_nb(extreme * (1.0 - trailing), True) if trailing > 0.0 else -np.inf
        lvl = max(stop, trail)
        tp = tick_nb(entry * (1.0 + take_profit), True) if take_profit > 0.0 else np.inf
        why = ExitReason.STOP_LOSS if stop >= trail else ExitReason.TRAILING_STOP
        if lvl > -np.inf and o <= lvl:
            return why, o
        if o >= tp:
            return ExitReason.TAKE_PROFIT, o
        if lvl > -np.inf and l <= lvl:
            return why, lvl
        if h >= tp:
            return ExitReason.TAKE_PROFIT, tp
        return ExitReason.SIGNAL, np.nan
    stop = tick_nb(entry * (1.0 + stop_loss), False) if stop_loss > 0.0 else np.inf
    trail = tick_nb(extreme * (1.0 + trailing), False) if trailing > 0.0 else np.inf
    lvl = min(stop, trail)
    tp = tick_nb(entry * (1.0 - take_profit), False) if take_profit > 0.0 else -np.inf
    why = ExitReason.STOP_LOSS if stop <= trail else ExitReason.TRAILING_STOP
    if lvl < np.inf and o >= lvl:
        return why, o
    if o <= tp:
        return ExitReason.TAKE_PROFIT, o
    if lvl < np.inf and h >= lvl:
        return why, lvl
    if l <= tp:
        return ExitReason.TAKE_PROFIT, tp
    return ExitReason.SIGNAL, np.nan


@njit(cache=True)
def simulate_nb(bars, code_next, signals, rules):
    """Signals through the fill convention and exit rules, entries switched by ``code_next``.

    ``signals``: (long_entry, long_exit, short_entry, short_exit), bool (codes x bars).
    ``rules``: ``RuleArrays``, one value per code. ``code_next[t]`` (int64 per bar): the code whose
    entry rules apply to a flat decision at bar t's close (-1: no entry). An open position keeps
    the code it was entered under (its exit signals and rules) until it closes.

    Returns (position, target, active, entry_bar, entry_price, exit_bar, exit_price, direction,
    reason, trade_code): ``position[t]`` is held at t's close, ``target[t]`` the decision at t's
    close (filled at t+1's open), ``active[t]`` the code governing ``position[t]`` (-1 flat), then
    one row per trade (an open trade: exit_bar -1, exit_price NaN, reason ``ExitReason.OPEN``).
    ``code_next`` None means one entry, code 0, on every bar (a sweep's combination): then
    ``active`` and ``trade_code`` come back empty (nothing to tell apart; not writing them keeps the
    sweep's inner loop as fast as a single-entry loop).

    >>> from research.bars import Bars
    >>> px, z = np.array([10.0, 11.0, 12.0, 13.0]), np.zeros(4, np.int64)
    >>> bars = Bars(px, px, px, px, px, z, z, z)
    >>> le, lx, no = np.array([[1, 0, 0, 0]], bool), np.array([[0, 0, 1, 0]], bool), np.zeros((1, 4), bool)
    >>> rules = RuleArrays(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1, np.int64),
    ...                    np.zeros(1, bool), np.ones(1, bool))
    >>> out = simulate_nb(bars, np.array([0, 0, -1, -1]), (le, lx, no, no), rules)
    >>> out[0], out[2], out[3], out[4], out[5], out[6]  # decided at bar 0's / 2's close, filled at the next open
    (array([0, 1, 1, 0], dtype=int8), array([-1,  0,  0, -1]), array([1]), array([11.]), array([3]), array([13.]))
    """
    o, h, l, bars_left = bars.open, bars.high, bars.low, bars.bars_left  # noqa: E741
    le, lx, se, sx = signals
    n = o.shape[0]
    position = np.zeros(n, np.int8)
    target = np.zeros(n, np.int8)
    active = np.full(n if code_next is not None else 0, -1, np.int64)
    e_bar = np.empty(n, np.int64)
    e_px = np.empty(n)
    x_bar = np.empty(n, np.int64)
    x_px = np.empty(n)
    dirs = np.empty(n, np.int8)
    why = np.empty(n, np.int8)
    codes = np.empty(n if code_next is not None else 0, np.int64)
    k = 0
    pos = 0
    pending = 0
    pending_code = -1
    pending_why = ExitReason.SIGNAL
    cur = -1
    entry = np.nan
    extreme = np.nan
    held = 0
    # one entry (code_next None; the branches on it are pruned at compile time): its rules are
    # loop-invariant scalars, which lets the compiler hoist and unswitch on them (the sweep's case)
    sl0, tp0, tr0 = rules.stop_loss[0], rules.take_profit[0], rules.trailing_stop[0]
    ts0, fc0, sh0 = rules.time_stop[0], rules.flat_at_close[0], rules.allow_short[0]
    for t in range(n):
        if pending != pos:  # 1) the open: fill what was decided at the previous close
            if pos != 0:
                x_bar[k - 1] = t
                x_px[k - 1] = o[t]
                why[k - 1] = pending_why
            if pending != 0:
                e_bar[k] = t
                e_px[k] = o[t]
                dirs[k] = pending
                if code_next is not None:
                    codes[k] = pending_code
                x_bar[k] = -1
                x_px[k] = np.nan
                why[k] = ExitReason.OPEN
                k += 1
                entry = o[t]
                extreme = o[t]
                held = 0
                cur = pending_code
            else:
                cur = -1
            pos = pending
        if pos != 0:  # 2) inside the bar: stops and targets
            if code_next is None:
                sl, tp, tr = sl0, tp0, tr0
            else:
                sl, tp, tr = rules.stop_loss[cur], rules.take_profit[cur], rules.trailing_stop[cur]
            hit, px = level_hit_nb(pos, o[t], h[t], l[t], entry, extreme, sl, tp, tr)
            if hit != ExitReason.SIGNAL:
                x_bar[k - 1] = t
                x_px[k - 1] = px
                why[k - 1] = hit
                pos = 0
                cur = -1
            else:
                held += 1
                if pos == 1 and h[t] > extreme:
                    extreme = h[t]
                if pos == -1 and l[t] < extreme:
                    extreme = l[t]
        position[t] = pos
        if code_next is not None:
            active[t] = cur
        # 3) the close: an open position's own entry decides its exit; a flat one looks at the next regime
        if code_next is None:
            g = 0
            ts, fc, sh = ts0, fc0, sh0
        else:
            g = cur if pos != 0 else code_next[t]
            gg = max(g, 0)
            ts, fc, sh = rules.time_stop[gg], rules.flat_at_close[gg], rules.allow_short[gg]
        new = pos
        reason = ExitReason.SIGNAL
        new_code = cur
        if g >= 0:
            go_long = le[g, t] and not se[g, t]
            go_short = se[g, t] and not le[g, t] and sh
            if pos == 1:
                if go_short:
                    new = -1
                elif lx[g, t]:
                    new = 0
            elif pos == -1:
                if go_long:
                    new = 1
                elif sx[g, t]:
                    new = 0
            else:
                new_code = g
                if go_long:
                    new = 1
                elif go_short:
                    new = -1
            if ts > 0 and pos != 0 and held >= ts and new == pos:
                new = 0
                reason = ExitReason.TIME_STOP
            if fc and bars_left[t] <= 1:
                if new != 0 and pos != 0:
                    reason = ExitReason.SESSION_END
                new = 0
        pending = new
        pending_code = new_code
        pending_why = reason
        target[t] = new
    return (position, target, active, e_bar[:k], e_px[:k], x_bar[:k], x_px[:k], dirs[:k], why[:k],
            codes[:k] if code_next is not None else codes)


@njit(cache=True)
def simulate_rule_nb(bars, le, lx, se, sx, rules, r):
    """One strategy's 1-D signals under rule row ``r`` of ``rules``: ``simulate_nb``'s one-entry case.

    >>> from research.bars import Bars
    >>> px, z = np.array([10.0, 11.0, 12.0, 13.0]), np.zeros(4, np.int64)
    >>> rules = RuleArrays(np.zeros(2), np.zeros(2), np.zeros(2), np.array([0, 1]), np.zeros(2, bool),
    ...                    np.ones(2, bool))  # row 1: a time stop of 1 bar
    >>> le, no = np.array([1, 0, 0, 0], bool), np.zeros(4, bool)
    >>> simulate_rule_nb(Bars(px, px, px, px, px, z, z, z), le, no, no, no, rules, 1)[0]
    array([0, 1, 0, 0], dtype=int8)
    """
    n = le.shape[0]
    one = RuleArrays(rules.stop_loss[r:r + 1], rules.take_profit[r:r + 1], rules.trailing_stop[r:r + 1],
                     rules.time_stop[r:r + 1], rules.flat_at_close[r:r + 1], rules.allow_short[r:r + 1])
    signals = (le.reshape((1, n)), lx.reshape((1, n)), se.reshape((1, n)), sx.reshape((1, n)))
    return simulate_nb(bars, None, signals, one)
