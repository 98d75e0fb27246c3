"""Per-regime params switched by the regime label: equal to research.exits for one entry, the entry
regime's rules kept by an open trade, no entries where the regime is flat, prefix invariance."""

from __future__ import annotations

import numpy as np
import pytest

from research.bars import Bars, bars_from_arrays
from research.exits import ExitRules, rule_arrays, simulate_exits
from research.kernels.simulate import simulate_nb
from research.signals import Signals, get
from research.switching import simulate_switching


def walk(n: int, seed: int) -> Bars:
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    o = np.r_[100.0, c[:-1]] * np.exp(rng.normal(0, 0.005, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    left = np.tile(np.arange(9, -1, -1), n // 10 + 1)[:n].astype(np.int64)
    return Bars(o, h, low, c, np.ones(n), np.zeros(n, np.int64), np.zeros(n, np.int64), left)


def random_signals(n: int, rng) -> Signals:
    return Signals(*(rng.random(n) < p for p in (0.08, 0.08, 0.05, 0.05)))


def random_rules(rng) -> ExitRules:
    return ExitRules(stop_loss=float(rng.choice([0, 0.02])), take_profit=float(rng.choice([0, 0.04])),
                     trailing_stop=float(rng.choice([0, 0.03])), time_stop=int(rng.choice([0, 7])),
                     flat_at_close=bool(rng.random() < 0.3), allow_short=bool(rng.random() < 0.5))


@pytest.mark.parametrize("seed", range(12))
def test_one_code_everywhere_is_that_codes_own_simulation(seed):
    """Three codes of random signals and rules; code j on every bar trades exactly code j's signals under
    code j's rules (simulate_exits, the sweep's one-entry case): the kernel reads no other code's row."""
    rng = np.random.default_rng(seed)
    bars, n = walk(400, seed), 400
    sigs = [random_signals(n, rng) for _ in range(3)]
    rules = [random_rules(rng) for _ in range(3)]
    stacked = tuple(np.stack([s[m] for s in sigs]) for m in range(4))
    for j in range(3):
        ref = simulate_exits(bars, sigs[j], rules[j])
        got = simulate_nb(bars, np.full(n, j, np.int64), stacked, rule_arrays(rules))
        for a, b in zip((ref.position, ref.target, *ref.trades), (got[0], got[1], *got[3:9])):
            np.testing.assert_array_equal(a, b)
        assert (got[2][got[0] != 0] == j).all() and (got[2][got[0] == 0] == -1).all()
        assert (got[9] == j).all()


def test_an_open_trade_keeps_the_rules_of_the_regime_it_was_entered_in():
    # enter in regime 0 (stop 10%); from bar 2 the label is regime 1 (stop 1%): a 5% dip must not stop it
    o = np.array([100, 100, 100, 100, 100.0])
    h = np.array([101, 101, 101, 101, 101.0])
    low = np.array([99, 99.5, 95, 99, 99.0])
    bars = Bars(o, h, low, o.copy(), np.ones(5), np.zeros(5, np.int64), np.zeros(5, np.int64), np.full(5, 99, np.int64))
    le = np.array([True, False, False, False, False])
    z = np.zeros(5, bool)
    strat_signals = Signals(le, z, z, z)
    codes = np.array([0, 1, 1, 1, 1], np.int64)
    rules = rule_arrays([ExitRules(stop_loss=0.10, allow_short=False), ExitRules(stop_loss=0.01, allow_short=False)])
    out = simulate_nb(bars, codes, (np.stack([le, le]), np.stack([z, z]), np.stack([z, z]), np.stack([z, z])), rules)
    position, active, exit_bar = out[0], out[2], out[5]
    assert position.tolist() == [0, 1, 1, 1, 1] and exit_bar.tolist() == [-1] and active[1:].tolist() == [0] * 4
    only_1 = simulate_exits(bars, strat_signals, ExitRules(stop_loss=0.01, allow_short=False))
    assert only_1.trades.exit_bar.tolist() == [2]  # under regime 1's rules the dip would have stopped it


def test_no_entries_where_the_regime_is_flat_and_real_params_on_real_bars(sample_lake):
    arr = sample_lake.load_arrays("MSFT", "1Day")
    bars = bars_from_arrays(arr, "1Day")
    n = len(bars)
    strat = get("sma_cross")
    p = strat.make_params(fast=10, slow=50, short=False)
    rules = ExitRules(stop_loss=0.02, allow_short=False)
    everywhere, active, codes = simulate_switching(bars, "sma_cross", [(p, rules)], np.zeros(n, np.int64))
    plain = simulate_exits(bars, strat.signals(bars, p), rules)
    np.testing.assert_array_equal(everywhere.position, plain.position)
    np.testing.assert_array_equal(everywhere.trades.exit_price, plain.trades.exit_price)
    half = np.where(np.arange(n) < n // 2, 0, -1)  # the second half's regime has no entry
    path, active, codes = simulate_switching(bars, "sma_cross", [(p, rules)], half)
    assert (path.trades.entry_bar <= n // 2).all() and len(path.trades.entry_bar) > 5
    flat_entry, _, _ = simulate_switching(bars, "sma_cross", [None], np.zeros(n, np.int64))
    assert len(flat_entry.trades.entry_bar) == 0


def test_prefix_invariance(sample_lake):
    arr = sample_lake.load_arrays("AAPL", "1Day")
    bars = bars_from_arrays(arr, "1Day")
    n = len(bars)
    strat = get("rsi_reversion")
    entries = [(strat.make_params(short=False), ExitRules(stop_loss=0.02, allow_short=False)),
               (strat.make_params(n=7, short=False), ExitRules(stop_loss=0.01, trailing_stop=0.03, allow_short=False))]
    codes = (np.arange(n) // 40) % 3 - 1  # -1, 0, 1 in blocks of 40 sessions
    full, active_full, _ = simulate_switching(bars, "rsi_reversion", entries, codes)
    for m in (300, 1111, n - 7):
        cut = Bars(*(a[:m] for a in bars))
        part, active_part, _ = simulate_switching(cut, "rsi_reversion", entries, codes[:m])
        np.testing.assert_array_equal(part.target, full.target[:m])
        np.testing.assert_array_equal(active_part, active_full[:m])


def test_bad_codes_are_refused():
    bars = walk(20, 0)
    p = get("sma_cross").make_params(fast=2, slow=5, short=False)
    with pytest.raises(ValueError, match="outside"):
        simulate_switching(bars, "sma_cross", [(p, ExitRules())], np.full(20, 3))


# --- entries of different strategies (the nightly chooses a strategy per (symbol, regime)) ------------
TWO = ("sma_cross", "rsi_reversion")


def two_entries():
    return [(get("sma_cross").make_params(fast=10, slow=50, short=False), ExitRules(stop_loss=0.02, allow_short=False)),
            (get("rsi_reversion").make_params(n=7, short=False),
             ExitRules(stop_loss=0.03, trailing_stop=0.04, time_stop=15, allow_short=False))]


def test_each_strategy_alone_is_its_own_simulation_and_each_trade_its_entrys(sample_lake):
    bars = bars_from_arrays(sample_lake.load_arrays("AAPL", "1Day"), "1Day")
    n = len(bars)
    entries = two_entries()
    for j, (name, (p, rules)) in enumerate(zip(TWO, entries)):
        got, active, codes = simulate_switching(bars, TWO, entries, np.full(n, j, np.int64))
        ref = simulate_exits(bars, get(name).signals(bars, p), rules)
        for a, b in zip((ref.position, ref.target, *ref.trades), (got.position, got.target, *got.trades)):
            np.testing.assert_array_equal(a, b)
        assert len(codes) > 3 and (codes == j).all()

    codes = ((np.arange(n) // 30) % 3 - 1).astype(np.int64)  # -1, 0, 1 in blocks of 30 sessions
    mixed, active, trade_codes = simulate_switching(bars, TWO, entries, codes)
    assert set(trade_codes.tolist()) == {0, 1}
    for e, x, k in zip(mixed.trades.entry_bar, mixed.trades.exit_bar, trade_codes):
        assert codes[e - 1] == k and (active[e:(x if x >= 0 else n)] == k).all()
        # the trade is strategy k's own: strategy k alone, allowed to enter only at that decision, makes it
        only = np.full(n, -1, np.int64)
        only[e - 1] = 0
        alone, _, _ = simulate_switching(bars, TWO[k], [entries[k]], only)
        i = list(mixed.trades.entry_bar).index(e)
        np.testing.assert_array_equal([a[0] for a in alone.trades], [mixed.trades[f][i] for f in range(6)])


def test_an_open_position_keeps_its_entrys_strategy_after_the_regime_flips():
    # sma_cross(2, 3) enters at bar 6's close; from bar 7 the regime is rsi_reversion's, whose exit
    # signal (RSI > 50) fires at bars 7-10 and whose 1% stop the dip of bar 8 would hit
    c = np.array([10, 10, 10, 9.6, 9.2, 9.6, 10.0, 10.4, 10.8, 11.2, 11.6, 11.0, 10.4, 9.8, 10.2, 10.6, 11.0,
                  10.0, 9.0, 9.4, 9.8, 10.2])
    n = len(c)
    o = np.r_[c[0], c[:-1]]
    low = np.minimum(o, c) - 0.05
    low[8] = o[8] * 0.94
    z = np.zeros(n, np.int64)
    bars = Bars(o, np.maximum(o, c) + 0.05, low, c, np.ones(n), z, z, np.full(n, 99, np.int64))
    sma_p, rsi_p = get("sma_cross").make_params(fast=2, slow=3, short=False), get("rsi_reversion").make_params(n=2)
    sma, rsi = get("sma_cross").signals(bars, sma_p), get("rsi_reversion").signals(bars, rsi_p)
    assert np.flatnonzero(sma.long_entry)[0] == 6 and rsi.long_exit[7:11].all() and np.flatnonzero(sma.long_exit)[1] == 12
    entries = [(sma_p, ExitRules(stop_loss=0.10, allow_short=False)), (rsi_p, ExitRules(stop_loss=0.01, allow_short=False))]
    codes = np.r_[[-1] * 6, 0, [1] * (n - 7)].astype(np.int64)

    path, active, trade_codes = simulate_switching(bars, TWO, entries, codes)

    tr = path.trades
    # held through rsi's exits and its stop level, closed by sma_cross's own exit (decided at 12, filled at 13)
    assert tr.entry_bar.tolist()[0] == 7 and tr.exit_bar.tolist()[0] == 13 and tr.reason[0] == 0
    assert path.position[7:13].tolist() == [1] * 6 and (active[7:13] == 0).all()
    # then only the regime's strategy enters: not sma_cross's entry at 15, rsi_reversion's at 17, under its 1% stop
    assert trade_codes.tolist() == [0, 1] and tr.entry_bar[1] == 18 and tr.exit_price[1] == pytest.approx(9.9)
    assert sma.long_entry[15] and rsi.long_entry[17]


def test_prefix_invariance_of_two_strategies(sample_lake):
    bars = bars_from_arrays(sample_lake.load_arrays("MSFT", "1Day"), "1Day")
    n = len(bars)
    codes = ((np.arange(n) // 25) % 3 - 1).astype(np.int64)
    full, active_full, codes_full = simulate_switching(bars, TWO, two_entries(), codes)
    for m in (300, 1111, n - 7):
        cut = Bars(*(a[:m] for a in bars))
        part, active_part, codes_part = simulate_switching(cut, TWO, two_entries(), codes[:m])
        np.testing.assert_array_equal(part.position, full.position[:m])
        np.testing.assert_array_equal(part.target, full.target[:m])
        np.testing.assert_array_equal(active_part, active_full[:m])
        closed = part.trades.exit_bar >= 0
        np.testing.assert_array_equal(codes_part[closed], codes_full[:len(codes_part)][closed])


def test_one_strategy_per_entry_code():
    bars = walk(20, 0)
    p = get("sma_cross").make_params(fast=2, slow=5, short=False)
    with pytest.raises(ValueError, match="one strategy per entry code"):
        simulate_switching(bars, ("sma_cross",), [(p, ExitRules()), (p, ExitRules())], np.zeros(20, np.int64))
