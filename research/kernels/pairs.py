"""Numba kernels behind research/signals/pairs.py: numpy in, numpy out, causal, no state.

Every kernel is causal: output[t] depends on inputs[0..t] only. Warm-up values are NaN (False for
boolean outputs). A non-finite input poisons exactly the windows that contain it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# A window whose variance (in squared log units) is below this is numerically flat: its statistics
# are rounding noise, so slopes, correlations and z-scores there are NaN. 1e-14 is a standard
# deviation of 1e-7 in log price (0.00001 %), far below any traded spread or price move.
MIN_VAR = 1e-14


@njit(cache=True)
def rolling_moments_nb(y: np.ndarray, x: np.ndarray, n: int):
    """Means, variances and covariance of y and x over the last n bars (population, 1/n).

    Running sums, O(n) overall. To keep them exact enough on long series, the sums are rebuilt
    from scratch every n bars around a fresh centre (the current values): that bounds the rounding
    drift of add-and-subtract and keeps the sums of squares small. The rebuild schedule depends on t
    only, so a prefix of the data gives bit-identical outputs. Returns (my, mx, vy, vx, cxy).

    >>> my, mx, vy, vx, cxy = rolling_moments_nb(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]), 2)
    >>> my, vx, cxy
    (array([nan, 1.5, 2.5]), array([nan,  1.,  1.]), array([nan, 0.5, 0.5]))
    """
    m = y.shape[0]
    my = np.full(m, np.nan)
    mx = np.full(m, np.nan)
    vy = np.full(m, np.nan)
    vx = np.full(m, np.nan)
    cxy = np.full(m, np.nan)
    cy = 0.0
    cx = 0.0
    sy = 0.0
    sx = 0.0
    syy = 0.0
    sxx = 0.0
    sxy = 0.0
    bad = 0
    for t in range(m):
        lo = t - n + 1
        if t % n == 0:
            if np.isfinite(y[t]) and np.isfinite(x[t]):
                cy = y[t]
                cx = x[t]
            sy = 0.0
            sx = 0.0
            syy = 0.0
            sxx = 0.0
            sxy = 0.0
            bad = 0
            for s in range(max(lo, 0), t + 1):
                if np.isfinite(y[s]) and np.isfinite(x[s]):
                    b = y[s] - cy
                    a = x[s] - cx
                    sy += b
                    sx += a
                    syy += b * b
                    sxx += a * a
                    sxy += a * b
                else:
                    bad += 1
        else:
            if np.isfinite(y[t]) and np.isfinite(x[t]):
                b = y[t] - cy
                a = x[t] - cx
                sy += b
                sx += a
                syy += b * b
                sxx += a * a
                sxy += a * b
            else:
                bad += 1
            if lo >= 1:
                s = lo - 1
                if np.isfinite(y[s]) and np.isfinite(x[s]):
                    b = y[s] - cy
                    a = x[s] - cx
                    sy -= b
                    sx -= a
                    syy -= b * b
                    sxx -= a * a
                    sxy -= a * b
                else:
                    bad -= 1
        if lo >= 0 and bad == 0:
            ay = sy / n
            ax = sx / n
            my[t] = ay + cy
            mx[t] = ax + cx
            vy[t] = max(syy / n - ay * ay, 0.0)
            vx[t] = max(sxx / n - ax * ax, 0.0)
            cxy[t] = sxy / n - ax * ay
    return my, mx, vy, vx, cxy


@njit(cache=True)
def rolling_ols_nb(y: np.ndarray, x: np.ndarray, n: int):
    """Rolling OLS y = alpha + beta * x over the last n bars, and the correlation of y and x.

    NaN in warm-up, where the window holds a non-finite value, or where x (for alpha, beta) or
    either series (for corr) is numerically flat. Returns (alpha, beta, corr).

    >>> alpha, beta, corr = rolling_ols_nb(np.array([3.0, 5.0, 7.0, 9.0]), np.array([1.0, 2.0, 3.0, 4.0]), 3)
    >>> alpha, beta, corr  # y = 1 + 2 x exactly
    (array([nan, nan,  1.,  1.]), array([nan, nan,  2.,  2.]), array([nan, nan,  1.,  1.]))
    """
    my, mx, vy, vx, cxy = rolling_moments_nb(y, x, n)
    m = y.shape[0]
    alpha = np.full(m, np.nan)
    beta = np.full(m, np.nan)
    corr = np.full(m, np.nan)
    for t in range(m):
        if vx[t] > MIN_VAR:
            beta[t] = cxy[t] / vx[t]
            alpha[t] = my[t] - beta[t] * mx[t]
            if vy[t] > MIN_VAR:
                corr[t] = min(max(cxy[t] / np.sqrt(vx[t] * vy[t]), -1.0), 1.0)
    return alpha, beta, corr


@njit(cache=True)
def pair_spread_nb(ly: np.ndarray, lx: np.ndarray, n: int):
    """Hedge ratio, out-of-sample spread and its rolling z-score (see pairs.py for the definition).

    spread[t] = ly[t] - beta[t-1] * lx[t] - alpha[t-1]: bar t is scored by the fit over bars
    t-n..t-1, which does not contain it. z[t] = (spread[t] - mean) / std over spread[t-n+1..t].
    Returns (beta, corr, spread, z); beta[t] and corr[t] are the fit over bars t-n+1..t.

    >>> beta, corr, spread, z = pair_spread_nb(np.array([3.0, 5.0, 7.0, 9.0, 12.0]),
    ...                                        np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 3)
    >>> spread  # bar 4 scored by the fit y = 1 + 2 x over bars 1..3: 12 - (1 + 2 * 5)
    array([nan, nan, nan,  0.,  1.])
    """
    alpha, beta, corr = rolling_ols_nb(ly, lx, n)
    m = ly.shape[0]
    spread = np.full(m, np.nan)
    for t in range(1, m):
        spread[t] = ly[t] - beta[t - 1] * lx[t] - alpha[t - 1]
    ms, _, vs, _, _ = rolling_moments_nb(spread, spread, n)
    z = np.full(m, np.nan)
    for t in range(m):
        if vs[t] > MIN_VAR:
            z[t] = (spread[t] - ms[t]) / np.sqrt(vs[t])
    return beta, corr, spread, z


@njit(cache=True)
def pair_signals_nb(z: np.ndarray, corr: np.ndarray, entry_z: float, exit_z: float, stop_z: float,
                    max_hold: int, min_corr: float, allow_short: bool):
    """The pairs trade plan as a state machine over z (see pairs.py); decisions at each bar's close.

    Returns (long_entry, long_exit, short_entry, short_exit) as bool arrays.

    >>> z = np.array([0.0, -1.5, -0.5, 0.1, 1.5])  # entry_z 1, exit_z 0.2, stop_z 3
    >>> le, lx, se, sx = pair_signals_nb(z, np.ones(5), 1.0, 0.2, 3.0, 0, 0.5, True)
    >>> np.flatnonzero(le), np.flatnonzero(lx), np.flatnonzero(se)  # long below -1, out above -0.2
    (array([1]), array([3]), array([4]))
    """
    m = z.shape[0]
    le = np.zeros(m, np.bool_)
    lx = np.zeros(m, np.bool_)
    se = np.zeros(m, np.bool_)
    sx = np.zeros(m, np.bool_)
    pos = 0  # the position decided so far, held from the next open
    held = 0  # bars held, the first bar after the entry decision counts as 1 (as in exits.py)
    lock = 0  # +1: long entries locked after a failed long (stop / time stop); -1 for shorts
    for t in range(m):
        zt = z[t]
        ok = np.isfinite(zt)
        if lock == 1 and ok and zt >= -exit_z:
            lock = 0
        elif lock == -1 and ok and zt <= exit_z:
            lock = 0
        if pos == 1:
            held += 1
            if ok and zt <= -stop_z:
                lx[t] = True
                lock = 1
            elif ok and zt >= -exit_z:
                lx[t] = True
            elif max_hold > 0 and held >= max_hold:
                lx[t] = True
                lock = 1
            if lx[t]:
                pos = 0
        elif pos == -1:
            held += 1
            if ok and zt >= stop_z:
                sx[t] = True
                lock = -1
            elif ok and zt <= exit_z:
                sx[t] = True
            elif max_hold > 0 and held >= max_hold:
                sx[t] = True
                lock = -1
            if sx[t]:
                pos = 0
        if pos == 0 and ok and corr[t] >= min_corr:
            if -stop_z < zt <= -entry_z and lock != 1:
                le[t] = True
                pos = 1
                held = 0
            elif allow_short and stop_z > zt >= entry_z and lock != -1:
                se[t] = True
                pos = -1
                held = 0
    return le, lx, se, sx


@njit(cache=True)
def pair_weights_nb(le: np.ndarray, lx: np.ndarray, se: np.ndarray, sx: np.ndarray, beta: np.ndarray):
    """(n, 2) target weights of (y, x) from the pairs plan (research/baskets.py ``pair_weights``).

    While a spread s = +1/-1 is held, y gets s / (1 + |b|) and x -s * b / (1 + |b|), b the hedge
    ratio of the entry bar, frozen for the trade. An entry with a non-finite beta is skipped.

    >>> on, off = np.array([True, False, False]), np.zeros(3, np.bool_)
    >>> pair_weights_nb(on, np.array([False, False, True]), off, off, np.array([1.0, 3.0, 3.0]))
    array([[ 0.5, -0.5],
           [ 0.5, -0.5],
           [ 0. ,  0. ]])
    """
    n = le.shape[0]
    w = np.zeros((n, 2))
    s = 0
    b = np.nan
    for t in range(n):
        if (s > 0 and lx[t]) or (s < 0 and sx[t]):
            s = 0
        if s == 0 and (le[t] or se[t]) and np.isfinite(beta[t]):
            s = 1 if le[t] else -1
            b = beta[t]
        if s != 0:
            w[t, 0] = s / (1.0 + abs(b))
            w[t, 1] = -s * b / (1.0 + abs(b))
    return w


@njit(cache=True)
def effective_weights_nb(raw: np.ndarray, start: int):
    """What is traded of (n, m) ``raw`` weights: no entry before ``start``, no late entry, no flip in
    one order (research/baskets.py ``effective``: a leg whose sign changes goes flat first and takes
    the new side at the next decision, if still wanted).

    >>> effective_weights_nb(np.array([[0.5], [-0.5], [-0.5], [0.0]]), 0)[:, 0]  # flat first, then short
    array([ 0.5,  0. , -0.5,  0. ])
    """
    n, m = raw.shape
    w = np.zeros((n, m))
    pending = np.zeros(m, np.bool_)  # flattened for a flip: the new side may enter at the next bar
    for t in range(max(start, 0), n):
        for i in range(m):
            prev = w[t - 1, i] if t > 0 else 0.0
            want = raw[t, i]
            fresh = t == 0 or want != raw[t - 1, i] or pending[i]
            pending[i] = False
            if prev != 0.0 and want != 0.0 and (prev > 0) != (want > 0):
                pending[i] = True  # w[t, i] stays 0: flat first
            elif prev == 0.0 and want != 0.0 and not fresh:
                pass  # on already (warm-up) or missed: no late entry
            else:
                w[t, i] = want
    return w
