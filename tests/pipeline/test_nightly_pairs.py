"""Swept pairs as nightly candidates: the walk-forward of a pair recomputed by hand, the screen on
train data only, every candidate's trials counted, and legs shared with other sleeves refused.

A real lake: AAPL (the single-symbol strategy), MSFT/IBM (real sample bars, cointegrated over the
sample) and LATE/LATX, a synthetic pair cointegrated only in its test window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_lake import Batch, Lake
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.nightly import NightlyConfig, nightly
from research import baskets
from research.bars import bars_from_arrays
from research.guards import deannualize_sharpe_variance, deflated_sharpe, sharpe_stats
from research.params import ExitRulesModel, GateThresholds, RunInfo, dumps, loads
from research.signals.pairs import Pairs, engle_granger
from research.sweep.engine import Costs, valid_params
from research.sweep.pairs import pair_path, run_pairs_grid
from research.walkforward import choose, splits, stitched_metrics
from live_bridge.sleeves import sleeves

OPEN_GATE = GateThresholds(min_oos_sharpe=-100.0, min_deflated_sharpe=0.0, max_pbo=1.0, min_oos_trades=0,
                           min_stability=0.0)
PAIRS_GRID = {"lookback": (60, 90), "entry_z": (1.0, 1.2), "exit_z": (0.2,), "stop_z": (2.8,), "max_hold": (40, 80),
              "min_corr": (-1.0,)}  # 8 combinations; min_corr -1: the synthetic pair may trade in its train window
WF = "300b:300b"
COSTS = Costs(0.001, 0.0005)


def late_pair(ts: np.ndarray) -> dict[str, pd.DataFrame]:
    """LATE/LATX over 600 sessions: independent random walks for 300 bars, then log LATE = log LATX + AR(1)."""
    rng = np.random.default_rng(0)
    lx = np.log(100) + np.cumsum(np.r_[rng.normal(0, 0.003, 300), rng.normal(0, 0.03, 300)])
    early = np.log(50) + np.cumsum(rng.normal(0, 0.003, 300))
    e = np.zeros(300)
    for t in range(1, 300):
        e[t] = 0.7 * e[t - 1] + rng.normal(0, 0.01)
    ly = np.r_[early, lx[300:] - lx[300] + early[-1] + e]
    out = {}
    for sym, lp in (("LATE", ly), ("LATX", lx)):
        close = np.exp(lp)
        opens = np.r_[close[0], close[:-1]]
        out[sym] = pd.DataFrame({"ts": ts[:600], "open": opens, "high": np.maximum(opens, close),
                                 "low": np.minimum(opens, close), "close": close, "volume": 1e6})
    return out


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly_pairs")
    lake = Lake(root / "lake")
    lake.write_many([Batch(s, "1Day", sample_bars(s), sample_meta()) for s in ("AAPL", "MSFT", "IBM")])
    for sym, frame in late_pair(sample_bars("AAPL")["ts"]).items():
        lake.write_bars(sym, "1Day", frame, sample_meta())
    cfg = NightlyConfig(symbols=("AAPL",), strategies=("sma_cross",), grids={"sma_cross": {"fast": (10, 20), "slow": (50,)},
                        "pairs": PAIRS_GRID}, lookback=None, walk_forward=WF, stop_loss=(0.02,), min_trades=1,
                        pairs=("MSFT/IBM", "LATE/LATX"), gate=OPEN_GATE)
    result = nightly(lake, cfg, params_dir=root / "params", run=RunInfo(job="manual", notebook="test", run_dir=str(root)))
    return lake, cfg, result


def aligned(lake: Lake, y: str, x: str):
    _, al = baskets.align({s: lake.load_arrays(s, "1Day") for s in (y, x)}, (y, x))
    return al[y]["ts"], bars_from_arrays(dict(al[y]), "1Day"), bars_from_arrays(dict(al[x]), "1Day")


def entry_of(result, symbol: str):
    [e] = [e for e in result.params.entries if e.symbol == symbol]
    return e


def test_the_pairs_entry_is_a_direct_walk_forward_of_run_pairs_grid_and_pair_path(night):
    lake, _, result = night
    e = entry_of(result, "MSFT/IBM")
    ts, y, x = aligned(lake, "MSFT", "IBM")
    params = list(valid_params("pairs", PAIRS_GRID))
    parts = splits(ts, WF)
    n = len(ts)
    windows = np.array([(0, n), *[w for s in parts for w in (s.train, s.test)], (n - 300, n)], np.int64)
    m = run_pairs_grid(y, x, params, COSTS, windows=windows)  # [params, windows, 1, METRICS]
    frame = lambda k: pd.DataFrame(m[:, k, -1, :], columns=list(e.in_sample.model_fields))  # noqa: E731

    def returns(c: int) -> np.ndarray:
        eq = pair_path(y, x, params[c], COSTS).equity
        return np.r_[0.0, eq[1:] / eq[:-1] - 1.0]

    # out of sample: per split, screened on the bars before the train window's end, chosen on train, scored on test
    tests, trades, screened_in = [], 0, 0
    for k, s in enumerate(parts):
        c = choose(frame(1 + 2 * k), "sharpe", 1)
        if engle_granger(y.close[:s.train[1]], x.close[:s.train[1]]).pvalue > 0.05 or c is None:
            tests.append(np.zeros(s.test[1] - s.test[0]))  # screened out (or nothing eligible): flat
            continue
        screened_in += 1
        tests.append(returns(c)[slice(*s.test)])
        trades += int(frame(2 + 2 * k)["trades"][c])
    assert screened_in >= len(parts) - 2  # MSFT/IBM passes the screen on nearly every train window
    oos = stitched_metrics(tests)
    # in sample: the deploy window's best
    c = choose(frame(len(windows) - 1), "sharpe", 1)

    assert e.strategy == "pairs" and e.regime == "all" and e.status == "active"
    assert e.exit_rules == ExitRulesModel()  # the pair's own exits: live trades them so
    assert Pairs(**e.params) == params[c]
    want = frame(len(windows) - 1).iloc[c]
    assert {k: v for k, v in e.in_sample.model_dump().items() if v is not None} == pytest.approx(
        {k: v for k, v in want.items() if np.isfinite(v)}, rel=1e-12)
    for k in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar"):
        assert getattr(e.out_of_sample, k) == pytest.approx(getattr(oos, k), rel=1e-12), k
    assert e.oos_trades == trades > 0


def test_every_candidates_combinations_are_trials_and_the_deflated_sharpe_uses_them(night):
    lake, _, result = night
    e = entry_of(result, "MSFT/IBM")
    n_params = len(valid_params("pairs", PAIRS_GRID))
    assert e.n_trials == entry_of(result, "LATE/LATX").n_trials == 2 * n_params  # both candidates' grids
    [run] = [r for r in result.pairs if r.spec.symbols == ("MSFT/IBM",)]
    r = run.choices[0].is_returns.to_numpy(float)
    deploy = pd.concat([p.results[p.results["split"] == "deploy"] for p in result.pairs if p.screens[-1].passed])
    st = sharpe_stats(r)
    var = deannualize_sharpe_variance(float(np.var(deploy["sharpe"].to_numpy(float), ddof=1)), 252.0)
    assert e.deflated_sharpe == pytest.approx(deflated_sharpe(st.sr, st.n_obs, st.skew, st.kurt, 2 * n_params, var))
    assert e.pbo is not None and e.stability is not None
    assert any(line.startswith("MSFT/IBM all: pairs, Engle-Granger (anchored) p=") and f"{2 * n_params} trials" in line
               for line in result.params.verdict.reasons)


def test_the_screen_reads_train_bars_only_a_pair_cointegrated_in_its_test_window_stays_flat_there(night):
    lake, _, result = night
    _, y, x = aligned(lake, "LATE", "LATX")
    [run] = [r for r in result.pairs if r.spec.symbols == ("LATE/LATX",)]
    train, deploy = run.screens
    # over its whole range the pair is cointegrated: a screen that read the test window would let it in
    assert engle_granger(y.close, x.close).pvalue < 0.001
    assert train.window == "train-00" and not train.passed
    assert train.pvalue == engle_granger(y.close[:300], x.close[:300]).pvalue > 0.05
    e = entry_of(result, "LATE/LATX")
    assert e.oos_trades == 0 and e.out_of_sample.total_return == 0.0  # flat in test-00: nothing was screened in
    assert "flat in test-00 (Engle-Granger p=" in "; ".join(run.choices[0].notes)
    # the deploy screen may read every bar up to today (no test window follows it): tomorrow's choice is
    # made, and the gate refuses it for want of an out-of-sample record
    assert deploy.window == "deploy" and deploy.passed and run.choices[0].combo is not None and e.in_sample.trades > 0
    assert e.status == "flat" and any(r.startswith("oos_sharpe missing") for r in e.gate.reasons)


def test_the_file_round_trips_and_live_takes_the_pairs_entry(night):
    _, _, result = night
    pf = result.params
    assert loads(dumps(pf)) == pf
    assert set(pf.data.symbols) == {"AAPL", "MSFT", "IBM", "LATE", "LATX"}
    pair = [s for s in sleeves(pf, candidates=True) if s.legs is not None]  # LATE/LATX: flat, a candidate
    assert {s.symbol for s in pair} == {"MSFT/IBM", "LATE/LATX"} and all(s.labels == ("all",) for s in pair)


def test_a_leg_traded_by_another_sleeve_is_refused_up_front_naming_it():
    with pytest.raises(ValueError, match=r"pairs MSFT/IBM: MSFT is also traded by sma_cross \(symbols\)"):
        NightlyConfig(symbols=("AAPL", "MSFT"), pairs=("MSFT/IBM",))
    with pytest.raises(ValueError, match=r"pairs IBM/GOOG: IBM is also traded by pairs MSFT/IBM"):
        NightlyConfig(symbols=("AAPL",), pairs=("msft/ibm", "IBM/GOOG"))
    with pytest.raises(ValueError, match="pairs symbol must be 'Y/X'"):
        NightlyConfig(symbols=("AAPL",), pairs=("MSFT",))
    with pytest.raises(ValueError, match="grids has an entry for 'pairs'"):
        NightlyConfig(symbols=("AAPL",), grids={"pairs": {"lookback": (60,)}})
    assert NightlyConfig(symbols=("AAPL",), pairs=("msft/ibm",)).pairs == ("MSFT/IBM",)
