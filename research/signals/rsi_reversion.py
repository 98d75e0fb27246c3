"""rsi_reversion: buy oversold, sell overbought, on Wilder's RSI.

Definition, with r = RSI(close, n) (Wilder, ``research.kernels.indicators.rsi_nb``; first value at t = n):
* long entry at t: r crosses below ``lower``: r_t < lower and r_{t-1} >= lower (the bar it first
  goes below; both values must exist, so not at t = n).
* long exit at t: r_t > exit_level.
* short (when ``short``), the mirror: entry when r crosses above ``upper`` (r_t > upper and
  r_{t-1} <= upper); exit when r_t < exit_level.
One ``exit_level`` serves both sides (the classic 50). Requires 0 < lower < exit_level < upper < 100,
so no bar is both an entry and an exit of one side. Exits exist from t = n, entries from t = n + 1.
Because entries are crossings, a stretch where ``rsi_nb`` is pinned (it reads 100 while the
average loss is exactly 0, e.g. a flat start) gives no entry until r actually crosses a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..bars import Bars
from ..kernels.indicators import crossed_above_nb, rsi_nb
from .base import Signals, Strategy


@dataclass(frozen=True, slots=True)
class RsiReversion:
    n: int = 14
    lower: float = 30.0
    upper: float = 70.0
    exit_level: float = 50.0
    short: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"rsi_reversion n must be >= 1 bar, got {self.n}")
        if not (0.0 < self.lower < self.exit_level < self.upper < 100.0):
            raise ValueError(
                "rsi_reversion needs 0 < lower < exit_level < upper < 100, got "
                f"lower={self.lower}, exit_level={self.exit_level}, upper={self.upper}"
            )


GRID = {
    "n": (7, 10, 14, 21, 28),
    "lower": (20.0, 25.0, 30.0, 35.0, 40.0),
    "upper": (60.0, 65.0, 70.0, 75.0, 80.0),
    "exit_level": (45.0, 50.0, 55.0),
}


def warmup(p: RsiReversion) -> int:
    """Index of the first bar that can carry any signal (an exit; entries start one bar later)."""
    return p.n


def signals(bars: Bars, p: RsiReversion) -> Signals:
    """Threshold-crossing entries and mid-level exits (see the module docstring)."""
    r = rsi_nb(bars.close, p.n)
    lo = np.full(r.shape[0], p.lower)
    le = crossed_above_nb(lo, r)  # lower > r_t and lower <= r_{t-1}; NaN -> False
    lx = r > p.exit_level
    if p.short:
        hi = np.full(r.shape[0], p.upper)
        se = crossed_above_nb(r, hi)
        sx = r < p.exit_level
        return Signals(le, lx, se, sx)
    none = np.zeros(len(bars), dtype=np.bool_)
    return Signals(le, lx, none, none.copy())


def params_to_array(p: RsiReversion) -> np.ndarray:
    """The params as the float64 row ``signals_nb`` reads: n, lower, upper, exit_level, short (0/1)."""
    return np.array([p.n, p.lower, p.upper, p.exit_level, p.short], dtype=np.float64)


@njit(cache=True)
def signals_nb(open_, high, low, close, volume, session, bar_in_session, bars_left, p):
    """``signals`` for the sweep's fused kernel: p = ``params_to_array(params)``; same output."""
    n = close.shape[0]
    r = rsi_nb(close, np.int64(p[0]))
    le = crossed_above_nb(np.full(n, p[1]), r)
    lx = r > p[3]
    if p[4] != 0.0:
        return le, lx, crossed_above_nb(r, np.full(n, p[2])), r < p[3]
    return le, lx, np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)


STRATEGY = Strategy("rsi_reversion", RsiReversion, GRID, signals,
                    params_to_array=params_to_array, signals_nb=signals_nb)
