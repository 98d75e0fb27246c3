"""Rotation baskets as nightly candidates: the basket's walk-forward recomputed by hand from
``run_rotation_grid`` and ``rotation_path``, every basket's trials counted in the deflated Sharpe,
the entry live takes, and baskets that overlap other sleeves or are misspelled refused up front.

A real lake of the sample daily bars (AAPL, MSFT, GOOG, IBM), the night's window two years back
from 2013-03-01 (about 500 bars), walk-forward 200 bars : 100 bars, a 12-combination grid.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from data_lake import Batch, Lake
from data_lake.sources.sample import sample_bars, sample_meta
from live_bridge.sleeves import sleeves
from pipeline.nightly import NightlyConfig, nightly, window
from pipeline.nightly_report import write_report
from pipeline.nightly_summary import summarize, summary_lines
from research import baskets
from research.bars import bars_from_arrays
from research.guards import deannualize_sharpe_variance, deflated_sharpe, sharpe_stats
from research.params import ExitRulesModel, GateThresholds, RunInfo, dumps, loads
from research.signals.rotation import Rotation
from research.sweep.engine import Costs, valid_params
from research.sweep.rotation import rotation_path, run_rotation_grid
from research.sweep.rotation_walkforward import walk_forward_rotation
from research.walkforward import choose, splits, stitched_metrics

OPEN_GATE = GateThresholds(min_oos_sharpe=-100.0, min_deflated_sharpe=0.0, max_pbo=1.0, min_oos_trades=0,
                           min_stability=0.0)
GRID = {"lookback": (5, 10, 20), "rebalance": (5, 10), "top_k": (1, 2)}  # 12 combinations
WF = "200b:100b"
COSTS = Costs(0.001, 0.0005)
BASKET = "AAPL,MSFT,GOOG/IBM"


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly_rotation")
    lake = Lake(root / "lake")
    lake.write_many([Batch(s, "1Day", sample_bars(s), sample_meta()) for s in ("AAPL", "MSFT", "GOOG", "IBM")])
    cfg = NightlyConfig(symbols=("IBM",), strategies=("sma_cross",), grids={"sma_cross": {"fast": (10,), "slow": (50,)},
                        "rotation": GRID}, lookback="2y", end="2013-03-01", walk_forward=WF, stop_loss=(0.02,),
                        min_trades=2, by_regime=False, rotation=("aapl, msft,goog/ibm",), gate=OPEN_GATE)
    result = nightly(lake, cfg, params_dir=root / "params", run=RunInfo(job="manual", notebook="test", run_dir=str(root)))
    return lake, cfg, result, root


def basket(lake: Lake, cfg: NightlyConfig, name: str):
    lg = baskets.legs("rotation", name)
    start, end = window(lake, cfg)
    ts, al = baskets.align({s: lake.load_arrays(s, "1Day", start, end) for s in lg.data}, lg.data)
    bars = {s: bars_from_arrays(dict(al[s]), "1Day") for s in lg.data}
    return ts, [bars[s] for s in lg.traded], bars[lg.reference]


def entry_of(result, symbol: str):
    [e] = [e for e in result.params.entries if e.symbol == symbol]
    return e


def test_the_basket_entry_is_a_direct_walk_forward_of_run_rotation_grid_and_rotation_path(night):
    lake, cfg, result, _ = night
    e = entry_of(result, BASKET)
    ts, assets, bench = basket(lake, cfg, BASKET)
    params = list(valid_params("rotation", GRID))
    parts = splits(ts, WF)
    n = len(ts)
    assert 450 < n < 550 and len(parts) >= 2
    windows = np.array([(0, n), *[w for s in parts for w in (s.train, s.test)], (n - 200, n)], np.int64)
    m = run_rotation_grid(assets, bench, params, COSTS, windows=windows)  # [params, windows, 1, METRICS]
    frame = lambda k: pd.DataFrame(m[:, k, -1, :], columns=list(e.in_sample.model_fields))  # noqa: E731

    equity = [rotation_path(assets, bench, p, COSTS).equity for p in params]  # every combo's path, once
    tests, trades = [], 0  # out of sample: chosen on each train window, scored on the next test window
    for k, s in enumerate(parts):
        c = choose(frame(1 + 2 * k), "sharpe", 2)
        q = equity[c][s.test[0] - 1:s.test[1]]  # from the close before the window's first bar
        tests.append(q[1:] / q[:-1] - 1.0)
        trades += int(frame(2 + 2 * k)["trades"][c])
    oos = stitched_metrics(tests)
    c = choose(frame(len(windows) - 1), "sharpe", 2)  # in sample: the deploy window's best

    assert e.strategy == "rotation" and e.regime == "all" and e.status == "active"
    assert e.exit_rules == ExitRulesModel()  # the basket rebalances on its schedule: live trades it so
    assert Rotation(**e.params) == params[c]
    want = frame(len(windows) - 1).iloc[c]
    assert e.in_sample.model_dump(exclude_none=True) == pytest.approx(want[np.isfinite(want)].to_dict(), rel=1e-12)
    stitched = {k: getattr(oos, k) for k in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar")}
    assert e.out_of_sample.model_dump(include=set(stitched)) == pytest.approx(stitched, rel=1e-12)
    assert e.oos_trades == trades > 0
    [run] = result.rotation  # the sweep rows: run_rotation_grid's metrics, window by window
    names = ["full", *[f"{p}-{s.index:02d}" for s in parts for p in ("train", "test")], "deploy"]
    for k, w in enumerate(names):
        rows = run.results[run.results["split"] == w].sort_values("combo")
        assert np.allclose(rows[list(e.in_sample.model_fields)].to_numpy(float), m[:, k, -1, :], equal_nan=True), w


def test_every_baskets_combinations_are_trials_and_the_deflated_sharpe_uses_them(night):
    lake, cfg, result, _ = night
    n_params = len(valid_params("rotation", GRID))
    assert entry_of(result, BASKET).n_trials == n_params
    assert f"{BASKET} all: rotation over 3 assets against IBM; combo {result.rotation[0].choices[0].combo} chosen; " \
           f"{n_params} trials over every candidate basket" in result.params.verdict.reasons
    # two baskets (the walk-forward the nightly runs, without the overlap rule): trials over both
    names = ("AAPL,MSFT/IBM", "GOOG,IBM/AAPL")
    candidates = {b: (assets, bench, ts) for b in names for ts, assets, bench in [basket(lake, cfg, b)]}
    done = walk_forward_rotation(candidates,
                                 list(valid_params("rotation", GRID)), COSTS, walk_forward=WF, min_trades=2)
    assert [r.name for r in done] == list(names) and {r.choice.n_trials for r in done} == {2 * n_params}
    deploy = pd.concat([r.rows[r.rows["split"] == "deploy"] for r in done])
    assert len(deploy) == 2 * n_params
    var = deannualize_sharpe_variance(float(np.var(deploy["sharpe"].to_numpy(float), ddof=1)), 252.0)
    for r in done:
        st = sharpe_stats(r.choice.is_returns.to_numpy(float))
        assert r.choice.deflated_sharpe == pytest.approx(
            deflated_sharpe(st.sr, st.n_obs, st.skew, st.kurt, 2 * n_params, var), rel=1e-12)


def test_the_file_round_trips_live_takes_the_basket_and_the_report_names_it(night):
    lake, _, result, root = night
    pf = result.params
    assert loads(dumps(pf)) == pf
    assert set(pf.data.symbols) == {"IBM", "AAPL", "MSFT", "GOOG"}  # IBM: a symbol and the benchmark, once
    [sl] = [s for s in sleeves(pf) if s.legs is not None]
    assert sl.strategy == "rotation" and sl.symbol == BASKET and sl.labels == ("all",)
    assert sl.legs.traded == ("AAPL", "MSFT", "GOOG") and sl.legs.reference == "IBM"
    summary = summarize(result)
    assert any(t.strategy == "rotation" and t.symbol == BASKET for t in summary.target)
    assert any(line.startswith(f"  active: {BASKET} all rotation(") for line in summary_lines(summary))
    page = write_report(lake, result, root / "report.html", summary).read_text()
    shown = BASKET.replace("/", "\\u002f")  # as the figures' JSON writes it
    assert f"{shown} rotation: sharpe over lookback x rebalance" in page
    assert f"{shown} walk-forward (out of sample)" in page


def test_a_leg_traded_by_another_sleeve_is_refused_up_front_naming_it():
    with pytest.raises(ValueError, match=r"rotation AAPL,MSFT/IBM: MSFT is also traded by sma_cross \(symbols\)"):
        NightlyConfig(symbols=("IBM", "MSFT"), rotation=("AAPL,MSFT/IBM",))
    with pytest.raises(ValueError, match=r"rotation AAPL,GOOG/SPY: GOOG is also traded by pairs GOOG/FB.*drop GOOG from pairs"):
        NightlyConfig(symbols=("IBM",), pairs=("GOOG/FB",), rotation=("AAPL,GOOG/SPY",))
    with pytest.raises(ValueError, match=r"rotation GOOG,FB/SPY: GOOG is also traded by rotation AAPL,GOOG/IBM"):
        NightlyConfig(symbols=("IBM",), rotation=("AAPL,GOOG/IBM", "GOOG,FB/SPY"))
    # a benchmark is data, never traded: it may be anyone's symbol or another basket's leg
    cfg = NightlyConfig(symbols=("IBM",), pairs=("GOOG/FB",), rotation=("aapl,msft/ibm", "XOM,CVX/AAPL"))
    assert cfg.rotation == ("AAPL,MSFT/IBM", "XOM,CVX/AAPL")


@pytest.mark.parametrize("basket, match", [
    ("AAPL,MSFT", r"rotation symbol must be 'A,B,.../BENCH'"),
    ("AAPL,AAPL/IBM", r"rotation symbol must be 'A,B,.../BENCH' \(distinct assets"),
    ("AAPL,IBM/IBM", r"the benchmark not among them"),
    ("AAPL,MS FT/IBM", r"rotation 'AAPL,MS FT/IBM': invalid symbol 'MS FT'"),
])
def test_a_bad_basket_is_refused_in_one_line(basket, match):
    with pytest.raises(ValueError, match=match) as exc:
        NightlyConfig(symbols=("SPY",), rotation=(basket,))
    assert "\n" not in str(exc.value)


def test_a_basket_without_bars_or_a_grid_without_baskets_is_refused_in_one_line(night, tmp_path):
    lake, cfg, _, _ = night
    with pytest.raises(ValueError, match="grids has an entry for 'rotation'"):
        NightlyConfig(symbols=("IBM",), grids={"rotation": {"lookback": (5,)}})
    with pytest.raises(ValueError, match="rotation has no parameter 'top_n'"):
        NightlyConfig(symbols=("IBM",), grids={"rotation": {"top_n": (1,)}}, rotation=("AAPL,MSFT/IBM",))
    bad = replace(cfg, rotation=("AAPL,ZZZZ/IBM",))
    with pytest.raises(ValueError, match=r"^rotation AAPL,ZZZZ/IBM: no 1Day bars of ZZZZ in the night's window") as exc:
        nightly(lake, bad, params_dir=tmp_path / "params", run=RunInfo(job="manual", notebook="t", run_dir="x"))
    assert "\n" not in str(exc.value)
