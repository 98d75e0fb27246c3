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

from ..bars import Bars
from ..nb import crossed_above_nb, ema_nb, rolling_mean_nb
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


STRATEGY = Strategy("sma_cross", SmaCross, GRID, signals)
