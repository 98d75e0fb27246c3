"""Pure numba kernels behind the market regimes (research/regimes.py): numpy in, numpy out.

Every kernel is causal: output[t] depends on inputs[0..t] only. Warm-up values are NaN for the
measures and ``WARMUP`` (-1) for the codes. The regime *of a session* is built from these values at
the previous bar's close by the pandas layer; the kernels know nothing of sessions.

No kernel here calls a kernel of another module (the SMA comes from research/kernels/indicators.py
through the pandas layer): numba's on-disk cache is invalidated by changes to a function's own file
only, so a cached caller would keep running a stale copy of an edited callee, and labels would
depend on the state of ``__pycache__``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class TrendCodes(NamedTuple):
    WARMUP: int = -1
    RANGE: int = 0
    UP: int = 1
    DOWN: int = 2


class VolCodes(NamedTuple):
    WARMUP: int = -1
    LOW: int = 0
    NORMAL: int = 1
    HIGH: int = 2
    EXTREME: int = 3


TrendCode = TrendCodes()  # numba reads these NamedTuple instances as constants
VolCode = VolCodes()


@njit(cache=True)
def relative_slope_nb(x: np.ndarray, bars: int) -> np.ndarray:
    """Per-bar relative change of x over the last ``bars`` bars: (x[t] / x[t-bars] - 1) / bars.

    >>> relative_slope_nb(np.array([1.0, 2.0, 2.0, 4.0]), 2)  # (2 / 1 - 1) / 2, (4 / 2 - 1) / 2
    array([nan, nan, 0.5, 0.5])
    """
    out = np.full(x.shape[0], np.nan)
    for t in range(bars, x.shape[0]):
        a, b = x[t - bars], x[t]
        if a > 0.0 and not np.isnan(b):  # NaN a fails a > 0
            out[t] = (b / a - 1.0) / bars
    return out


@njit(cache=True)
def efficiency_ratio_nb(close: np.ndarray, n: int) -> np.ndarray:
    """Kaufman's efficiency ratio: |close[t] - close[t-n]| / sum of |bar-to-bar changes| over n bars.

    1 for a straight line, near 0 for a chop; 0 when the price did not move at all.

    >>> efficiency_ratio_nb(np.array([1.0, 2.0, 3.0, 2.0, 4.0]), 2)  # 2 / 2, 0 / 2, 1 / 3
    array([       nan,        nan, 1.        , 0.        , 0.33333333])
    """
    out = np.full(close.shape[0], np.nan)
    for t in range(n, close.shape[0]):
        path = 0.0
        for k in range(t - n + 1, t + 1):
            path += abs(close[k] - close[k - 1])
        out[t] = abs(close[t] - close[t - n]) / path if path > 0.0 else 0.0
    return out


@njit(cache=True)
def realized_vol_nb(close: np.ndarray, n: int, periods_per_year: float) -> np.ndarray:
    """Annualized sample std (ddof=1) of the last n log returns; first value at t = n.

    Two passes per window rather than running sums: a calm series has tiny variances, where
    running sums leave rounding noise that would decide its percentile rank.

    >>> close = np.exp(np.array([0.0, 0.1, 0.0, 0.1]))  # log returns +0.1, -0.1, +0.1
    >>> np.round(realized_vol_nb(close, 2, 50.0), 9)  # sqrt(0.02 / 1 * 50)
    array([nan, nan,  1.,  1.])
    """
    m = close.shape[0]
    out = np.full(m, np.nan)
    if n < 2:
        return out
    r = np.full(m, np.nan)
    for t in range(1, m):
        r[t] = np.log(close[t] / close[t - 1])
    for t in range(n, m):
        mean = 0.0
        for k in range(t - n + 1, t + 1):
            mean += r[k]
        mean /= n
        ss = 0.0
        for k in range(t - n + 1, t + 1):
            ss += (r[k] - mean) ** 2
        out[t] = np.sqrt(ss / (n - 1) * periods_per_year)
    return out


@njit(cache=True)
def trailing_percentile_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Rank of x[t] among the n values before it (x[t-n..t-1]), in [0, 1]; ties count half.

    NaN unless x[t] and all n previous values exist: the history never includes t itself.

    >>> trailing_percentile_nb(np.array([1.0, 2.0, 3.0, 2.0]), 2)  # 3 above 1 and 2; 2 ties 2, below 3
    array([ nan,  nan, 1.  , 0.25])
    """
    out = np.full(x.shape[0], np.nan)
    for t in range(n, x.shape[0]):
        v = x[t]
        if np.isnan(v):
            continue
        below = 0.0
        ok = True
        for k in range(t - n, t):
            h = x[k]
            if np.isnan(h):
                ok = False
                break
            if h < v:
                below += 1.0
            elif h == v:
                below += 0.5
        if ok:
            out[t] = below / n
    return out


@njit(cache=True)
def trend_codes_nb(slope: np.ndarray, er: np.ndarray, slope_min: float, er_min: float) -> np.ndarray:
    """UP if slope > slope_min and er >= er_min, DOWN if slope < -slope_min and er >= er_min, else RANGE.

    >>> slope, er = np.array([np.nan, 0.01, -0.01, 0.01]), np.array([0.5, 0.5, 0.5, 0.1])
    >>> trend_codes_nb(slope, er, 0.001, 0.3)  # warm-up, up, down, and a rise too choppy to count
    array([-1,  1,  2,  0], dtype=int8)
    """
    out = np.full(slope.shape[0], TrendCode.WARMUP, dtype=np.int8)
    for t in range(slope.shape[0]):
        s, e = slope[t], er[t]
        if np.isnan(s) or np.isnan(e):
            continue
        if e >= er_min and s > slope_min:
            out[t] = TrendCode.UP
        elif e >= er_min and s < -slope_min:
            out[t] = TrendCode.DOWN
        else:
            out[t] = TrendCode.RANGE
    return out


@njit(cache=True)
def vol_codes_nb(pct: np.ndarray, low: float, high: float, extreme: float) -> np.ndarray:
    """LOW below ``low``, NORMAL below ``high``, HIGH below ``extreme``, else EXTREME.

    >>> vol_codes_nb(np.array([np.nan, 0.1, 0.5, 0.8, 0.99]), 0.25, 0.75, 0.95)
    array([-1,  0,  1,  2,  3], dtype=int8)
    """
    out = np.full(pct.shape[0], VolCode.WARMUP, dtype=np.int8)
    for t in range(pct.shape[0]):
        p = pct[t]
        if np.isnan(p):
            continue
        if p < low:
            out[t] = VolCode.LOW
        elif p < high:
            out[t] = VolCode.NORMAL
        elif p < extreme:
            out[t] = VolCode.HIGH
        else:
            out[t] = VolCode.EXTREME
    return out
