"""The sweep engine: parity with vectorbt on the real sample bars, its three paths, windows and regimes
against a by-hand recomputation, the strategies' signals_nb hooks, and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from data_lake.sources.sample import sample_bars
from data_lake.sources.synthetic import synthetic_arrays
from research.bars import Bars, bars_from_arrays
from research.exits import ExitRules, simulate_exits
from research.metrics import METRICS, equity_curve
from research.signals import get
from research.signals.sma_cross import SmaCross
from research.sweep import Costs, run_grid, valid_params

GRID = {"fast": range(5, 55, 5), "slow": range(20, 220, 20)}
LONG_RULES = [ExitRules(allow_short=False), ExitRules(stop_loss=0.05, allow_short=False),
              ExitRules(stop_loss=0.03, take_profit=0.10, trailing_stop=0.08, time_stop=30, allow_short=False)]


def lake_bars(frame, timeframe: str) -> Bars:
    arrays = {k: frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume")}
    arrays["ts"] = frame["ts"].dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy()
    return bars_from_arrays(arrays, timeframe)


@pytest.fixture(scope="module")
def aapl() -> Bars:
    return lake_bars(sample_bars("AAPL"), "1Day")


@pytest.fixture(scope="module")
def minutes() -> Bars:
    return bars_from_arrays(synthetic_arrays("SWEEP", 15, 11), "1Min")


def regime_codes(bars: Bars) -> np.ndarray:
    """Three made-up regimes by session (a code per ~year), the first 50 bars unknown."""
    codes = (bars.session // 250) % 3
    codes[:50] = -1
    return codes.astype(np.int64)


def test_parity_with_vectorbt_on_real_bars(aapl):
    from research.sweep.vbt import metrics_from_portfolio, portfolio

    params = valid_params("sma_cross", GRID)
    assert len(params) == 90 and params.dropped == 10
    out = run_grid("sma_cross", aapl, params, LONG_RULES, Costs())
    assert out.shape == (270, 1, 1, len(METRICS))
    ours, theirs = [], []
    for c in range(out.shape[0]):
        pf = portfolio("sma_cross", aapl, params[c // 3], LONG_RULES[c % 3], Costs())
        ours.append(out[c, 0, -1])
        theirs.append([metrics_from_portfolio(pf, 252.0)[k] for k in METRICS])
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-9, atol=0, equal_nan=True)
    assert np.nansum(np.array(ours)[:, METRICS.index("trades")]) > 1000


def test_parity_with_vectorbt_shorts_and_slippage(aapl):
    from research.sweep.vbt import metrics_from_portfolio, portfolio

    params = [SmaCross(f, s, short=True) for f, s in ((5, 20), (10, 60), (20, 100), (30, 200))]
    rules = [ExitRules(), ExitRules(stop_loss=0.04, take_profit=0.08)]
    costs = Costs(fees=0.002, slippage=0.0005)
    out = run_grid("sma_cross", aapl, params, rules, costs)
    for c in range(out.shape[0]):
        pf = portfolio("sma_cross", aapl, params[c // 2], rules[c % 2], costs)
        assert (pf.trades.values["direction"] == 1).any()  # shorts happened
        theirs = [metrics_from_portfolio(pf, 252.0)[k] for k in METRICS]
        np.testing.assert_allclose(out[c, 0, -1], theirs, rtol=1e-9, atol=0, equal_nan=True)


def test_vbt_portfolio_takes_a_lake_frame(aapl):
    from research.sweep.vbt import portfolio

    frame = sample_bars("AAPL")
    pf = portfolio("sma_cross", frame, SmaCross(10, 50), LONG_RULES[0], Costs())
    same = portfolio("sma_cross", aapl, SmaCross(10, 50), LONG_RULES[0], Costs())
    assert pf.wrapper.index[0] == frame["ts"].iloc[0]
    np.testing.assert_array_equal(pf.value().to_numpy(), same.value().to_numpy())


@pytest.mark.parametrize("strategy, grid, rules, intraday", [
    ("sma_cross", {**GRID, "kind": ("sma", "ema"), "short": (False, True)}, LONG_RULES[:2] + [ExitRules()], False),
    ("rsi_reversion", {"n": (7, 14), "lower": (25.0, 30.0), "upper": (70.0,), "short": (False, True)},
     [ExitRules(), ExitRules(stop_loss=0.05, time_stop=10)], False),
    ("breakout", {"n": (10, 20), "k": (1.0, 1.5), "exit_n": (5, 10), "short": (False, True)},
     [ExitRules(), ExitRules(trailing_stop=0.05)], False),
    ("sma_convergence", {"fast": (10, 20), "slow": (100, 200), "short": (False, True)}, [ExitRules()], False),
    ("vwap_reversion", {"window": (10, 30), "entry_z": (1.5, 2.0), "short": (False, True)},
     [ExitRules(flat_at_close=True), ExitRules(stop_loss=0.005, take_profit=0.01, flat_at_close=True)], True),
    ("gap", {"mode": ("go", "fill"), "min_gap": (0.001, 0.003), "short": (False, True)},
     [ExitRules(flat_at_close=True)], True),
])
def test_paths_agree_bit_for_bit(strategy, grid, rules, intraday, aapl, minutes):
    bars = minutes if intraday else aapl
    n = len(bars)
    params = valid_params(strategy, grid)
    kw = dict(windows=np.array([[0, n], [0, n // 2], [n // 2, n], [100, 900]]), regimes=regime_codes(bars),
              n_regimes=3, periods_per_year=252.0 * (390 if intraday else 1))
    want = run_grid(strategy, bars, params, rules, Costs(0.001, 0.0002), path="signals", **kw)
    paths = ["fused", "auto"] + (["shared"] if strategy == "sma_cross" else [])
    for path in paths:
        got = run_grid(strategy, bars, params, rules, Costs(0.001, 0.0002), path=path, **kw)
        np.testing.assert_array_equal(got, want, err_msg=path)
    assert np.nansum(want[:, 0, -1, METRICS.index("trades")]) > 0


def test_one_cell_fast_loop_equals_the_general_one(aapl):
    params = valid_params("sma_cross", GRID)
    n = len(aapl)
    one = run_grid("sma_cross", aapl, params, LONG_RULES, Costs())
    two = run_grid("sma_cross", aapl, params, LONG_RULES, Costs(), windows=np.array([[0, n], [0, n]]))
    np.testing.assert_array_equal(two[:, 0], one[:, 0])
    np.testing.assert_array_equal(two[:, 1], one[:, 0])


def reference_cell(eq, pos, bars_idx, whole_window, entries, pnl, tret, ppy):
    """A cell's METRICS from the equity curve by the definitions, in plain numpy."""
    out = dict.fromkeys(METRICS, np.nan)
    mine = np.isin(entries, bars_idx)
    out["trades"] = float(mine.sum())
    n = len(bars_idx)
    if n == 0:
        return out
    prev = np.r_[1.0, eq[:-1]]
    r = eq[bars_idx] / prev[bars_idx] - 1
    if whole_window:  # the window's compounded equity is its equity over the bar before it
        level = np.r_[prev[bars_idx[0]], eq[bars_idx]] / prev[bars_idx[0]]
    else:
        level = np.r_[1.0, np.cumprod(1 + r)]
    total = level[-1] - 1
    mdd = min(0.0, (level / np.maximum.accumulate(level) - 1).min())
    cagr = (1 + total) ** (ppy / n) - 1
    down = np.sqrt(np.mean(np.minimum(r, 0) ** 2))
    std = r.std(ddof=1) if n > 1 else 0.0
    out.update(total_return=total, cagr=cagr, max_drawdown=mdd, exposure=(pos[bars_idx] != 0).mean())
    if n > 1 and std > 0:
        out["sharpe"] = r.mean() / std * np.sqrt(ppy)
    if n > 1 and down > 0:
        out["sortino"] = r.mean() / down * np.sqrt(ppy)
    if mdd < 0:
        out["calmar"] = cagr / -mdd
    if mine.any():
        out.update(win_rate=(pnl[mine] > 0).mean(), expectancy=tret[mine].mean())
    if (pnl[mine] < 0).any():
        out["profit_factor"] = pnl[mine][pnl[mine] > 0].sum() / -pnl[mine][pnl[mine] < 0].sum()
    return out


def test_windows_and_regimes_equal_a_recomputation_on_the_sliced_equity(aapl):
    n = len(aapl)
    windows = np.array([[0, n], [1, 1000], [1000, 2500], [2000, n]])
    regimes = regime_codes(aapl)
    params = [SmaCross(10, 50), SmaCross(5, 200, short=True)]
    rules = [ExitRules(), ExitRules(stop_loss=0.05, take_profit=0.1)]
    costs = Costs(0.001, 0.0003)
    out = run_grid("sma_cross", aapl, params, rules, costs, windows=windows, regimes=regimes, n_regimes=3)
    for c in range(len(params) * len(rules)):
        path = simulate_exits(aapl, get("sma_cross").signals(aapl, params[c // 2]), rules[c % 2])
        eq = equity_curve(aapl.close, path, costs.fees, costs.slippage)
        for w, (a, b) in enumerate(windows):
            for g in range(4):
                idx = np.arange(a, b) if g == 3 else np.arange(a, b)[regimes[a:b] == g]
                want = reference_cell(eq.equity, path.position, idx, g == 3, path.trades.entry_bar, eq.trade_pnl,
                                      eq.trade_return, 252.0)
                np.testing.assert_allclose(out[c, w, g], [want[k] for k in METRICS], rtol=1e-10, atol=1e-15,
                                           equal_nan=True, err_msg=f"combo {c} window {w} regime {g}")


def test_combos_are_params_major(aapl):
    params = [SmaCross(5, 20), SmaCross(10, 50), SmaCross(20, 100)]
    out = run_grid("sma_cross", aapl, params, LONG_RULES, Costs())
    for c in (0, 4, 8):
        one = run_grid("sma_cross", aapl, [params[c // 3]], [LONG_RULES[c % 3]], Costs())
        np.testing.assert_array_equal(out[c], one[0])


@pytest.mark.parametrize("name", ["sma_cross", "rsi_reversion", "breakout", "sma_convergence"])
def test_signals_nb_equals_signals(name, aapl):
    strat = get(name)
    for p in valid_params(name, {**{k: v[::2] for k, v in strat.grid.items()}, "short": (False, True)})[:40]:
        want = strat.signals(aapl, p)
        got = strat.signals_nb(*aapl, strat.params_to_array(p))
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b, err_msg=repr(p))


def test_sma_cross_shared_hooks_equal_signals(aapl):
    strat = get("sma_cross")
    for p in (SmaCross(5, 20), SmaCross(13, 77, kind="ema", short=True), SmaCross(1, 2)):
        keys = strat.indicator_keys(p)
        table = np.array([strat.indicator_nb(*aapl, np.array(k)) for k in keys])
        got = strat.signals_from_nb(table, np.arange(2), strat.params_to_array(p))
        for a, b in zip(strat.signals(aapl, p), got):
            np.testing.assert_array_equal(a, b)


def test_valid_params_drops_invalid_combos_and_hints_names():
    params = valid_params("sma_cross", {"fast": (5, 20, 50), "slow": (20, 50)})
    assert [(p.fast, p.slow) for p in params] == [(5, 20), (5, 50), (20, 50)] and params.dropped == 3
    with pytest.raises(ValueError, match="did you mean 'slow'"):
        valid_params("sma_cross", {"fast": (5,), "slwo": (20,)})
    with pytest.raises(ValueError, match="unknown strategy"):
        valid_params("sma_crossover", {})


@pytest.mark.parametrize("kw, msg", [
    (dict(strategy="pairs"), "pair strategy"),
    (dict(strategy="nope"), "unknown strategy"),
    (dict(params=[]), "nothing to sweep"),
    (dict(params=[{"fast": 5, "slow": 20}]), "SmaCross instances"),
    (dict(rules=[ExitRules(flat_at_close=True)]), "intraday"),
    (dict(windows=np.array([[5, 2]])), "bar range"),
    (dict(regimes=np.zeros(3, np.int64), n_regimes=1), "one code per bar"),
    (dict(path="gpu"), "path must be"),
    (dict(strategy="rsi_reversion", params=[get("rsi_reversion").params()], path="shared"), "indicator_keys"),
    (dict(periods_per_year=0.0), "periods_per_year"),
])
def test_invalid_inputs(kw, msg, aapl):
    args = dict(strategy="sma_cross", params=[SmaCross(5, 20)], rules=[ExitRules()], costs=Costs())
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        run_grid(args.pop("strategy"), aapl, args.pop("params"), args.pop("rules"), args.pop("costs"), **args)


def test_costs_are_fractions():
    with pytest.raises(ValueError, match="fees"):
        Costs(fees=-0.1)
    with pytest.raises(ValueError, match="slippage"):
        Costs(slippage=1.0)
