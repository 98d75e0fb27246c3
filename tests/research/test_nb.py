"""The causal kernels against pandas, and their prefix invariance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from research.kernels import indicators as nb

X = 100 + np.cumsum(np.random.default_rng(1).normal(0, 1, 3000))


@pytest.mark.parametrize("n", [1, 2, 7, 50, 400])
def test_rolling_kernels_match_pandas(n):
    s = pd.Series(X)
    np.testing.assert_allclose(nb.rolling_mean_nb(X, n), s.rolling(n).mean(), rtol=1e-12)
    np.testing.assert_allclose(nb.rolling_std_nb(X, n), s.rolling(n).std(ddof=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(nb.rolling_max_nb(X, n), s.rolling(n).max())
    np.testing.assert_array_equal(nb.rolling_min_nb(X, n), s.rolling(n).min())
    if n > 1:
        np.testing.assert_allclose(nb.ema_nb(X, n)[n - 1:],
                                   pd.Series(np.r_[X[:n].mean(), X[n:]]).ewm(span=n, adjust=False).mean(), rtol=1e-12)


def test_flat_window_after_a_trend_has_zero_std():
    y = np.r_[np.linspace(1, 123, 500), np.full(300, 123.0)]
    assert (nb.rolling_std_nb(y, 50)[-200:] == 0).all()
    assert np.isnan(nb.rolling_zscore_nb(y, 50)[-200:]).all()


def test_rsi_by_hand():
    close = np.array([1.0, 2, 1, 2, 3])
    # n=2: first value at t=2 from gains (1,0)/2 and losses (0,1)/2 -> RSI 50; then Wilder
    r = nb.rsi_nb(close, 2)
    assert np.isnan(r[:2]).all() and r[2] == 50.0
    g, l_ = (0.5 + 1) / 2, (0.5 + 0) / 2
    assert r[3] == pytest.approx(100 - 100 / (1 + g / l_))


def test_crossed_above_by_hand():
    a = np.array([1.0, 2, 3, 2, 4])
    b = np.array([2.0, 2, 2, 2, 2])
    assert nb.crossed_above_nb(a, b).tolist() == [False, False, True, False, True]


@pytest.mark.parametrize("kernel", [nb.rolling_mean_nb, nb.rolling_std_nb, nb.rolling_max_nb, nb.ema_nb,
                                    nb.rsi_nb, nb.rolling_zscore_nb])
def test_prefix_invariance(kernel):
    full = kernel(X, 30)
    for t in range(1, len(X), 97):
        np.testing.assert_array_equal(kernel(X[:t], 30), full[:t])


def test_bad_windows_raise_instead_of_reading_out_of_bounds():
    with pytest.raises(ValueError, match="window"):
        nb.rolling_max_nb(X, 0)
    with pytest.raises(ValueError, match="future"):
        nb.shift_nb(X, -1)


def test_rsi_of_flat_prices_is_50():
    assert (nb.rsi_nb(np.full(30, 10.0), 14)[14:] == 50.0).all()


def test_small_real_spread_at_a_large_level_is_not_called_flat():
    v = 1e7 + np.random.default_rng(3).normal(0, 2.2, 500)
    np.testing.assert_allclose(nb.rolling_std_nb(v, 50)[49:], pd.Series(v).rolling(50).std(ddof=0)[49:], rtol=1e-6)


def test_flat_at_close_on_daily_bars_is_refused():
    from research.bars import Bars
    from research.exits import ExitRules, simulate_exits
    from research.signals import no_signals

    n = 5
    bars = Bars(*(np.ones(n) for _ in range(5)), np.arange(n), np.zeros(n, np.int64), np.zeros(n, np.int64))
    with pytest.raises(ValueError, match="intraday"):
        simulate_exits(bars, no_signals(n), ExitRules(flat_at_close=True))
