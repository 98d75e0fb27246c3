"""Numba kernels behind research/signals/rotation.py: relative strength and the rotation's target weights.

One set of kernels, two callers: ``research.signals.rotation.signals`` (and through it
``research.baskets.weights``, which the live bridge and parity trade) runs ``relative_strength_nb``,
``rs_order_nb`` and ``ranked_weights_nb`` (``rotation_weights_nb``); the rotation sweep
(research/sweep/rotation.py) runs the same three, the first two once per lookback and
``ranked_weights_nb`` per combination inside its parallel kernel. So the weights a sweep scores
are the weights the live runner trades.

Every kernel is causal: row t depends on rows 0..t only. The definition (warm-up, schedule, ties)
is the docstring of research/signals/rotation.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def relative_strength_nb(closes: np.ndarray, bench: np.ndarray, n: int) -> np.ndarray:
    """RS[t, i] = (closes[t, i] / closes[t-n, i]) / (bench[t] / bench[t-n]) - 1 (NaN if undefined).

    Undefined: t < n, or any of the four prices missing or not positive.

    >>> closes = np.array([[10.0, 10.0], [11.0, 9.0], [12.0, np.nan]])
    >>> relative_strength_nb(closes, np.array([100.0, 100.0, 110.0]), 1).round(6)
    array([[      nan,       nan],
           [ 0.1     , -0.1     ],
           [-0.008264,       nan]])
    """
    t_max, m = closes.shape
    rs = np.full((t_max, m), np.nan)
    for t in range(n, t_max):
        b0 = bench[t - n]
        b1 = bench[t]
        if not (b0 > 0.0 and b1 > 0.0 and np.isfinite(b0) and np.isfinite(b1)):
            continue
        rb = b1 / b0
        for i in range(m):
            c0 = closes[t - n, i]
            c1 = closes[t, i]
            if c0 > 0.0 and c1 > 0.0 and np.isfinite(c0) and np.isfinite(c1):
                rs[t, i] = (c1 / c0) / rb - 1.0
    return rs


@njit(cache=True)
def rs_order_nb(rs: np.ndarray):
    """Per bar, the columns of finite RS ranked both ways, ties to the lower column; and how many are finite.

    Returns (desc (n, m) int32, asc (n, m) int32, valid (n,) int64): desc[t, :valid[t]] from the
    strongest down, asc[t, :valid[t]] from the weakest up; the rest of each row is -1. A ranking
    depends on the lookback only, so a sweep computes it once for every rebalance / top_k / short.

    >>> desc, asc, valid = rs_order_nb(np.array([[0.1, np.nan, -0.2, 0.1]]))
    >>> desc, asc, valid
    (array([[ 0,  3,  2, -1]], dtype=int32), array([[ 2,  0,  3, -1]], dtype=int32), array([3]))
    """
    n, m = rs.shape
    desc = np.full((n, m), -1, np.int32)
    asc = np.full((n, m), -1, np.int32)
    valid = np.zeros(n, np.int64)
    for t in range(n):
        v = 0
        for i in range(m):  # insertion sorts, stable: an equal value goes after the lower columns
            x = rs[t, i]
            if not np.isfinite(x):
                continue
            j = v
            while j > 0 and rs[t, desc[t, j - 1]] < x:
                desc[t, j] = desc[t, j - 1]
                j -= 1
            desc[t, j] = i
            j = v
            while j > 0 and rs[t, asc[t, j - 1]] > x:
                asc[t, j] = asc[t, j - 1]
                j -= 1
            asc[t, j] = i
            v += 1
        valid[t] = v
    return desc, asc, valid


@njit(cache=True)
def ranked_weights_nb(desc: np.ndarray, asc: np.ndarray, valid: np.ndarray, every: int, k: int,
                      allow_short: bool):
    """``rotation_weights_nb`` from the rankings of ``rs_order_nb``: what the sweep runs per combination.

    >>> desc, asc, valid = rs_order_nb(np.array([[np.nan, np.nan], [0.1, -0.1], [-0.1, 0.1]]))
    >>> w, reb = ranked_weights_nb(desc, asc, valid, 1, 1, True)
    >>> w
    array([[ 0.,  0.],
           [ 1., -1.],
           [-1.,  1.]])
    """
    n, m = desc.shape
    w = np.zeros((n, m))
    reb = np.zeros(n, np.bool_)
    start = -1
    for t in range(n):
        if start < 0 and valid[t] > 0:
            start = t
        if start >= 0 and (t - start) % every == 0:
            reb[t] = True
            v = valid[t]
            n_side = min(k, v // 2) if allow_short else min(k, v)
            for j in range(n_side):  # the strongest n_side, ties to the lower column
                w[t, desc[t, j]] = 1.0 / k
            if allow_short:
                got = 0
                j = 0
                while got < n_side:  # the weakest n_side not held long, ties to the lower column
                    i = asc[t, j]
                    j += 1
                    if w[t, i] == 0.0:
                        w[t, i] = -1.0 / k
                        got += 1
        elif start >= 0:
            for i in range(m):
                w[t, i] = w[t - 1, i]
    return w, reb


@njit(cache=True)
def rotation_weights_nb(rs: np.ndarray, every: int, k: int, allow_short: bool):
    """Top-k (and bottom-k) weights at every ``every``-th bar from the first finite RS, held between.

    Returns (weights (n, m) float64, rebalance (n,) bool). Long-only: the top min(k, v) of the v
    finite RS get +1/k; with ``allow_short`` the top and bottom min(k, v // 2) get +1/k and -1/k.

    >>> rs = np.array([[np.nan, np.nan, np.nan], [0.1, -0.1, 0.0], [0.0, 0.0, 0.2], [0.0, 0.0, 0.0]])
    >>> w, reb = rotation_weights_nb(rs, 2, 1, True)
    >>> w  # long the strongest, short the weakest at bars 1 and 3 (ties: the lower column); held at 2
    array([[ 0.,  0.,  0.],
           [ 1., -1.,  0.],
           [ 1., -1.,  0.],
           [ 1., -1.,  0.]])
    >>> reb
    array([False,  True, False,  True])
    """
    desc, asc, valid = rs_order_nb(rs)
    return ranked_weights_nb(desc, asc, valid, every, k, allow_short)
