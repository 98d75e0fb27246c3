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
unlike the single-symbol ``(Bars, Params) -> Signals`` of base.Strategy. Its kernels
(research/kernels/rotation.py) are the ones the rotation sweep (research/sweep/rotation.py) runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..kernels.rotation import relative_strength_nb, rotation_weights_nb
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
