"""Rotation in the sweep engine: the weights are the live bridge's, the kernels equal the code they replaced, the
metrics equal a plain-Python multi-leg account, prefix invariance, agreement with a vectorbt cash-sharing
portfolio, and every basket's trials counted."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from data_lake.sources.sample import sample_bars
from data_lake.sources.synthetic import synthetic_arrays
from research import baskets
from research.bars import Bars, bars_from_arrays
from research.kernels import rotation as kernels
from research.metrics import METRICS, N_ACC, init_acc_nb
from research.signals.rotation import Rotation, signals
from research.sweep import Costs
from research.sweep import rotation as sweep_module
from research.sweep.pairs import pair_account_nb
from research.sweep.rotation import basket_account_nb, rotation_path, run_rotation_grid, sweep_rotation
from tests.research.test_signals_rotation import reference_weights
from tests.research.test_sweep_engine import reference_cell

PARAMS = [Rotation(), Rotation(lookback=3, rebalance=1, top_k=1), Rotation(lookback=10, rebalance=7, top_k=2,
                                                                            short=True),
          Rotation(lookback=5, rebalance=3, top_k=5, short=True), Rotation(lookback=3, rebalance=10, top_k=2)]
SAMPLE = ("AAPL", "MSFT", "GOOG", "IBM")  # AAPL,MSFT,GOOG/IBM


def synthetic_basket(n: int, m: int, seed: int) -> tuple[list[Bars], Bars]:
    """m daily assets and a benchmark on one calendar: random walks with their own drifts; opens near the last close."""
    rng = np.random.default_rng(seed)
    ts = synthetic_arrays("BASKET", n, seed, timeframe="1Day")["ts"]
    out = []
    for i in range(m + 1):
        close = 50.0 * np.exp(np.cumsum(rng.normal(rng.normal(0, 5e-4), 0.015, n)))
        opn = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.004, n))
        out.append(bars_from_arrays({"ts": ts, "open": opn, "high": np.maximum(opn, close) * 1.001,
                                     "low": np.minimum(opn, close) * 0.999, "close": close,
                                     "volume": np.full(n, 1e6)}, "1Day"))
    return out[:m], out[m]


@pytest.fixture(scope="module")
def basket() -> tuple[list[Bars], Bars]:
    return synthetic_basket(1200, 5, 7)


@pytest.fixture(scope="module")
def sample() -> tuple[list[Bars], Bars, dict]:
    """AAPL, MSFT, GOOG (traded) and IBM (benchmark) on the dates all four trade, and the aligned arrays."""
    arrays = {}
    for sym in SAMPLE:
        f = sample_bars(sym)
        arrays[sym] = {"ts": f["ts"].dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy(),
                       **{k: f[k].to_numpy() for k in ("open", "high", "low", "close", "volume")}}
    _, aligned = baskets.align(arrays, SAMPLE)
    bars = [bars_from_arrays(dict(aligned[s]), "1Day") for s in SAMPLE]
    return bars[:3], bars[3], aligned


# ---------------------------------------------------------------- the weights: the old kernel, the live bridge's
def python_rotation_weights(rs: np.ndarray, every: int, k: int, allow_short: bool) -> np.ndarray:
    """research/signals/rotation.py's rotation_weights_nb (k passes of _pick_nb) as it was, in plain Python."""
    def pick(row, taken, highest):
        best = -1
        for i in range(len(row)):
            if taken[i] or not np.isfinite(row[i]):
                continue
            if best < 0 or (row[i] > row[best] if highest else row[i] < row[best]):
                best = i
        return best

    n, m = rs.shape
    w, start = np.zeros((n, m)), -1
    for t in range(n):
        if start < 0 and np.isfinite(rs[t]).any():
            start = t
        if start >= 0 and (t - start) % every == 0:
            v = int(np.isfinite(rs[t]).sum())
            n_side = min(k, v // 2) if allow_short else min(k, v)
            taken = np.zeros(m, dtype=bool)
            for sign, highest in ((1.0, True), (-1.0, False)) if allow_short else ((1.0, True),):
                for _ in range(n_side):
                    i = pick(rs[t], taken, highest)
                    taken[i] = True
                    w[t, i] = sign / k
        elif start >= 0:
            w[t] = w[t - 1]
    return w


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_ranked_kernels_equal_the_selection_loop_they_replaced(seed):
    rng = np.random.default_rng(seed)
    n, m = 300, int(rng.integers(1, 12))
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, m)), axis=0))
    if seed % 2:
        closes = np.round(closes)  # ties
    closes[rng.random((n, m)) < 0.1] = np.nan
    bench = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    for p in [*PARAMS, Rotation(lookback=1, rebalance=1, top_k=11, short=True)]:
        s = signals(closes, bench, p)
        want = python_rotation_weights(s.rs, p.rebalance, p.top_k, p.short)
        assert s.weights.tobytes() == want.tobytes(), p
        np.testing.assert_array_equal(s.weights, reference_weights(s.rs, p))


def test_the_sweep_scores_the_weights_the_live_bridge_trades(basket, sample):
    assets, bench, aligned = sample
    lg = baskets.legs("rotation", "AAPL,MSFT,GOOG/IBM")
    for p in PARAMS:
        live = baskets.effective(baskets.weights("rotation", p, lg, aligned, "1Day"), 0)
        assert np.abs(live).sum() > 0
        np.testing.assert_array_equal(rotation_path(assets, bench, p, Costs()).weights, live)
        closes = np.column_stack([a.close for a in basket[0]])
        synthetic = baskets.effective(signals(closes, basket[1].close, p).weights, 0)
        np.testing.assert_array_equal(rotation_path(*basket, p, Costs()).weights, synthetic)


# ---------------------------------------------------------------- the kernel against a plain-Python account
def reference_account(assets: list[Bars], w: np.ndarray, fees: float, slip: float):
    """Equity per close, in-position flags and per-leg trades (entry bar, PnL, return), one bar at a time."""
    n, m = w.shape
    opens = [[float(a.open[t]) for a in assets] for t in range(n)]
    closes = [[float(a.close[t]) for a in assets] for t in range(n)]
    cash, q = 1.0, [0.0] * m
    eq, pos = [1.0] * n, [0] * n
    trades, open_ = [], {}  # open_: leg -> [entry bar, cash flows, committed]
    for u in range(1, n):
        before = w[u - 2] if u >= 2 else np.zeros(m)
        changed = [i for i in range(m) if w[u - 1][i] != before[i]]
        if changed:
            value = cash + sum(q[i] * opens[u][i] for i in range(m) if q[i] != 0.0)
            for i in changed:
                d = w[u - 1][i] * value / opens[u][i] - q[i]
                price = opens[u][i] * ((1 + slip) if d > 0 else (1 - slip))
                flow = -d * price - abs(d) * price * fees
                cash += flow
                if q[i] == 0.0 and d != 0.0:
                    open_[i] = [u, 0.0, abs(d) * price * (1 + fees)]
                q[i] += d
                open_[i][1] += flow
                if q[i] == 0.0:
                    e, pnl, basis = open_.pop(i)
                    trades.append((e, pnl, pnl / basis))
        eq[u] = cash + sum(q[i] * closes[u][i] for i in range(m) if q[i] != 0.0)
        pos[u] = int(any(x != 0.0 for x in q))
    for i, (e, flow, basis) in open_.items():
        pnl = flow + q[i] * closes[-1][i]
        trades.append((e, pnl, pnl / basis))
    tr = np.array(trades).reshape(-1, 3)
    return np.array(eq), np.array(pos), tr[:, 0].astype(np.int64), tr[:, 1], tr[:, 2]


@pytest.mark.parametrize("seed", [7, 11])
def test_metrics_equal_a_plain_python_multi_leg_account(seed):
    assets, bench = synthetic_basket(900, 4, seed)
    n = len(bench)
    windows = np.array([[0, n], [1, 300], [250, 700], [600, n]])
    regimes = ((np.arange(n) // 120) % 3).astype(np.int64)
    regimes[:40] = -1
    costs = Costs(0.001, 0.0005)
    out = run_rotation_grid(assets, bench, PARAMS, costs, windows=windows, regimes=regimes, n_regimes=3)
    assert out.shape == (len(PARAMS), 4, 4, len(METRICS))
    for c, p in enumerate(PARAMS):
        w = rotation_path(assets, bench, p, costs).weights
        eq, pos, entries, pnl, tret = reference_account(assets, w, costs.fees, costs.slippage)
        assert len(entries) >= 10, p
        np.testing.assert_allclose(rotation_path(assets, bench, p, costs).equity, eq, rtol=1e-13, atol=0)
        for k, (a, b) in enumerate(windows):
            for g in range(4):
                idx = np.arange(a, b) if g == 3 else np.arange(a, b)[regimes[a:b] == g]
                want = reference_cell(eq, pos, idx, g == 3, entries, pnl, tret, 252.0)
                np.testing.assert_allclose(out[c, k, g], [want[m] for m in METRICS], rtol=1e-12, atol=1e-14,
                                           equal_nan=True, err_msg=f"{p} window {k} regime {g}")


def test_the_equity_is_the_pairs_accounts_bit_for_bit(basket):
    assets, bench = basket
    opens = np.column_stack([a.open for a in assets])
    closes = np.column_stack([a.close for a in assets])
    n = len(bench)
    for p in PARAMS:
        w = rotation_path(assets, bench, p, Costs()).weights
        eqs = []
        for account in (basket_account_nb, pair_account_nb):
            acc, eq = np.empty((1, 1, N_ACC)), np.empty(n)
            init_acc_nb(acc)
            account(opens, closes, w, 0.001, 0.0005, np.array([[0, n]]), np.empty(0, np.int64), 0, acc, eq)
            eqs.append(eq)
        assert eqs[0].tobytes() == eqs[1].tobytes(), p


def test_a_window_ending_at_t_does_not_change_when_bars_are_appended(basket):
    assets, bench = basket
    n = len(bench)
    causal = [METRICS.index(m) for m in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar",
                                         "trades", "exposure")]
    full_windows = np.array([[0, 500], [200, 900], [0, n]])
    costs = Costs(0.001, 0.0002)
    full = run_rotation_grid(assets, bench, PARAMS, costs, windows=full_windows)
    for cut in (500, 900):
        keep = full_windows[:, 1] <= cut
        part = run_rotation_grid([a.slice(cut) for a in assets], bench.slice(cut), PARAMS, costs,
                                 windows=full_windows[keep])
        # an open trade is valued at the series' last close (research.metrics): win rate and the like may change
        np.testing.assert_array_equal(part[..., causal], full[:, keep][..., causal])
        for p in PARAMS:
            cut_path = rotation_path([a.slice(cut) for a in assets], bench.slice(cut), p, costs)
            full_path = rotation_path(assets, bench, p, costs)
            np.testing.assert_array_equal(cut_path.weights, full_path.weights[:cut])
            np.testing.assert_array_equal(cut_path.equity, full_path.equity[:cut])


# ---------------------------------------------------------------- vectorbt, trials, inputs, examples
@pytest.mark.parametrize("p", [Rotation(top_k=1), Rotation(top_k=1, short=True),
                               Rotation(lookback=10, rebalance=7, top_k=2, short=True)])
def test_one_combination_agrees_with_a_vectorbt_cash_sharing_portfolio(sample, p):
    """Where the module docstring's named difference (vectorbt caps a buy at the cash) cannot arise: no costs,
    and nothing held long through a rebalance or shorts funding the longs. Equity, total return, Sharpe and
    the per-leg trades agree."""
    costs = Costs(0.0, 0.0)
    from research.sweep.rotation import rotation_portfolio
    from research.sweep.vbt import metrics_from_portfolio

    assets, bench, _ = sample
    pf = rotation_portfolio(assets, bench, p, costs)
    ours = rotation_path(assets, bench, p, costs)
    assert len(pf.orders.values) >= 100
    np.testing.assert_allclose(ours.equity, pf.value().to_numpy(), rtol=1e-9, atol=0)
    m = dict(zip(METRICS, run_rotation_grid(assets, bench, [p], costs)[0, 0, -1]))
    assert abs(m["total_return"] - float(pf.total_return())) <= 1e-9
    r = pf.returns().to_numpy()  # vectorbt's own per-bar returns of the group's value
    np.testing.assert_allclose(m["sharpe"], r.mean() / r.std(ddof=1) * np.sqrt(252.0), rtol=1e-9)
    theirs = metrics_from_portfolio(pf, 252.0)
    assert m["trades"] == theirs["trades"] == len(pf.trades.values)  # one trade per leg's position
    for k in ("win_rate", "profit_factor", "expectancy"):
        np.testing.assert_allclose(m[k], theirs[k], rtol=1e-9, err_msg=k)


@pytest.mark.parametrize("p, costs", [(Rotation(top_k=2), Costs(0.0)), (Rotation(top_k=1), Costs(0.001)),
                                      (Rotation(top_k=1, short=True), Costs(0.001, 0.0005))])
def test_where_the_cash_runs_short_vectorbt_buys_less(sample, p, costs):
    """The named difference: a held leg that gained (top_k 2 of 3, no costs) or the costs of a full switch make the
    buys exceed the cash; vectorbt fills them short, this account (as the runner) goes into negative cash."""
    from research.sweep.rotation import rotation_portfolio

    assets, bench, _ = sample
    pf = rotation_portfolio(assets, bench, p, costs)
    ours = rotation_path(assets, bench, p, costs).equity
    theirs = pf.value().to_numpy()
    assert 1e-9 < np.abs(ours - theirs).max() < 0.1 * np.abs(theirs).max()
    assert (np.asarray(pf.cash()) >= -1e-12).all()  # vectorbt's cash never goes negative


def test_sweep_rotation_counts_every_baskets_trials(basket, sample):
    params = PARAMS[:3]
    res = sweep_rotation({"SYN": basket, "AAPL,MSFT,GOOG/IBM": sample[:2]}, params, Costs())
    assert res.names == ("SYN", "AAPL,MSFT,GOOG/IBM") and res.n_trials == 2 * len(params)
    np.testing.assert_array_equal(res.metrics[1], run_rotation_grid(*sample[:2], params, Costs()))


@pytest.mark.parametrize("kw, message", [
    ({"params": [object()]}, "Rotation instances"),
    ({"params": []}, "nothing to sweep"),
    ({"costs": 0.001}, "costs must be Costs"),
    ({"periods_per_year": 0}, "periods_per_year"),
    ({"windows": np.array([[0, 10_000]])}, "window 0"),
    ({"assets": []}, "at least one traded asset"),
    ({"assets": "AAPL"}, "must be research.bars.Bars"),
])
def test_invalid_inputs(basket, kw, message):
    args = {"assets": basket[0], "params": PARAMS[:1], "costs": Costs(), **kw}
    with pytest.raises(ValueError, match=message):
        run_rotation_grid(args.pop("assets"), basket[1], args.pop("params"), args.pop("costs"), **args)


def test_misaligned_or_unpriced_legs_are_refused(basket):
    assets, bench = basket
    with pytest.raises(ValueError, match="aligned"):
        run_rotation_grid([*assets[:-1], assets[-1].slice(len(bench) - 1)], bench, PARAMS[:1], Costs())
    bad = Bars(np.where(np.arange(len(bench)) == 5, np.nan, assets[0].open), *assets[0][1:])
    with pytest.raises(ValueError, match="finite and positive"):
        run_rotation_grid([bad, *assets[1:]], bench, PARAMS[:1], Costs())
    with pytest.raises(ValueError, match="no baskets"):
        sweep_rotation({}, PARAMS[:1], Costs())


@pytest.mark.parametrize("module", [kernels, sweep_module])
def test_every_kernel_example_runs(module):
    """research/kernels/rotation.py and research/sweep/rotation.py (tests/research/test_doctests.py lists the rest)."""
    result = doctest.testmod(module, verbose=False, report=True)
    assert result.attempted >= 4 and result.failed == 0
