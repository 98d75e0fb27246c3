"""Pure numba kernels behind the signals and regimes: numpy in, numpy out, no pandas, no state.

Every kernel is causal: output[t] depends on inputs[0..t] only (prefix-invariance tests prove it).
Warm-up values are NaN (or False for boolean kernels). Rolling statistics use running sums, so
each costs O(n) whatever the window.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def rolling_mean_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average over the last n values (NaN for the first n-1).

    The running sum is rebuilt from scratch every n bars, so rounding cannot accumulate over
    millions of bars (still O(n) overall, and still a function of the window's prefix only).

    >>> rolling_mean_nb(np.array([1.0, 2.0, 3.0, 4.0]), 2)
    array([nan, 1.5, 2.5, 3.5])
    """
    if n < 1:
        raise ValueError("window must be >= 1")
    out = np.full(x.shape[0], np.nan)
    s = 0.0
    for t in range(x.shape[0]):
        if t >= n and t % n == 0:
            s = 0.0
            for k in range(t - n + 1, t + 1):
                s += x[k]
        else:
            s += x[t]
            if t >= n:
                s -= x[t - n]
        if t >= n - 1:
            out[t] = s / n
    return out


@njit(cache=True)
def ema_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average, alpha = 2/(n+1), seeded with the SMA of the first n values.

    >>> ema_nb(np.array([1.0, 2.0, 3.0, 4.0]), 3)  # seed (1+2+3)/3 = 2, then 0.5 * 4 + 0.5 * 2
    array([nan, nan,  2.,  3.])
    """
    if n < 1:
        raise ValueError("window must be >= 1")
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] < n:
        return out
    alpha = 2.0 / (n + 1.0)
    s = 0.0
    for t in range(n):
        s += x[t]
    prev = s / n
    out[n - 1] = prev
    for t in range(n, x.shape[0]):
        prev = alpha * x[t] + (1.0 - alpha) * prev
        out[t] = prev
    return out


@njit(cache=True)
def rolling_std_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation over the last n values (NaN for the first n-1).

    Sums are taken around a shift (the first value of the current block) and rebuilt every n
    bars, so a flat window gives exactly 0 rather than rounding noise from a trend before it.

    >>> rolling_std_nb(np.array([1.0, 3.0, 5.0, 5.0]), 2)
    array([nan,  1.,  1.,  0.])
    """
    if n < 1:
        raise ValueError("window must be >= 1")
    out = np.full(x.shape[0], np.nan)
    s = 0.0
    s2 = 0.0
    c = x[0] if x.shape[0] > 0 else 0.0
    for t in range(x.shape[0]):
        if t >= n and t % n == 0:
            c = x[t]
            s = 0.0
            s2 = 0.0
            for k in range(t - n + 1, t + 1):
                d = x[k] - c
                s += d
                s2 += d * d
        else:
            d = x[t] - c
            s += d
            s2 += d * d
            if t >= n:
                d = x[t - n] - c
                s -= d
                s2 -= d * d
        if t >= n - 1:
            m = s / n
            var = s2 / n - m * m
            # rounding noise of the shifted sums is about n * eps * mean(d^2): below that, flat
            out[t] = np.sqrt(var) if var > 8.0 * n * 2.220446049250313e-16 * (s2 / n) else 0.0
    return out


@njit(cache=True)
def rolling_max_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Maximum of the last n values including t (NaN for the first n-1); O(n) monotonic deque.

    >>> rolling_max_nb(np.array([1.0, 3.0, 2.0, 0.0]), 2)
    array([nan,  3.,  3.,  2.])
    """
    if n < 1:
        raise ValueError("window must be >= 1")
    m = x.shape[0]
    out = np.full(m, np.nan)
    dq = np.empty(m, np.int64)  # indices of candidate maxima, values decreasing
    head = 0
    tail = 0
    for t in range(m):
        while tail > head and x[dq[tail - 1]] <= x[t]:
            tail -= 1
        dq[tail] = t
        tail += 1
        if dq[head] <= t - n:
            head += 1
        if t >= n - 1:
            out[t] = x[dq[head]]
    return out


@njit(cache=True)
def rolling_min_nb(x: np.ndarray, n: int) -> np.ndarray:
    """Minimum of the last n values including t (NaN for the first n-1).

    >>> rolling_min_nb(np.array([1.0, 3.0, 2.0, 0.0]), 2)
    array([nan,  1.,  2.,  0.])
    """
    return -rolling_max_nb(-x, n)


@njit(cache=True)
def shift_nb(x: np.ndarray, k: int) -> np.ndarray:
    """x delayed by k bars (NaN for the first k).

    >>> shift_nb(np.array([1.0, 2.0, 3.0]), 1)
    array([nan,  1.,  2.])
    """
    if k < 0:
        raise ValueError("shift must be >= 0 (a negative shift reads the future)")
    out = np.full(x.shape[0], np.nan)
    for t in range(k, x.shape[0]):
        out[t] = x[t - k]
    return out


@njit(cache=True)
def crossed_above_nb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True at t when a goes from <= b at t-1 to > b at t (False where either is NaN).

    >>> crossed_above_nb(np.array([1.0, 2.0, 3.0, 1.0]), np.full(4, 2.0))  # 2 is not above 2; 3 is
    array([False, False,  True, False])
    """
    out = np.zeros(a.shape[0], dtype=np.bool_)
    for t in range(1, a.shape[0]):
        if a[t] > b[t] and a[t - 1] <= b[t - 1]:
            out[t] = True
    return out


@njit(cache=True)
def _rsi_value(gain: float, loss: float) -> float:
    """RSI from average gain and loss; 50 when prices did not move at all."""
    if loss == 0.0:
        return 50.0 if gain == 0.0 else 100.0
    return 100.0 - 100.0 / (1.0 + gain / loss)


@njit(cache=True)
def rsi_nb(close: np.ndarray, n: int) -> np.ndarray:
    """Wilder's RSI(n): first value at t = n (SMA seed of gains/losses), then Wilder smoothing.

    >>> rsi_nb(np.array([1.0, 2.0, 3.0, 2.0, 3.0]), 2)  # gains/losses 1/0, then 0.5/0.5, then 0.75/0.25
    array([ nan,  nan, 100.,  50.,  75.])
    """
    if n < 1:
        raise ValueError("window must be >= 1")
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] <= n:
        return out
    gain = 0.0
    loss = 0.0
    for t in range(1, n + 1):
        d = close[t] - close[t - 1]
        if d > 0:
            gain += d
        else:
            loss -= d
    gain /= n
    loss /= n
    out[n] = _rsi_value(gain, loss)
    for t in range(n + 1, close.shape[0]):
        d = close[t] - close[t - 1]
        gain = (gain * (n - 1) + (d if d > 0 else 0.0)) / n
        loss = (loss * (n - 1) + (-d if d < 0 else 0.0)) / n
        out[t] = _rsi_value(gain, loss)
    return out


@njit(cache=True)
def session_vwap_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
                    session: np.ndarray) -> np.ndarray:
    """Cumulative VWAP of the typical price (h+l+c)/3 since the session's first bar.

    >>> px, vol = np.array([10.0, 20.0, 30.0]), np.array([1.0, 3.0, 1.0])
    >>> session_vwap_nb(px, px, px, vol, np.array([0, 0, 1]))  # (10 + 3 * 20) / 4; a new session
    array([10. , 17.5, 30. ])
    """
    out = np.full(close.shape[0], np.nan)
    pv = 0.0
    vv = 0.0
    for t in range(close.shape[0]):
        if t == 0 or session[t] != session[t - 1]:
            pv = 0.0
            vv = 0.0
        tp = (high[t] + low[t] + close[t]) / 3.0
        pv += tp * volume[t]
        vv += volume[t]
        out[t] = pv / vv if vv > 0.0 else tp
    return out


@njit(cache=True)
def rolling_zscore_nb(x: np.ndarray, n: int) -> np.ndarray:
    """(x - rolling mean) / rolling std over the last n values (NaN in warm-up or zero std).

    >>> rolling_zscore_nb(np.array([1.0, 3.0, 5.0, 5.0]), 2)  # a flat window has no z-score
    array([nan,  1.,  1., nan])
    """
    if n < 1:
        raise ValueError("window must be >= 1")
    m = rolling_mean_nb(x, n)
    s = rolling_std_nb(x, n)
    out = np.full(x.shape[0], np.nan)
    for t in range(x.shape[0]):
        if s[t] > 0.0:
            out[t] = (x[t] - m[t]) / s[t]
    return out
