"""Pairs and rotation sweeps as lake jobs: rows in the sweeps table equal to the in-memory grid, the
screen's trials, resume after an interruption, Dask, regimes and walk-forward windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_lake import Lake, connect
from data_lake.sources.sample import sample_bars, sample_meta
from data_lake.tables import table_files
from pipeline.sweep import TABLE, sweep_job
from research import baskets
from research.bars import bars_from_arrays
from research.metrics import METRICS
from research.regimes import RegimeParams, regimes_from_daily, save_regimes
from research.sweep.engine import Costs
from research.sweep.pairs import sweep_pairs
from research.sweep.plan import SweepSpec
from research.sweep.rotation import sweep_rotation

PAIR_GRID = (("lookback", (30, 60)), ("entry_z", (1.0, 1.6)), ("max_hold", (40, 80)))
ROT_GRID = (("lookback", (5, 10)), ("rebalance", (5, 10)), ("top_k", (1, 2)))
PAIRS = ("MSFT/IBM", "AAPL/MSFT")  # MSFT/IBM passes p <= 0.05 on the sample, AAPL/MSFT does not
BASKETS = ("AAPL,MSFT,GOOG/IBM", "AAPL,MSFT/IBM")


def pairs_spec(**kw) -> SweepSpec:
    return SweepSpec(**{**dict(strategy="pairs", symbols=PAIRS, grid=PAIR_GRID, rules=(), fees=0.001,
                               max_pvalue=0.05), **kw})


def rotation_spec(**kw) -> SweepSpec:
    return SweepSpec(**{**dict(strategy="rotation", symbols=BASKETS, grid=ROT_GRID, rules=(), fees=0.001,
                               params_fixed=(("short", True),)), **kw})


def _legs(lake: Lake, unit: str, strategy: str) -> list:
    lg = baskets.legs(strategy, unit)
    _, aligned = baskets.align({s: lake.load_arrays(s, "1Day") for s in lg.data}, lg.data)
    return [bars_from_arrays(dict(aligned[s]), "1Day") for s in lg.data]


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(["symbol", "combo", "split", "regime"]).reset_index(drop=True)


def _fresh(lake: Lake, name: str) -> Lake:
    """Another lake with the same bars: a sweep there starts from nothing."""
    other = Lake(lake.root.parent / name)
    for sym in ("AAPL", "MSFT", "GOOG", "IBM"):
        other.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    return other


def test_pairs_rows_in_the_lake_equal_the_in_memory_screened_sweep(sample_lake_rw):
    spec = pairs_spec()
    job = sweep_job(sample_lake_rw, spec, chunk=3)
    params = spec.combos()[0]
    memory = sweep_pairs({u: tuple(_legs(sample_lake_rw, u, "pairs")) for u in PAIRS}, params, Costs(0.001),
                         max_pvalue=0.05)
    assert [r.passed for r in memory.results] == [True, False] and job.screen["swept"].tolist() == [True, False]
    assert job.n_trials == memory.n_trials == 2 * 8  # the screened-out pair's combinations count too
    rows = _sorted(job.rows)
    assert set(rows["symbol"]) == {"MSFT/IBM"} and rows["combo"].tolist() == list(range(8))
    np.testing.assert_array_equal(rows[list(METRICS)].to_numpy(float), memory.results[0].metrics[:, 0, -1])
    assert (rows["legs"] == "MSFT,IBM").all() and (rows["n_trials"] == 16).all()
    assert np.allclose(rows["coint_pvalue"], memory.results[0].coint.pvalue)
    assert rows["lookback"].tolist() == [p.lookback for p in params]
    stored = connect(sample_lake_rw).execute(
        "SELECT count(*) FROM sweeps WHERE strategy = 'pairs' AND list_contains(string_split(legs, ','), 'IBM')"
    ).fetchone()[0]
    assert stored == len(rows)


def test_rotation_rows_carry_the_basket_and_equal_the_in_memory_grid_per_window(sample_lake_rw):
    spec = rotation_spec(walk_forward="4y:2y")
    job = sweep_job(sample_lake_rw, spec, chunk=5)
    params = spec.combos()[0]
    assert len(params) == 8 and job.n_trials == 16 and job.screen is None
    full = _sorted(job.rows[job.rows["split"] == "full"])
    memory = sweep_rotation({u: (lambda b: (b[:-1], b[-1]))(_legs(sample_lake_rw, u, "rotation")) for u in BASKETS},
                            params, Costs(0.001))
    for name, metrics in zip(memory.names, memory.metrics):
        mine = full[full["symbol"] == name]
        np.testing.assert_array_equal(mine[list(METRICS)].to_numpy(float), metrics[:, 0, -1])
    assert set(job.rows["legs"]) == {"AAPL,MSFT,GOOG", "AAPL,MSFT"} and set(job.rows["bench"]) == {"IBM"}
    assert {"train-00", "test-00", "deploy"} <= set(job.rows["split"]) and job.rows["short"].all()


def test_an_interrupted_pairs_sweep_resumes_to_the_rows_of_an_uninterrupted_one(sample_lake_rw):
    spec = pairs_spec(fees=0.002)
    seen = []

    def die_after_one(done, total):
        seen.append((done, total))
        if done == 1:
            raise KeyboardInterrupt  # the process dies after its first chunk is stored

    with pytest.raises(KeyboardInterrupt):
        sweep_job(sample_lake_rw, spec, chunk=3, progress=die_after_one)
    assert seen == [(0, 3), (1, 3)]  # 8 params of the one swept pair in chunks of 3
    first = table_files(sample_lake_rw, TABLE)[TABLE]
    assert len(first) == 1
    with pytest.raises(ValueError, match="pass --resume"):
        sweep_job(sample_lake_rw, spec, chunk=3)
    resumed_seen = []
    resumed = sweep_job(sample_lake_rw, spec, chunk=3, resume=True, progress=lambda d, t: resumed_seen.append(d))
    assert resumed_seen == [1, 2, 3]  # the stored chunk is skipped, not computed again
    after = table_files(sample_lake_rw, TABLE)[TABLE]
    assert len(after) == 3 and all(after[k] == path for k, path in first.items())  # no chunk stored twice
    plain = sweep_job(_fresh(sample_lake_rw, "fresh"), spec).rows  # one chunk, never interrupted
    pd.testing.assert_frame_equal(_sorted(resumed.rows), _sorted(plain))


def test_dask_gives_the_rows_of_the_local_run(sample_lake_rw):
    from distributed import Client

    local = {s.strategy: sweep_job(sample_lake_rw, s).rows for s in (pairs_spec(), rotation_spec())}
    other = _fresh(sample_lake_rw, "dask")
    with Client(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as client:
        for spec in (pairs_spec(), rotation_spec()):
            remote = sweep_job(other, spec, client=client, chunk=3).rows
            pd.testing.assert_frame_equal(_sorted(remote), _sorted(local[spec.strategy]))


def test_pair_regime_rows_add_up_to_all(sample_lake_rw):
    arr = sample_lake_rw.load_arrays("IBM", "1Day")
    save_regimes(sample_lake_rw, "IBM", regimes_from_daily(arr["ts"], arr["open"], arr["high"], arr["low"],
                                                           arr["close"], RegimeParams()), RegimeParams())
    rows = sweep_job(sample_lake_rw, pairs_spec(symbols=("MSFT/IBM",), by_regime=True)).rows  # IBM: the x leg
    assert "all" in set(rows["regime"]) and rows["regime"].nunique() > 3
    per = rows[rows["regime"] != "all"].groupby("combo")["trades"].sum()
    assert (per == rows[rows["regime"] == "all"].set_index("combo")["trades"]).all()  # trades by entry session


def test_a_unit_without_common_bars_is_refused_in_one_line(sample_lake_rw):
    with pytest.raises(ValueError, match=r"^basket AAPL,ZZZ/IBM: 0 common 1Day bars in the window; need >= 20$"):
        sweep_job(sample_lake_rw, rotation_spec(symbols=("AAPL,ZZZ/IBM",)))
    with pytest.raises(ValueError, match="takes no exit rules"):
        from research.exits import ExitRules

        sweep_job(sample_lake_rw, pairs_spec(rules=(ExitRules(),)))
