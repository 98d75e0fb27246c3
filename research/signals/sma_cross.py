"""sma_cross: fast / slow moving-average crossover.

Definition: ma_f = MA(close, fast), ma_s = MA(close, slow), MA = SMA or EMA (``kind``).
* long entry at t: ma_f crosses above ma_s at t (ma_f[t] > ma_s[t] and ma_f[t-1] <= ma_s[t-1]).
* long exit at t: ma_f crosses below ma_s at t.
* short entry / exit (when ``short``): the mirror images (cross below / cross above).
No signal before both averages exist (t >= slow). Requires fast < slow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..bars import Bars
from ..kernels.indicators import crossed_above_nb, ema_nb, rolling_mean_nb
from .base import Signals, Strategy


@dataclass(frozen=True, slots=True)
class SmaCross:
    fast: int = 20
    slow: int = 50
    kind: str = "sma"  # "sma" or "ema"
    short: bool = False

    def __post_init__(self) -> None:
        if not (1 <= self.fast < self.slow):
            raise ValueError(f"sma_cross needs 1 <= fast < slow, got fast={self.fast}, slow={self.slow}")
        if self.kind not in ("sma", "ema"):
            raise ValueError(f"sma_cross kind must be 'sma' or 'ema', got {self.kind!r}")


GRID = {"fast": tuple(range(5, 55, 5)), "slow": tuple(range(20, 220, 10))}


def signals(bars: Bars, p: SmaCross) -> Signals:
    """Crossover entries and exits (see the module docstring)."""
    ma = ema_nb if p.kind == "ema" else rolling_mean_nb
    f, s = ma(bars.close, p.fast), ma(bars.close, p.slow)
    up, down = crossed_above_nb(f, s), crossed_above_nb(s, f)
    if p.short:
        return Signals(up, down, down.copy(), up.copy())
    none = np.zeros(len(bars), dtype=np.bool_)
    return Signals(up, down, none, none.copy())


def params_to_array(p: SmaCross) -> np.ndarray:
    """The params as the float64 row ``signals_nb`` reads: fast, slow, ema (0/1), short (0/1)."""
    return np.array([p.fast, p.slow, p.kind == "ema", p.short], dtype=np.float64)


@njit(cache=True)
def sma_crosses_nb(close, fast, slow):
    """Crosses of SMA(fast) over / under SMA(slow) in one pass, without the average arrays.

    Equal to ``crossed_above_nb`` of two ``rolling_mean_nb``: the same running sums, rebuilt from
    scratch at the same bars (t = k * window), and the same divisions.
    """
    n = close.shape[0]
    up = np.zeros(n, dtype=np.bool_)
    down = np.zeros(n, dtype=np.bool_)
    sf = 0.0
    ss = 0.0
    rf = fast  # next bar whose running sum is rebuilt
    rs = slow
    fp = np.nan  # the averages at t-1 (NaN until both exist)
    sp = np.nan
    for t in range(n):
        if t == rf:
            rf += fast
            sf = 0.0
            for k in range(t - fast + 1, t + 1):
                sf += close[k]
        else:
            sf += close[t]
            if t >= fast:
                sf -= close[t - fast]
        if t == rs:
            rs += slow
            ss = 0.0
            for k in range(t - slow + 1, t + 1):
                ss += close[k]
        else:
            ss += close[t]
            if t >= slow:
                ss -= close[t - slow]
        if t >= slow - 1:
            f = sf / fast
            s = ss / slow
            up[t] = (f > s) & (fp <= sp)  # bitwise: no branch per bar
            down[t] = (s > f) & (sp <= fp)
            fp = f
            sp = s
    return up, down


@njit(cache=True)
def signals_nb(open_, high, low, close, volume, session, bar_in_session, bars_left, p):
    """``signals`` for the sweep's fused kernel: p = ``params_to_array(params)``; same output."""
    fast = np.int64(p[0])
    slow = np.int64(p[1])
    if p[2] != 0.0:
        up, down = crosses_nb(ema_nb(close, fast), ema_nb(close, slow))
    else:
        up, down = sma_crosses_nb(close, fast, slow)
    return _sides(up, down, p[3] != 0.0)


# Indicator reuse for sweeps: each distinct average is computed once per chunk of params
# (research.sweep.engine), and signals_from_nb only compares two rows of that table.
def indicator_keys(p: SmaCross) -> tuple[tuple[float, float], ...]:
    """The series ``signals_from_nb`` reads, as ``indicator_nb`` keys: (window, ema 0/1) x 2."""
    ema = float(p.kind == "ema")
    return ((float(p.fast), ema), (float(p.slow), ema))


@njit(cache=True)
def indicator_nb(open_, high, low, close, volume, session, bar_in_session, bars_left, key):
    """The moving average named by key = (window, ema 0/1)."""
    if key[1] != 0.0:
        return ema_nb(close, np.int64(key[0]))
    return rolling_mean_nb(close, np.int64(key[0]))


@njit(cache=True)
def signals_from_nb(table, rows, p):
    """``signals`` from the fast and slow averages at table[rows[0]] and table[rows[1]]."""
    up, down = crosses_nb(table[rows[0]], table[rows[1]])
    return _sides(up, down, p[3] != 0.0)


@njit(cache=True)
def crosses_nb(f, s):
    """(crossed_above_nb(f, s), crossed_above_nb(s, f)) in one pass."""
    n = f.shape[0]
    up = np.zeros(n, dtype=np.bool_)
    down = np.zeros(n, dtype=np.bool_)
    for t in range(1, n):
        up[t] = (f[t] > s[t]) & (f[t - 1] <= s[t - 1])
        down[t] = (s[t] > f[t]) & (s[t - 1] <= f[t - 1])
    return up, down


@njit(cache=True)
def _sides(up, down, short):
    if short:
        return up, down, down.copy(), up.copy()
    return up, down, np.zeros(up.shape[0], dtype=np.bool_), np.zeros(up.shape[0], dtype=np.bool_)


STRATEGY = Strategy("sma_cross", SmaCross, GRID, signals,
                    params_to_array=params_to_array, signals_nb=signals_nb,
                    indicator_keys=indicator_keys, indicator_nb=indicator_nb, signals_from_nb=signals_from_nb)
