"""breakout: N-bar high breakout on volume, Donchian-style exit.

Definition (every window ends at t-1: the level is what stood *before* bar t):
* hh_t = max(high[t-n .. t-1]), ll_t = min(low[t-n .. t-1]),
  vm_t = mean(volume[t-m .. t-1]), volume confirmed: volume_t >= k * vm_t.
* long entry at t: close_t > hh_t and volume confirmed.
* long exit at t: close_t < min(low[t-exit_n .. t-1]).
* short (when ``short``), the mirror: entry close_t < ll_t with volume confirmed; exit
  close_t > max(high[t-exit_n .. t-1]).
Entries exist from t = max(n, m), exits from t = exit_n. An entry bar is never an exit bar of the
same side: close_t > hh_t >= high_{t-1} >= low_{t-1} >= the exit channel's low.
The strategy is timeframe-agnostic (swing on daily bars); stops, trailing stops and flat-by-15:30
belong to ``research.exits.ExitRules``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..bars import Bars
from ..kernels.indicators import rolling_max_nb, rolling_mean_nb, rolling_min_nb, shift_nb
from .base import Signals, Strategy


@dataclass(frozen=True, slots=True)
class Breakout:
    n: int = 20
    k: float = 1.5
    m: int = 20
    exit_n: int = 10
    short: bool = False

    def __post_init__(self) -> None:
        for name in ("n", "m", "exit_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"breakout {name} must be >= 1 bar, got {getattr(self, name)}")
        if not (self.k >= 0.0):
            raise ValueError(f"breakout k (volume multiple) must be >= 0, got {self.k}")


GRID = {
    "n": (10, 15, 20, 25, 30),
    "k": (1.0, 1.25, 1.5, 1.75, 2.0),
    "m": (10, 20, 30),
    "exit_n": (5, 10, 15),
}


def warmup(p: Breakout) -> int:
    """Index of the first bar that can carry any signal."""
    return min(max(p.n, p.m), p.exit_n)


def _before(x: np.ndarray) -> np.ndarray:
    """The rolling statistic as of the previous bar."""
    return shift_nb(x, 1)


def signals(bars: Bars, p: Breakout) -> Signals:
    """Breakout entries on volume and channel exits (see the module docstring)."""
    vol_ok = bars.volume >= p.k * _before(rolling_mean_nb(bars.volume, p.m))  # NaN -> False
    le = (bars.close > _before(rolling_max_nb(bars.high, p.n))) & vol_ok
    lx = bars.close < _before(rolling_min_nb(bars.low, p.exit_n))
    if p.short:
        se = (bars.close < _before(rolling_min_nb(bars.low, p.n))) & vol_ok
        sx = bars.close > _before(rolling_max_nb(bars.high, p.exit_n))
        return Signals(le, lx, se, sx)
    none = np.zeros(len(bars), dtype=np.bool_)
    return Signals(le, lx, none, none.copy())


def params_to_array(p: Breakout) -> np.ndarray:
    """The params as the float64 row ``signals_nb`` reads: n, k, m, exit_n, short (0/1)."""
    return np.array([p.n, p.k, p.m, p.exit_n, p.short], dtype=np.float64)


@njit(cache=True)
def signals_nb(open_, high, low, close, volume, session, bar_in_session, bars_left, p):
    """``signals`` for the sweep's fused kernel: p = ``params_to_array(params)``; same output."""
    n, m, exit_n = np.int64(p[0]), np.int64(p[2]), np.int64(p[3])
    vol_ok = volume >= p[1] * shift_nb(rolling_mean_nb(volume, m), 1)
    le = (close > shift_nb(rolling_max_nb(high, n), 1)) & vol_ok
    lx = close < shift_nb(rolling_min_nb(low, exit_n), 1)
    if p[4] != 0.0:
        se = (close < shift_nb(rolling_min_nb(low, n), 1)) & vol_ok
        return le, lx, se, close > shift_nb(rolling_max_nb(high, exit_n), 1)
    return le, lx, np.zeros(close.shape[0], dtype=np.bool_), np.zeros(close.shape[0], dtype=np.bool_)


STRATEGY = Strategy("breakout", Breakout, GRID, signals,
                    params_to_array=params_to_array, signals_nb=signals_nb)
