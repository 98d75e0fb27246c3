"""sma_cross on hand-computed fixtures: SMA and EMA modes, long and short."""

from __future__ import annotations

import numpy as np
import pytest

from research.bars import Bars
from research.signals import sma_cross
from research.signals.sma_cross import SmaCross


def daily(close: list[float]) -> Bars:
    """Daily-style bars whose open/high/low equal the close (one session per bar)."""
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    return Bars(c, c, c, c, np.full(n, 100.0), np.arange(n, dtype=np.int64), np.zeros(n, np.int64),
                np.full(n, 10**9, np.int64))


def on(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


# t:      0  1  2  3  4  5  6  7  8  9
CLOSE = [4, 4, 4, 4, 8, 2, 2, 2, 6, 6]
# SMA2:   -  4  4  4  6  5  2  2  4  6
# SMA4:   -  -  -  4  5 4.5 4 3.5 3  4    -> above at 4 (4<=4 then 6>5) and 8 (2<=3.5 then 4>3); below at 6
# EMA2 (alpha 2/3, seed 4 at t1): 4 4 4 6.667 3.556 2.519 2.173 4.724 5.575
# EMA4 (alpha 0.4, seed 4 at t3):       4 5.6   4.16  3.296 2.778 4.067 4.840
#   -> above at 4 and 8; below at 5 (3.556 < 4.16), one bar before the SMA cross


def test_sma_mode_long_only() -> None:
    sig = sma_cross.signals(daily(CLOSE), SmaCross(fast=2, slow=4))
    assert on(sig.long_entry) == [4, 8]
    assert on(sig.long_exit) == [6]
    assert not sig.short_entry.any() and not sig.short_exit.any()


def test_ema_mode_crosses_one_bar_earlier() -> None:
    sig = sma_cross.signals(daily(CLOSE), SmaCross(fast=2, slow=4, kind="ema"))
    assert on(sig.long_entry) == [4, 8]
    assert on(sig.long_exit) == [5]


def test_short_mirrors_long() -> None:
    sig = sma_cross.signals(daily(CLOSE), SmaCross(fast=2, slow=4, short=True))
    assert on(sig.short_entry) == [6]
    assert on(sig.short_exit) == [4, 8]


def test_no_signal_before_slow_window() -> None:
    # t = 3 is the first bar with both averages; a cross needs the bar before too
    sig = sma_cross.signals(daily([5, 1, 1, 1, 9, 9]), SmaCross(fast=1, slow=4, short=True))
    assert on(sig.long_entry) == [4]
    assert all(not a[:4].any() for a in sig)


@pytest.mark.parametrize("kw, msg", [({"fast": 5, "slow": 5}, "fast < slow"), ({"kind": "wma"}, "kind")])
def test_invalid_params(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        SmaCross(**kw)
