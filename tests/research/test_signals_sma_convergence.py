"""sma_convergence (Velez) on a hand-computed fixture: pullback, resumption, exit below the slow MA."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from research.bars import Bars
from research.signals import sma_convergence
from research.signals.sma_convergence import SmaConvergence


def daily(close, high, low) -> Bars:
    c = np.asarray(close, dtype=np.float64)
    n = len(c)
    return Bars(c.copy(), np.asarray(high, float), np.asarray(low, float), c, np.full(n, 100.0),
                np.arange(n, dtype=np.int64), np.zeros(n, np.int64), np.full(n, 10**9, np.int64))


def on(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


# fast = 2, slow = 4, converge_pct = 5% for 2 bars, slope over 2 bars, touch_tol 0, window 2.
# Every |f - s| / s below is < 1%, so from t = 4 (second bar with both MAs) the MAs are converged.
#  t   close  high   low    f=SMA2  s=SMA4   notes
#  3   103    103.5  102.5  102.5   101.5    first s; converged for 1 bar only
#  4   104    104.5  103.8  103.5   102.5    low 103.8 > f: no pullback
#  5   103    104    102    103.5   103.0    low 102 <= f 103.5 while converged: PULLBACK
#  6   105    105.5  104.5  104     103.75   close > f, s, high_5 104; s rising (> s_4); pb at 5 -> LONG ENTRY
#  7   105.4  105.9  105.6  105.2   104.35   close 105.4 < high_6 105.5: no entry
#  8   102    105    101.8  103.7   103.85   close < s -> LONG EXIT; low <= f: PULLBACK
#  9   104.5  104.8  103.5  103.25  104.225  close 104.5 < high_8 105: no entry
# 10   105.5  105.8  105.0  105     104.35   close > high_9 104.8, pb at 8 (2 bars ago) -> LONG ENTRY
CLOSE = [100, 101, 102, 103, 104, 103, 105, 105.4, 102, 104.5, 105.5]
HIGH = [100.5, 101.5, 102.5, 103.5, 104.5, 104, 105.5, 105.9, 105, 104.8, 105.8]
LOW = [99.5, 100.5, 101.5, 102.5, 103.8, 102, 104.5, 105.6, 101.8, 103.5, 105.0]
P = SmaConvergence(fast=2, slow=4, converge_pct=0.05, converge_bars=2, slope_bars=2, touch_tol=0.0,
                   pullback_window=2, short=True)


def test_hand_fixture() -> None:
    sig = sma_convergence.signals(daily(CLOSE, HIGH, LOW), P)
    assert on(sig.long_entry) == [6, 10]
    assert on(sig.long_exit) == [8]  # close 103 == s at t = 5 is not below
    assert on(sig.short_entry) == []  # the slow MA rises throughout
    assert on(sig.short_exit) == [3, 4, 6, 7, 9, 10]  # close > s


def test_pullback_window_expires() -> None:
    sig = sma_convergence.signals(daily(CLOSE, HIGH, LOW), replace(P, pullback_window=1))
    assert on(sig.long_entry) == [6]  # the pullback at 8 is 2 bars before t = 10


def test_no_pullback_counts_without_convergence() -> None:
    sig = sma_convergence.signals(daily(CLOSE, HIGH, LOW), replace(P, converge_pct=0.001))
    assert on(sig.long_entry) == []
    assert on(sig.long_exit) == [8]


def test_mirrored_prices_trade_short_and_trend_filter_blocks_longs() -> None:
    # p -> 210 - p: the slow MA now falls, so the same setups are short ones and no long fires
    sig = sma_convergence.signals(daily(210 - np.asarray(CLOSE, float), 210 - np.asarray(LOW, float),
                                        210 - np.asarray(HIGH, float)), P)
    assert on(sig.short_entry) == [6, 10] and on(sig.short_exit) == [8]
    assert on(sig.long_entry) == []


def test_long_only_by_default() -> None:
    sig = sma_convergence.signals(daily(CLOSE, HIGH, LOW), replace(P, short=False))
    assert not sig.short_entry.any() and not sig.short_exit.any()


def test_defaults_are_the_velez_averages() -> None:
    p = SmaConvergence()
    assert (p.fast, p.slow) == (20, 200)
    assert sma_convergence.warmup(p) == 199


@pytest.mark.parametrize("kw, msg", [({"fast": 200}, "fast < slow"), ({"converge_pct": 0.0}, "converge_pct"),
                                     ({"pullback_window": 0}, "pullback_window"),
                                     ({"touch_tol": -0.1}, "touch_tol")])
def test_invalid_params(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        SmaConvergence(**kw)
