"""sma_convergence: the "Velez" setup - trade the resumption after a pullback while the 20 and 200
SMAs converge.

Definition, with f = SMA(close, fast), s = SMA(close, slow), gap_t = |f_t - s_t| / s_t:
* converged_t: gap_j <= converge_pct for every j in [t - converge_bars + 1, t].
* trend_t: sign(s_t - s_{t - slope_bars}) (+1 rising, -1 falling, 0 flat or unknown).
* long pullback at j: converged_j and low_j <= f_j * (1 + touch_tol) (a low touching the fast MA,
  or reaching within touch_tol above it, or going below it).
* long entry at t: trend_t = +1, close_t > max(f_t, s_t), close_t > high_{t-1}, and a long pullback
  at some j in [t - pullback_window, t - 1] (strictly before the resumption bar).
* long exit at t: close_t < s_t.
* short (when ``short``), the mirror: trend_t = -1; pullback high_j >= f_j * (1 - touch_tol) while
  converged; entry close_t < min(f_t, s_t) and close_t < low_{t-1} after a pullback in the window;
  exit close_t > s_t.
Entry needs close above *both* averages so that an entry bar is never also an exit bar (when f < s,
closing above f alone could still be below s). Exits exist from t = slow - 1 (s defined); entries
from t = slow - 1 + max(slope_bars, converge_bars) (see ``warmup``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..bars import Bars
from ..kernels.indicators import rolling_mean_nb
from .base import Signals, Strategy


@dataclass(frozen=True, slots=True)
class SmaConvergence:
    fast: int = 20
    slow: int = 200
    converge_pct: float = 0.02
    converge_bars: int = 5
    slope_bars: int = 20
    touch_tol: float = 0.001
    pullback_window: int = 5
    short: bool = False

    def __post_init__(self) -> None:
        if not (1 <= self.fast < self.slow):
            raise ValueError(f"sma_convergence needs 1 <= fast < slow, got fast={self.fast}, "
                             f"slow={self.slow}")
        if not (0.0 < self.converge_pct < 1.0):
            raise ValueError(f"sma_convergence converge_pct must be in (0, 1), got {self.converge_pct}")
        for name in ("converge_bars", "slope_bars", "pullback_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"sma_convergence {name} must be >= 1 bar, got {getattr(self, name)}")
        if not (0.0 <= self.touch_tol < 1.0):
            raise ValueError(f"sma_convergence touch_tol must be in [0, 1), got {self.touch_tol}")


GRID = {
    "fast": (10, 15, 20, 25, 30),
    "slow": (150, 175, 200, 225, 250),
    "converge_pct": (0.01, 0.015, 0.02, 0.025, 0.03),
    "pullback_window": (3, 5, 8),
}


def warmup(p: SmaConvergence) -> int:
    """Index of the first bar that can carry any signal (an exit; entries start later)."""
    return p.slow - 1


@njit(cache=True)
def sma_convergence_nb(high, low, close, f, s, converge_pct, converge_bars, slope_bars, touch_tol,
                       pullback_window, direction):
    """Entries and exits of one direction (+1 long, -1 short) of the Velez setup; see the module."""
    n = close.shape[0]
    entry = np.zeros(n, dtype=np.bool_)
    exit_ = np.zeros(n, dtype=np.bool_)
    run = 0  # consecutive converged bars ending at t
    last_pb = -1  # most recent pullback bar
    for t in range(n):
        if not (s[t] == s[t] and f[t] == f[t]):  # warm-up (NaN)
            continue
        exit_[t] = close[t] < s[t] if direction == 1 else close[t] > s[t]
        run = run + 1 if abs(f[t] - s[t]) / s[t] <= converge_pct else 0
        converged = run >= converge_bars
        if last_pb >= 0 and t - last_pb <= pullback_window and t - slope_bars >= 0:
            s0 = s[t - slope_bars]
            if s0 == s0:
                if direction == 1:
                    entry[t] = (s[t] > s0 and close[t] > f[t] and close[t] > s[t]
                                and close[t] > high[t - 1])
                else:
                    entry[t] = (s[t] < s0 and close[t] < f[t] and close[t] < s[t]
                                and close[t] < low[t - 1])
        # the pullback at t counts for entries from t + 1 on
        if converged:
            if direction == 1 and low[t] <= f[t] * (1.0 + touch_tol):
                last_pb = t
            elif direction == -1 and high[t] >= f[t] * (1.0 - touch_tol):
                last_pb = t
    return entry, exit_


def signals(bars: Bars, p: SmaConvergence) -> Signals:
    """Pullback-and-resumption entries while the averages converge (see the module docstring)."""
    f, s = rolling_mean_nb(bars.close, p.fast), rolling_mean_nb(bars.close, p.slow)
    args = (bars.high, bars.low, bars.close, f, s, p.converge_pct, p.converge_bars, p.slope_bars,
            p.touch_tol, p.pullback_window)
    le, lx = sma_convergence_nb(*args, 1)
    if p.short:
        se, sx = sma_convergence_nb(*args, -1)
        return Signals(le, lx, se, sx)
    none = np.zeros(len(bars), dtype=np.bool_)
    return Signals(le, lx, none, none.copy())


def params_to_array(p: SmaConvergence) -> np.ndarray:
    """The params as the float64 row ``signals_nb`` reads (field order; short as 0/1)."""
    return np.array([p.fast, p.slow, p.converge_pct, p.converge_bars, p.slope_bars, p.touch_tol,
                     p.pullback_window, p.short], dtype=np.float64)


@njit(cache=True)
def signals_nb(open_, high, low, close, volume, session, bar_in_session, bars_left, p):
    """``signals`` for the sweep's fused kernel: p = ``params_to_array(params)``; same output."""
    f = rolling_mean_nb(close, np.int64(p[0]))
    s = rolling_mean_nb(close, np.int64(p[1]))
    cb, sb, pw = np.int64(p[3]), np.int64(p[4]), np.int64(p[6])
    le, lx = sma_convergence_nb(high, low, close, f, s, p[2], cb, sb, p[5], pw, 1)
    if p[7] != 0.0:
        se, sx = sma_convergence_nb(high, low, close, f, s, p[2], cb, sb, p[5], pw, -1)
        return le, lx, se, sx
    return le, lx, np.zeros(close.shape[0], dtype=np.bool_), np.zeros(close.shape[0], dtype=np.bool_)


STRATEGY = Strategy("sma_convergence", SmaConvergence, GRID, signals,
                    params_to_array=params_to_array, signals_nb=signals_nb)
