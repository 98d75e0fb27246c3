"""Pairs in the sweep engine: the weights are the live bridge's, the kernel's metrics equal a plain-Python
two-leg account, prefix invariance, agreement with a vectorbt cash-sharing portfolio, and the screen's trials."""

from __future__ import annotations

import numpy as np
import pytest

from data_lake.sources.sample import sample_bars
from data_lake.sources.synthetic import synthetic_arrays
from research import baskets
from research.bars import Bars, bars_from_arrays
from research.kernels.pairs import effective_weights_nb
from research.metrics import METRICS
from research.signals.pairs import Pairs
from research.sweep import Costs
from research.sweep.pairs import pair_path, run_pairs_grid, sweep_pairs
from tests.research.test_sweep_engine import reference_cell

PARAMS = [Pairs(), Pairs(lookback=30, entry_z=1.0, exit_z=0.0, stop_z=2.4, max_hold=40),
          Pairs(lookback=45, entry_z=1.6, exit_z=0.4, stop_z=3.2, max_hold=0, min_corr=0.5, short=False),
          Pairs(lookback=30, entry_z=0.8, exit_z=0.2, stop_z=2.4, max_hold=120, min_corr=-1.0)]


def synthetic_pair(n: int, seed: int, *, cointegrated: bool = True) -> tuple[Bars, Bars]:
    """Daily y, x: log y = 0.3 + 0.8 log x + an AR(1) spread (or an independent walk); opens near the last close."""
    rng = np.random.default_rng(seed)
    base = synthetic_arrays("PAIR", n, seed, timeframe="1Day")
    lx = np.log(100.0) + np.cumsum(rng.normal(0, 0.012, n))
    s = np.zeros(n)
    for t in range(1, n):
        s[t] = (0.92 if cointegrated else 1.0) * s[t - 1] + rng.normal(0, 0.01)
    out = []
    for lc in (0.3 + 0.8 * lx + s, lx):
        close = np.exp(lc)
        opn = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.004, n))
        a = {"ts": base["ts"], "open": opn, "high": np.maximum(opn, close) * 1.001,
             "low": np.minimum(opn, close) * 0.999, "close": close, "volume": np.full(n, 1e6)}
        out.append(bars_from_arrays(a, "1Day"))
    return out[0], out[1]


@pytest.fixture(scope="module")
def pair() -> tuple[Bars, Bars]:
    return synthetic_pair(1500, 7)


@pytest.fixture(scope="module")
def msft_ibm() -> tuple[Bars, Bars]:
    arrays = {}
    for sym in ("MSFT", "IBM"):
        f = sample_bars(sym)
        arrays[sym] = {"ts": f["ts"].dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy(),
                       **{k: f[k].to_numpy() for k in ("open", "high", "low", "close", "volume")}}
    _, aligned = baskets.align(arrays, ("MSFT", "IBM"))
    return tuple(bars_from_arrays(dict(aligned[s]), "1Day") for s in ("MSFT", "IBM"))


# ---------------------------------------------------------------- the weights are the live bridge's
def python_effective(raw: np.ndarray, start: int) -> np.ndarray:
    """research.baskets.effective as it was written in Python before it became a kernel."""
    n, m = raw.shape
    w = np.zeros((n, m))
    pending = np.zeros(m, dtype=bool)
    for t in range(max(start, 0), n):
        for i in range(m):
            prev = w[t - 1, i] if t > 0 else 0.0
            want = raw[t, i]
            fresh = t == 0 or want != raw[t - 1, i] or pending[i]
            pending[i] = False
            if prev != 0.0 and want != 0.0 and (prev > 0) != (want > 0):
                pending[i] = True
            elif prev == 0.0 and want != 0.0 and not fresh:
                pass
            else:
                w[t, i] = want
    return w


def python_pair_weights(sig) -> np.ndarray:
    """research.baskets.pair_weights' loop as it was written in Python."""
    n = len(sig.beta)
    w = np.zeros((n, 2))
    s, b = 0, np.nan
    for t in range(n):
        if (s > 0 and sig.long_exit[t]) or (s < 0 and sig.short_exit[t]):
            s = 0
        if s == 0 and (sig.long_entry[t] or sig.short_entry[t]) and np.isfinite(sig.beta[t]):
            s, b = (1 if sig.long_entry[t] else -1), float(sig.beta[t])
        if s:
            w[t] = (s / (1.0 + abs(b)), -s * b / (1.0 + abs(b)))
    return w


def test_weight_kernels_equal_the_python_loops_they_replaced(pair):
    from research.signals.pairs import signals

    rng = np.random.default_rng(3)
    for start in (0, 5, 40):
        raw = rng.choice([-0.5, 0.0, 0.25, 0.5], size=(300, 3), p=[0.2, 0.4, 0.2, 0.2])
        raw = np.repeat(raw, rng.integers(1, 4, 300), axis=0)[:300]  # runs, flips and re-entries
        np.testing.assert_array_equal(effective_weights_nb(raw, start), python_effective(raw, start))
    for p in PARAMS:
        np.testing.assert_array_equal(baskets.pair_weights(*pair, p), python_pair_weights(signals(*pair, p)))


def test_the_sweep_scores_the_weights_the_live_bridge_trades(pair, msft_ibm):
    for y, x in (pair, msft_ibm):
        for p in PARAMS:
            live = baskets.effective(baskets.pair_weights(y, x, p), 0)
            assert np.abs(live).sum() > 0
            np.testing.assert_array_equal(pair_path(y, x, p, Costs()).weights, live)


# ---------------------------------------------------------------- the kernel against a plain-Python account
def reference_account(y: Bars, x: Bars, w: np.ndarray, fees: float, slip: float):
    """Equity per close, in-position flags and trades (entry bar, PnL, return) by the convention, one bar at a time."""
    n = len(w)
    opens = [(float(a), float(b)) for a, b in zip(y.open, x.open)]
    closes = [(float(a), float(b)) for a, b in zip(y.close, x.close)]
    cash, q = 1.0, [0.0, 0.0]
    eq, pos = [1.0] * n, [0] * n
    entries, pnl, ret, cost = [], [], [], None
    for u in range(1, n):
        before = w[u - 2] if u >= 2 else (0.0, 0.0)
        changed = [i for i in (0, 1) if w[u - 1][i] != before[i]]
        was = q[0] != 0.0 or q[1] != 0.0
        if changed:
            value = cash + sum(q[i] * opens[u][i] for i in (0, 1) if q[i] != 0.0)
            for i in changed:
                d = w[u - 1][i] * value / opens[u][i] - q[i]
                price = opens[u][i] * ((1 + slip) if d > 0 else (1 - slip))
                cash -= d * price + abs(d) * price * fees
                q[i] += d
            now = q[0] != 0.0 or q[1] != 0.0
            if now and not was:
                entries.append(u)
                cost = value
            if was and not now:
                pnl.append(cash - cost)
                ret.append(cash / cost - 1)
        eq[u] = cash + sum(q[i] * closes[u][i] for i in (0, 1) if q[i] != 0.0)
        pos[u] = int(q[0] != 0.0 or q[1] != 0.0)
    if len(entries) > len(pnl):
        pnl.append(eq[-1] - cost)
        ret.append(eq[-1] / cost - 1)
    return np.array(eq), np.array(pos), np.array(entries, np.int64), np.array(pnl), np.array(ret)


@pytest.mark.parametrize("seed", [7, 11])
def test_metrics_equal_a_plain_python_two_leg_account(seed):
    y, x = synthetic_pair(1200, seed)
    n = len(y)
    windows = np.array([[0, n], [1, 400], [300, 900], [700, n]])
    regimes = ((np.arange(n) // 150) % 3).astype(np.int64)
    regimes[:60] = -1
    costs = Costs(0.001, 0.0005)
    out = run_pairs_grid(y, x, PARAMS, costs, windows=windows, regimes=regimes, n_regimes=3)
    assert out.shape == (len(PARAMS), 4, 4, len(METRICS))
    for c, p in enumerate(PARAMS):
        w = baskets.effective(baskets.pair_weights(y, x, p), 0)
        eq, pos, entries, pnl, tret = reference_account(y, x, w, costs.fees, costs.slippage)
        assert len(entries) >= 3, p
        np.testing.assert_allclose(pair_path(y, x, p, costs).equity, eq, rtol=1e-13, atol=0)
        for k, (a, b) in enumerate(windows):
            for g in range(4):
                idx = np.arange(a, b) if g == 3 else np.arange(a, b)[regimes[a:b] == g]
                want = reference_cell(eq, pos, idx, g == 3, entries, pnl, tret, 252.0)
                np.testing.assert_allclose(out[c, k, g], [want[m] for m in METRICS], rtol=1e-12, atol=1e-14,
                                           equal_nan=True, err_msg=f"{p} window {k} regime {g}")


def test_a_window_ending_at_t_does_not_change_when_bars_are_appended(pair):
    y, x = pair
    n = len(y)
    returns_only = [METRICS.index(m) for m in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown",
                                               "calmar", "trades", "exposure")]
    full_windows = np.array([[0, 700], [200, 1000], [0, n]])
    full = run_pairs_grid(y, x, PARAMS, Costs(0.001, 0.0002), windows=full_windows)
    for cut in (700, 1000):
        short_y, short_x = (Bars(*(a[:cut] for a in b)) for b in (y, x))
        keep = full_windows[:, 1] <= cut
        part = run_pairs_grid(short_y, short_x, PARAMS, Costs(0.001, 0.0002), windows=full_windows[keep])
        # returns, drawdowns, exposure and the count of trades entered are causal; an open trade's result
        # is valued at the series' last close (research.metrics), so win rate and the like may change
        np.testing.assert_array_equal(part[..., returns_only], full[:, keep][..., returns_only])


# ---------------------------------------------------------------- vectorbt, the screen, inputs
def test_one_combination_agrees_with_a_vectorbt_cash_sharing_portfolio(msft_ibm):
    from research.sweep.vbt import pair_portfolio

    y, x = msft_ibm
    for p, costs in [(Pairs(), Costs(0.001, 0.0005)), (Pairs(lookback=30, entry_z=1.0, max_hold=40), Costs(0.002))]:
        pf = pair_portfolio(y, x, p, costs)
        ours = pair_path(y, x, p, costs)
        assert len(pf.orders.values) >= 100  # both legs, entries and exits
        np.testing.assert_allclose(ours.equity, pf.value().to_numpy(), rtol=1e-9, atol=0)
        total = run_pairs_grid(y, x, [p], costs)[0, 0, -1, METRICS.index("total_return")]
        assert abs(total - float(pf.total_return())) <= 1e-9
        r = pf.returns().to_numpy()  # vectorbt's own per-bar returns of the group's value
        sharpe = run_pairs_grid(y, x, [p], costs)[0, 0, -1, METRICS.index("sharpe")]
        np.testing.assert_allclose(sharpe, r.mean() / r.std(ddof=1) * np.sqrt(252.0), rtol=1e-9)


def test_the_screen_sweeps_cointegrated_pairs_and_counts_every_candidates_trials():
    good = synthetic_pair(800, 5)
    bad = synthetic_pair(800, 6, cointegrated=False)
    params = PARAMS[:3]
    res = sweep_pairs({"GOOD/X": good, "WALK/X": bad}, params, Costs(), train=slice(0, 500), max_pvalue=0.05)
    assert [r.name for r in res.swept] == ["GOOD/X"]
    screened = {r.name: r for r in res.results}
    assert screened["WALK/X"].coint.pvalue > 0.05 and screened["WALK/X"].metrics is None
    assert screened["GOOD/X"].coint.pvalue <= 0.05
    np.testing.assert_array_equal(screened["GOOD/X"].metrics, run_pairs_grid(*good, params, Costs()))
    assert res.n_trials == 2 * len(params)  # the screened-out pair's combinations are trials too


@pytest.mark.parametrize("kw, message", [
    ({"params": [object()]}, "Pairs instances"),
    ({"params": []}, "nothing to sweep"),
    ({"costs": 0.001}, "costs must be Costs"),
    ({"periods_per_year": 0}, "periods_per_year"),
    ({"windows": np.array([[0, 10_000]])}, "window 0"),
])
def test_invalid_inputs(pair, kw, message):
    args = {"params": PARAMS[:1], "costs": Costs(), **kw}
    with pytest.raises(ValueError, match=message):
        run_pairs_grid(*pair, args.pop("params"), args.pop("costs"), **args)


def test_misaligned_legs_are_refused(pair):
    y, x = pair
    with pytest.raises(ValueError, match="aligned"):
        run_pairs_grid(y, Bars(*(a[1:] for a in x)), PARAMS[:1], Costs())
