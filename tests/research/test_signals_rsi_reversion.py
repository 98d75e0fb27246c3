"""rsi_reversion on a hand-computed RSI(2) fixture."""

from __future__ import annotations

import numpy as np
import pytest

from research.bars import Bars
from research.signals import rsi_reversion
from research.signals.rsi_reversion import RsiReversion


def daily(close) -> Bars:
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    return Bars(c, c, c, c, np.full(n, 100.0), np.arange(n, dtype=np.int64), np.zeros(n, np.int64),
                np.full(n, 10**9, np.int64))


def on(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


# Wilder RSI(2): seed at t = 2 with the mean gain/loss of the first two moves, then
# avg = (avg * 1 + move) / 2.
#  t  close  move  avg gain  avg loss  RSI
#  2  12     +1    1         0         100
#  3  11     -1    0.5       0.5       50
#  4  10     -1    0.25      0.75      25      crosses below 30 -> LONG ENTRY
#  5  9      -1    0.125     0.875     12.5
#  6  10     +1    0.5625    0.4375    56.25
#  7  11     +1    0.78125   0.21875   78.125  crosses above 70 -> SHORT ENTRY
#  8  12     +1    0.890625  0.109375  89.0625
CLOSE = [10, 11, 12, 11, 10, 9, 10, 11, 12]
P = RsiReversion(n=2, short=True)


def test_hand_fixture() -> None:
    sig = rsi_reversion.signals(daily(CLOSE), P)
    assert on(sig.long_entry) == [4]  # not 5: it is already below
    assert on(sig.long_exit) == [2, 6, 7, 8]  # RSI > 50 (exactly 50 at t = 3 is not)
    assert on(sig.short_entry) == [7]  # not 2: no RSI at t = 1 to cross from
    assert on(sig.short_exit) == [4, 5]


def test_exit_level_moves_exits() -> None:
    sig = rsi_reversion.signals(daily(CLOSE), RsiReversion(n=2, exit_level=60.0))
    assert on(sig.long_exit) == [2, 7, 8]
    assert not sig.short_entry.any()


def test_mirrored_prices_swap_sides() -> None:
    # RSI(30 - p) = 100 - RSI(p): oversold becomes overbought
    sig = rsi_reversion.signals(daily(30 - np.asarray(CLOSE, float)), P)
    assert on(sig.short_entry) == [4] and on(sig.long_entry) == [7]
    assert on(sig.short_exit) == [2, 6, 7, 8] and on(sig.long_exit) == [4, 5]


@pytest.mark.parametrize("kw", [{"lower": 50.0}, {"upper": 40.0}, {"exit_level": 80.0}, {"lower": 0.0}])
def test_invalid_levels(kw: dict) -> None:
    with pytest.raises(ValueError, match="0 < lower < exit_level < upper < 100"):
        RsiReversion(**kw)


def test_invalid_period() -> None:
    with pytest.raises(ValueError, match="n must be"):
        RsiReversion(n=0)
