"""breakout on a hand-computed fixture: N-bar high on volume, Donchian exits, the short mirror."""

from __future__ import annotations

import numpy as np
import pytest

from research.bars import Bars
from research.signals import breakout
from research.signals.breakout import Breakout


def daily(close, high, low, volume) -> Bars:
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    f = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    return Bars(c.copy(), f(high), f(low), c, f(volume), np.arange(n, dtype=np.int64),
                np.zeros(n, np.int64), np.full(n, 10**9, np.int64))


def on(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


# n = 3, m = 3, k = 1.5, exit_n = 2; hh/ll over the 3 bars before t, exit channel over the 2 before.
#  t  close  high  low   vol   notes
#  0  10     10.5  9.5   100
#  1  10     10.5  9.5   100
#  2  10     10.5  9.5   100
#  3  11     11    10    100   11 > hh 10.5 but vol 100 < 1.5*100; short exit: 11 > max(10.5, 10.5)
#  4  12     12    11    200   12 > hh 11, vol 200 >= 1.5*100 -> LONG ENTRY; short exit: 12 > 11
#  5  12.5   12.6  12    100   12.5 > hh 12 but vol 100 < 1.5*133.3; short exit: 12.5 > 12
#  6  11.5   12    11.4  100   exit channel min(11, 12) = 11: no exit
#  7  10.9   11.5  10.8  100   10.9 < min(12, 11.4) -> LONG EXIT
#  8  9      9.5   8.9   300   9 < min(10.8 ..) -> long exit; 9 < ll 10.8, vol 300 >= 150 -> SHORT ENTRY
#  9  12     12.1  11.9  100   12 > max(11.5, 9.5) -> SHORT EXIT; not > hh 12 (strict): no entry
CLOSE = [10, 10, 10, 11, 12, 12.5, 11.5, 10.9, 9, 12]
HIGH = [10.5, 10.5, 10.5, 11, 12, 12.6, 12, 11.5, 9.5, 12.1]
LOW = [9.5, 9.5, 9.5, 10, 11, 12, 11.4, 10.8, 8.9, 11.9]
VOL = [100, 100, 100, 100, 200, 100, 100, 100, 300, 100]
P = Breakout(n=3, k=1.5, m=3, exit_n=2, short=True)


def test_hand_fixture() -> None:
    sig = breakout.signals(daily(CLOSE, HIGH, LOW, VOL), P)
    assert on(sig.long_entry) == [4]
    assert on(sig.long_exit) == [7, 8]
    assert on(sig.short_entry) == [8]
    assert on(sig.short_exit) == [3, 4, 5, 9]


def test_volume_multiple_gates_entries() -> None:
    sig = breakout.signals(daily(CLOSE, HIGH, LOW, VOL), Breakout(n=3, k=0.0, m=3, exit_n=2))
    assert on(sig.long_entry) == [3, 4, 5]  # every close above the prior 3-bar high


def test_long_only_has_no_short_signals() -> None:
    sig = breakout.signals(daily(CLOSE, HIGH, LOW, VOL), Breakout(n=3, k=1.5, m=3, exit_n=2))
    assert not sig.short_entry.any() and not sig.short_exit.any()


def test_mirrored_prices_swap_sides() -> None:
    # p -> 30 - p turns highs into lows: the long signals become the short ones
    mh, ml = 30 - np.asarray(LOW), 30 - np.asarray(HIGH)
    sig = breakout.signals(daily(30 - np.asarray(CLOSE), mh, ml, VOL), P)
    ref = breakout.signals(daily(CLOSE, HIGH, LOW, VOL), P)
    assert on(sig.short_entry) == on(ref.long_entry) and on(sig.short_exit) == on(ref.long_exit)
    assert on(sig.long_entry) == on(ref.short_entry) and on(sig.long_exit) == on(ref.short_exit)


@pytest.mark.parametrize("kw, msg", [({"n": 0}, "n must be"), ({"k": -1.0}, "k"), ({"exit_n": 0}, "exit_n")])
def test_invalid_params(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        Breakout(**kw)
