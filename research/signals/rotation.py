"""rotation: hold the assets that are strongest against a benchmark, rebalanced on a fixed schedule.

Definition (closes: n_bars x n_assets, aligned with the benchmark; L = lookback, R = rebalance):
* RS[t, i] = (close[t, i] / close[t-L, i]) / (bench[t] / bench[t-L]) - 1; NaN when any of the four
  prices is missing or not positive, and for t < L.
* t0 = the first bar with at least one finite RS. Rebalance bars are t0, t0 + R, t0 + 2R, ... (fixed
  by the data up to t0 only, so a live runner and a backtest agree on the schedule).
* at a rebalance bar, with v assets of finite RS: the top min(k, v) by RS get +1/k (k = top_k); with
  ``short`` the top and the bottom min(k, v // 2) get +1/k and -1/k (disjoint sets). Slots that no
  asset fills stay in cash, so long weights sum to <= 1 and short weights to >= -1. A rebalance with
  no finite RS goes flat. Ties go to the lower column index, on both sides. NaN RS is never selected.
* between rebalances the weights are held unchanged (an asset whose data goes missing mid-period is
  dropped at the next rebalance). Before t0 every weight is 0.
weights[t] is the target decided at bar t's close, held from t+1's open (research/exits.py).
``signals`` takes a closes matrix and a benchmark, ``signals(closes, bench, p) -> RotationSignals``,
unlike the single-symbol ``(Bars, Params) -> Signals`` of base.Strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from .base import Strategy, StrategyKind


@dataclass(frozen=True, slots=True)
class Rotation:
    lookback: int = 5
    rebalance: int = 5  # bars between rebalances
    top_k: int = 3
    short: bool = False

    def __post_init__(self) -> None:
        for name in ("lookback", "rebalance", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"rotation {name} must be >= 1, got {getattr(self, name)}")


GRID = {"lookback": (2, 3, 5, 8, 10), "rebalance": (1, 3, 5, 7, 10), "top_k": (1, 2, 3, 4, 5)}


class RotationSignals(NamedTuple):
    """Target weights per bar and asset, the relative strength behind them, the rebalance bars."""

    weights: np.ndarray  # float64 (n_bars, n_assets): decided at t's close, held from t+1's open
    rs: np.ndarray  # float64 (n_bars, n_assets)
    rebalance: np.ndarray  # bool (n_bars,): True where the weights were recomputed


@njit(cache=True)
def relative_strength_nb(closes: np.ndarray, bench: np.ndarray, n: int) -> np.ndarray:
    """RS[t, i] = (closes[t, i] / closes[t-n, i]) / (bench[t] / bench[t-n]) - 1 (NaN if undefined)."""
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
def _pick_nb(row: np.ndarray, taken: np.ndarray, highest: bool) -> int:
    """Index of the highest (lowest) finite, untaken value; the lower index wins ties; -1 if none."""
    best = -1
    for i in range(row.shape[0]):
        if taken[i] or not np.isfinite(row[i]):
            continue
        if best < 0 or (row[i] > row[best] if highest else row[i] < row[best]):
            best = i
    return best


@njit(cache=True)
def rotation_weights_nb(rs: np.ndarray, every: int, k: int, allow_short: bool):
    """Top-k (and bottom-k) weights at every ``every``-th bar from the first finite RS, held between."""
    t_max, m = rs.shape
    w = np.zeros((t_max, m))
    reb = np.zeros(t_max, np.bool_)
    start = -1
    for t in range(t_max):
        if start < 0:
            for i in range(m):
                if np.isfinite(rs[t, i]):
                    start = t
                    break
        if start >= 0 and (t - start) % every == 0:
            reb[t] = True
            v = 0
            for i in range(m):
                if np.isfinite(rs[t, i]):
                    v += 1
            n_side = min(k, v // 2) if allow_short else min(k, v)
            taken = np.zeros(m, np.bool_)
            for _ in range(n_side):
                i = _pick_nb(rs[t], taken, True)
                taken[i] = True
                w[t, i] = 1.0 / k
            if allow_short:
                for _ in range(n_side):
                    i = _pick_nb(rs[t], taken, False)
                    taken[i] = True
                    w[t, i] = -1.0 / k
        elif start >= 0:
            w[t] = w[t - 1]
    return w, reb


def signals(closes: np.ndarray, bench: np.ndarray, p: Rotation) -> RotationSignals:
    """Relative-strength rotation weights (see the module docstring)."""
    c = np.ascontiguousarray(closes, dtype=np.float64)
    b = np.ascontiguousarray(bench, dtype=np.float64)
    if c.ndim != 2 or b.ndim != 1 or b.shape[0] != c.shape[0]:
        raise ValueError(f"rotation needs closes (n_bars, n_assets) and bench (n_bars,) aligned, got "
                         f"{c.shape} and {b.shape}")
    rs = relative_strength_nb(c, b, p.lookback)
    w, reb = rotation_weights_nb(rs, p.rebalance, p.top_k, p.short)
    return RotationSignals(w, rs, reb)


STRATEGY = Strategy("rotation", Rotation, GRID, signals, kind=StrategyKind.BASKET)
