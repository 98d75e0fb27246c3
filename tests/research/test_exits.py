"""The fill convention and every exit rule, by hand, plus prefix invariance."""

from __future__ import annotations

import numpy as np
import pytest

from research.bars import Bars
from research.exits import ExitReason, ExitRules, simulate_exits
from research.signals import Signals


def make(o, h, l, c, bars_left=None) -> Bars:  # noqa: E741
    n = len(o)
    left = np.full(n, 1000, np.int64) if bars_left is None else np.asarray(bars_left, np.int64)
    return Bars(*(np.asarray(a, float) for a in (o, h, l, c)), np.ones(n), np.zeros(n, np.int64),
                np.arange(n, dtype=np.int64), left)


def sig(n, le=(), lx=(), se=(), sx=()) -> Signals:
    arrs = []
    for idx in (le, lx, se, sx):
        a = np.zeros(n, bool)
        a[list(idx)] = True
        arrs.append(a)
    return Signals(*arrs)


FLAT = make([10] * 8, [10.5] * 8, [9.5] * 8, [10] * 8)


def test_decision_at_close_fills_at_next_open():
    bars = make([10, 11, 12, 13, 14], [10.5, 11.5, 12.5, 13.5, 14.5], [9.5, 10.5, 11.5, 12.5, 13.5], [10, 11, 12, 13, 14])
    p = simulate_exits(bars, sig(5, le=[1], lx=[3]), ExitRules())
    assert p.position.tolist() == [0, 0, 1, 1, 0]
    assert p.target.tolist() == [0, 1, 1, 0, 0]
    assert (p.trades.entry_bar[0], p.trades.entry_price[0], p.trades.exit_bar[0], p.trades.exit_price[0]) == (2, 12, 4, 14)
    assert p.trades.reason[0] == ExitReason.SIGNAL


def test_stop_loss_fills_at_the_level_or_at_a_gap_open():
    # entry at bar 1 open 10; stop 5% -> 9.5; bar 2 low 9.4 touches it -> fills at 9.5
    bars = make([10, 10, 10, 10], [10.2, 10.2, 10.1, 10], [9.9, 9.8, 9.4, 9.9], [10, 10, 9.6, 10])
    p = simulate_exits(bars, sig(4, le=[0]), ExitRules(stop_loss=0.05))
    assert (p.trades.exit_bar[0], p.trades.exit_price[0], p.trades.reason[0]) == (2, 9.5, ExitReason.STOP_LOSS)
    # the same, but bar 2 opens at 9.0, below the stop: fills at the open
    gap = make([10, 10, 9.0, 9], [10.2, 10.2, 9.2, 9.5], [9.9, 9.8, 8.8, 8.9], [10, 10, 9.1, 9])
    p = simulate_exits(gap, sig(4, le=[0]), ExitRules(stop_loss=0.05))
    assert (p.trades.exit_bar[0], p.trades.exit_price[0]) == (2, 9.0)


def test_take_profit_and_stop_in_one_bar_counts_the_stop():
    bars = make([10, 10, 10], [10, 10.2, 11.5], [10, 9.9, 9.0], [10, 10, 10])
    p = simulate_exits(bars, sig(3, le=[0]), ExitRules(stop_loss=0.05, take_profit=0.10))
    assert (p.trades.exit_bar[0], p.trades.exit_price[0], p.trades.reason[0]) == (2, 9.5, ExitReason.STOP_LOSS)
    p = simulate_exits(bars, sig(3, le=[0]), ExitRules(take_profit=0.10))
    assert (p.trades.exit_price[0], p.trades.reason[0]) == (11.0, ExitReason.TAKE_PROFIT)


def test_the_open_comes_first_a_gap_beyond_the_target_takes_it_even_if_the_bar_then_hits_the_stop():
    # long from 10: stop 9.5, target 11; bar 2 opens at 11.4 (beyond the target) and later trades to 9.0
    bars = make([10, 10, 11.4, 10], [10, 10.2, 11.6, 10], [10, 9.9, 9.0, 10], [10, 10, 9.2, 10])
    p = simulate_exits(bars, sig(4, le=[0]), ExitRules(stop_loss=0.05, take_profit=0.10))
    assert (p.trades.exit_bar[0], p.trades.exit_price[0], p.trades.reason[0]) == (2, 11.4, ExitReason.TAKE_PROFIT)
    # short mirror: from 10, stop 10.5, target 9; bar 2 opens at 8.7 and later trades to 11
    bars = make([10, 10, 8.7, 10], [10, 10.1, 11.0, 10], [10, 9.9, 8.5, 10], [10, 10, 10.8, 10])
    p = simulate_exits(bars, sig(4, se=[0]), ExitRules(stop_loss=0.05, take_profit=0.10))
    assert (p.trades.exit_bar[0], p.trades.exit_price[0], p.trades.reason[0]) == (2, 8.7, ExitReason.TAKE_PROFIT)
    # a gap through the stop still takes the stop at the open
    bars = make([10, 10, 9.2, 10], [10, 10.2, 11.6, 10], [10, 9.9, 9.0, 10], [10, 10, 9.2, 10])
    p = simulate_exits(bars, sig(4, le=[0]), ExitRules(stop_loss=0.05, take_profit=0.10))
    assert (p.trades.exit_bar[0], p.trades.exit_price[0], p.trades.reason[0]) == (2, 9.2, ExitReason.STOP_LOSS)


def test_trailing_stop_trails_previous_highs_only():
    # entry bar 1 at 10; highs 12 (bar 1), 13 (bar 2); trail 10%: level for bar 3 = 13 * 0.9 = 11.7
    bars = make([10, 10, 12, 12.5, 12], [10, 12, 13, 12.6, 12.1], [10, 9.95, 11.8, 11.6, 11], [10, 11.9, 12.8, 12, 11.5])
    p = simulate_exits(bars, sig(5, le=[0]), ExitRules(trailing_stop=0.10))
    assert p.trades.exit_bar[0] == 3 and p.trades.exit_price[0] == pytest.approx(11.7)
    assert p.trades.reason[0] == ExitReason.TRAILING_STOP


def test_short_stop_and_target_mirror():
    bars = make([10, 10, 10], [10, 10.6, 10], [10, 9.9, 10], [10, 10, 10])
    p = simulate_exits(bars, sig(3, se=[0]), ExitRules(stop_loss=0.05))
    assert (p.trades.direction[0], p.trades.exit_price[0], p.trades.reason[0]) == (-1, 10.5, ExitReason.STOP_LOSS)
    p = simulate_exits(bars, sig(3, se=[0]), ExitRules(stop_loss=0.05, allow_short=False))
    assert len(p.trades.entry_bar) == 0


def test_time_stop_counts_the_entry_bar():
    p = simulate_exits(FLAT, sig(8, le=[0]), ExitRules(time_stop=3))
    # filled at bar 1; held bars 1, 2, 3 -> exit decided at bar 3's close, filled at bar 4's open
    assert (p.trades.entry_bar[0], p.trades.exit_bar[0], p.trades.reason[0]) == (1, 4, ExitReason.TIME_STOP)


def test_flat_at_close_exits_before_the_last_bar_and_blocks_late_entries():
    left = [3, 2, 1, 0, 3, 2, 1, 0]  # two sessions of four bars
    bars = make([10] * 8, [10.5] * 8, [9.5] * 8, [10] * 8, bars_left=left)
    p = simulate_exits(bars, sig(8, le=[0, 2, 6]), ExitRules(flat_at_close=True))
    assert p.position.tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    assert p.trades.exit_bar.tolist() == [3] and p.trades.reason.tolist() == [ExitReason.SESSION_END]


def test_reversal_and_conflicting_signals():
    p = simulate_exits(FLAT, sig(8, le=[0, 4], se=[2, 4]), ExitRules())
    # long from bar 1; short entry at bar 2 reverses at bar 3; bar 4 has both: ignored, stays short
    assert p.position.tolist() == [0, 1, 1, -1, -1, -1, -1, -1]
    assert p.trades.direction.tolist() == [1, -1] and p.trades.exit_bar.tolist() == [3, -1]


def test_open_trade_at_the_end_is_reported_open():
    p = simulate_exits(FLAT, sig(8, le=[5]), ExitRules())
    assert p.trades.exit_bar.tolist() == [-1] and np.isnan(p.trades.exit_price[0])


def test_prefix_invariance_on_real_bars():
    from data_lake.sources.sample import sample_bars
    from research.bars import bars_from_arrays
    from research.signals.sma_cross import STRATEGY, SmaCross

    f = sample_bars("MSFT")
    arrays = {"ts": f["ts"].to_numpy(dtype="datetime64[us]").view(np.int64),
              **{c: f[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}}
    bars = bars_from_arrays(arrays, "1Day")
    rules = ExitRules(stop_loss=0.03, take_profit=0.08, trailing_stop=0.05, time_stop=30)
    params = SmaCross(10, 30, short=True)
    full = simulate_exits(bars, STRATEGY.signals(bars, params), rules)
    for t in range(50, len(bars), 111):
        cut = bars.slice(t)
        part = simulate_exits(cut, STRATEGY.signals(cut, params), rules)
        assert np.array_equal(part.position, full.position[:t]) and np.array_equal(part.target, full.target[:t])
        closed = part.trades.exit_bar >= 0
        k = int(closed.sum())
        assert np.array_equal(part.trades.exit_price[closed], full.trades.exit_price[:k])


def test_levels_are_on_the_tick_a_sell_rounds_up_a_buy_down():
    from research.exits import stop_price, target_price, tick_nb

    rules = ExitRules(stop_loss=0.02, take_profit=0.03, trailing_stop=0.01)
    assert tick_nb(100 * (1 - 0.05), True) == 95.0  # float noise (95.00000000000001) is not a tick up
    assert stop_price(1, 100.37, 100.37, ExitRules(stop_loss=0.02)) == 98.37  # 98.3626 -> up
    assert stop_price(-1, 100.37, 100.37, ExitRules(stop_loss=0.02)) == 102.37  # 102.3774 -> down
    assert stop_price(1, 100.0, 103.0, rules) == 101.97  # the trailing level is the higher one
    assert target_price(1, 100.37, rules) == 103.39  # 103.3811 -> up
    assert tick_nb(0.123456, False) == 0.1234 and tick_nb(0.123456, True) == 0.1235
    assert stop_price(1, 100.0, 100.0, ExitRules()) is None and target_price(1, 100.0, ExitRules()) is None


def test_a_stop_fills_at_its_tick_level():
    # entry at 100.37; a 2% stop is 98.3626 unrounded, 98.37 on the tick: a low of 98.365 hits it
    o = np.array([100.0, 100.37, 99.0, 99.0])
    h = np.array([100.5, 100.5, 99.5, 99.5])
    low = np.array([99.5, 99.9, 98.365, 98.9])
    c = np.array([100.2, 100.0, 99.0, 99.0])
    bars = Bars(o, h, low, c, np.ones(4), np.zeros(4, np.int64), np.zeros(4, np.int64), np.zeros(4, np.int64))
    sig = Signals(np.array([True, False, False, False]), np.zeros(4, bool), np.zeros(4, bool), np.zeros(4, bool))
    path = simulate_exits(bars, sig, ExitRules(stop_loss=0.02, allow_short=False))
    assert path.trades.exit_bar[0] == 2 and path.trades.exit_price[0] == 98.37
