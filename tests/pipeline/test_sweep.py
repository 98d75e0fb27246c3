"""Sweeps as jobs: rows in the lake, chunking, resume after a kill, Dask, regimes and walk-forward."""

from __future__ import annotations

import pandas as pd
import pytest

from data_lake import connect
from pipeline.sweep import run_sweep
from research.exits import ExitRules
from research.regimes import RegimeParams, regimes_from_daily, save_regimes
from research.sweep.plan import SweepSpec, parse_grid_arg
from research.sweep.results import best, walk_forward

GRID = (("fast", (5, 10, 20)), ("slow", (20, 50, 100)))
RULES = (ExitRules(allow_short=False), ExitRules(stop_loss=0.05, allow_short=False))


def spec(**kw) -> SweepSpec:
    base = dict(strategy="sma_cross", symbols=("AAPL", "MSFT"), grid=GRID, rules=RULES, fees=0.001)
    return SweepSpec(**{**base, **kw})


def _key(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["symbol", "combo", "split", "regime"]
    return frame.sort_values(cols).reset_index(drop=True)


def test_parse_grid_arg():
    assert parse_grid_arg("fast=5:50:5") == ("fast", tuple(range(5, 55, 5)))
    assert parse_grid_arg("kind=sma,ema") == ("kind", ("sma", "ema"))
    assert parse_grid_arg("stop=0.01:0.03:0.01") == ("stop", (0.01, 0.02, 0.03))
    with pytest.raises(ValueError, match="name=start:stop:step"):
        parse_grid_arg("fast=5:1:1")
    with pytest.raises(ValueError, match="name=start:stop:step"):
        parse_grid_arg("fast=5:inf:1")
    with pytest.raises(ValueError, match="more than 100,000 values"):
        parse_grid_arg("fast=5:1e12:1")  # refused, never allocated


def test_rows_land_in_the_lake_and_invalid_combos_are_dropped(sample_lake_rw):
    s = spec()
    params, rules, dropped = s.combos()
    assert len(params) == 8 and dropped == 1  # fast=20, slow=20 is not a strategy
    res = run_sweep(sample_lake_rw, s)
    assert len(res) == 2 * 8 * 2  # symbols x params x rules, one window, one regime slot
    n = connect(sample_lake_rw).execute("select count(*) from sweeps where sweep_id = ?", [res.sweep_id[0]]).fetchone()[0]
    assert n == len(res)
    with pytest.raises(ValueError, match="--resume"):
        run_sweep(sample_lake_rw, s)


def test_killed_sweep_resumes_to_the_same_rows(sample_lake_rw):
    s = spec(fees=0.002)
    full = run_sweep(sample_lake_rw, s, max_memory=2**30)
    s2 = spec(fees=0.0021)
    calls = []

    def die_after_two(done, total):
        calls.append(total)
        if done == 2:
            raise KeyboardInterrupt  # the process dies between chunks

    with pytest.raises(KeyboardInterrupt):
        run_sweep(sample_lake_rw, s2, chunk=2, progress=die_after_two)
    assert calls[0] == 8  # 2 symbols x 8 params in chunks of 2
    resumed = run_sweep(sample_lake_rw, s2, chunk=2, resume=True)
    assert len(resumed) == len(full)
    metrics = ["total_return", "sharpe", "trades", "max_drawdown"]
    fresh = run_sweep(_fresh_lake(sample_lake_rw), s2)
    pd.testing.assert_frame_equal(_key(resumed)[metrics], _key(fresh)[metrics])


def _fresh_lake(lake):
    from data_lake import Lake
    from data_lake.sources.sample import sample_bars, sample_meta

    other = Lake(lake.root.parent / "fresh")
    for sym in ("AAPL", "MSFT"):
        other.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    return other


def test_regime_rows_add_up_to_all(sample_lake_rw):
    lake = sample_lake_rw
    arr = lake.load_arrays("IBM", "1Day")
    save_regimes(lake, "IBM", regimes_from_daily(arr["ts"], arr["open"], arr["high"], arr["low"], arr["close"],
                                                 RegimeParams()), RegimeParams())
    res = run_sweep(lake, spec(symbols=("AAPL",), by_regime=True, benchmark="IBM"))
    regimes = set(res["regime"])
    assert "all" in regimes and len(regimes) > 3
    per = res[res.regime != "all"].groupby("combo")["trades"].sum()
    assert (per == res[res.regime == "all"].set_index("combo")["trades"]).all()  # trades by entry session
    b = best(res, "sharpe", min_trades=1)
    assert set(b["regime"]) <= regimes and b.groupby("regime").size().max() == 1


def test_walk_forward_chooses_on_train_and_reports_test(sample_lake_rw):
    res = run_sweep(sample_lake_rw, spec(symbols=("MSFT",), walk_forward="4y:2y"))
    splits = sorted(set(res["split"]))
    assert {"full", "deploy", "train-00", "test-00"} <= set(splits)
    wf = walk_forward(res, "sharpe", min_trades=1)
    assert len(wf) >= 2 and (wf["split"].str.startswith("test-")).all()


def test_dask_local_cluster_gives_identical_rows(sample_lake_rw):
    from distributed import Client

    s = spec(fees=0.003)
    local = run_sweep(sample_lake_rw, s)
    s2 = spec(fees=0.0031)
    with Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as client:
        distributed = run_sweep(sample_lake_rw, s2, client=client, chunk=3)
    plain = run_sweep(_fresh_lake(sample_lake_rw), s2)
    metrics = ["total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades", "exposure"]
    pd.testing.assert_frame_equal(_key(distributed)[metrics], _key(plain)[metrics])
    assert len(local) == len(distributed)
