"""Choosing params from a sweep: the choice, its out-of-sample record and the guards, each checked
against an independent recomputation (vectorbt's Portfolio returns, the guards called directly)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.sweep import run_sweep
from research.exits import ExitRules
from research.guards import neighbourhood_stability, pbo_cscv
from research.regimes import RegimeParams, regimes_from_daily, save_regimes
from research.sweep.chunks import DEPLOY, load_symbol
from research.sweep.engine import Costs
from research.sweep.plan import SweepSpec
from research.sweep.select import choices_frame, choose
from research.sweep.vbt import portfolio
from research.walkforward import choose as choose_one

GRID = (("fast", (5, 10, 20, 30)), ("slow", (20, 50, 100, 150)))
RULES = (ExitRules(allow_short=False),)


@pytest.fixture(scope="module")
def swept(sample_lake, tmp_path_factory):
    from data_lake import Lake
    from data_lake.sources.sample import sample_bars, sample_meta

    lake = Lake(tmp_path_factory.mktemp("select") / "lake")
    for sym in ("MSFT", "IBM"):
        lake.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    arr = lake.load_arrays("IBM", "1Day")
    save_regimes(lake, "IBM", regimes_from_daily(arr["ts"], arr["open"], arr["high"], arr["low"], arr["close"],
                                                 RegimeParams()), RegimeParams())
    spec = SweepSpec(strategy="sma_cross", symbols=("MSFT",), grid=GRID, rules=RULES, fees=0.001, by_regime=True,
                     benchmark="IBM", walk_forward="4y:2y")
    results = run_sweep(lake, spec)
    return lake, spec, results, choose(lake, spec, results, "sharpe", min_trades=3)


def _vbt_returns(lake, spec, combo) -> np.ndarray:
    params, rules, _ = spec.combos()
    data = load_symbol(lake, spec, "MSFT")
    pf = portfolio(spec.strategy, data.bars, params[combo // len(rules)], rules[combo % len(rules)],
                   Costs(spec.fees, spec.slippage))
    return np.asarray(pf.returns(), dtype=float)


def test_deploy_window_is_the_last_train_length_window(swept):
    lake, spec, results, _ = swept
    data = load_symbol(lake, spec, "MSFT")
    names = data.window_names
    last_train = data.windows[max(i for i, n in enumerate(names) if n.startswith("train-"))]
    deploy = data.windows[names.index(DEPLOY)]
    assert deploy[1] == len(data.bars) and deploy[1] - deploy[0] == last_train[1] - last_train[0]


def test_choice_is_the_best_eligible_row_and_its_returns_reproduce_its_metrics(swept):
    lake, spec, results, choices = swept
    c = next(x for x in choices if x.regime == "all")
    rows = results[(results.split == DEPLOY) & (results.regime == "all")].sort_values("combo")
    assert c.window == DEPLOY and c.combo == int(rows.iloc[choose_one(rows, "sharpe", 3)]["combo"])
    r = c.is_returns.to_numpy()
    assert r.mean() / r.std(ddof=1) * np.sqrt(252) == pytest.approx(c.in_sample["sharpe"], rel=1e-9)
    assert c.n_trials == len(spec.combos()[0]) * len(RULES)
    assert 0.0 <= c.deflated_sharpe <= 1.0 and 0.0 <= c.pbo <= 1.0 and 0.0 <= c.stability <= 1.0


def test_out_of_sample_is_stitched_from_train_choices_scored_on_test(swept):
    lake, spec, results, choices = swept
    c = next(x for x in choices if x.regime == "all")
    data = load_symbol(lake, spec, "MSFT")
    parts, trades = [], 0
    rows = results[results.regime == "all"]
    for train in sorted(s for s in rows.split.unique() if s.startswith("train-")):
        tr = rows[rows.split == train].sort_values("combo")
        combo = int(tr.iloc[choose_one(tr, "sharpe", 3)]["combo"])
        test = train.replace("train", "test")
        a, b = data.windows[data.window_names.index(test)]
        parts.append(_vbt_returns(lake, spec, combo)[a:b])  # vectorbt's own accounting
        trades += int(rows[(rows.split == test) & (rows.combo == combo)]["trades"].iloc[0])
    oos = np.concatenate(parts)
    np.testing.assert_allclose(c.oos_returns.to_numpy(), oos, rtol=1e-9, atol=1e-12)
    assert c.out_of_sample["sharpe"] == pytest.approx(oos.mean() / oos.std(ddof=1) * np.sqrt(252), rel=1e-9)
    assert c.oos_trades == trades
    assert c.out_of_sample["total_return"] == pytest.approx(np.prod(1 + oos) - 1, rel=1e-9)


def test_pbo_and_stability_match_the_guards_called_directly(swept):
    lake, spec, results, choices = swept
    c = next(x for x in choices if x.regime == "all")
    rows = results[(results.split == DEPLOY) & (results.regime == "all")].sort_values("combo")
    data = load_symbol(lake, spec, "MSFT")
    a, b = data.windows[data.window_names.index(DEPLOY)]
    matrix = np.stack([_vbt_returns(lake, spec, int(k))[a:b] for k in rows.combo], axis=1)  # 13 combos < 256
    assert c.pbo == pytest.approx(pbo_cscv(matrix, n_splits=16).pbo, abs=1e-12)
    grid = rows.pivot_table(index="fast", columns="slow", values="sharpe", dropna=False)
    grid = grid.reindex(index=sorted(dict(GRID)["fast"]), columns=sorted(dict(GRID)["slow"]))
    at = (list(grid.index).index(c.params["fast"]), list(grid.columns).index(c.params["slow"]))
    assert c.stability == pytest.approx(neighbourhood_stability(grid.to_numpy(), at), abs=1e-12)


def test_regime_cells_and_flat_cells(swept):
    lake, spec, results, choices = swept
    frame = choices_frame(choices)
    assert set(frame.regime) == set(results.regime) and frame.groupby("regime").size().max() == 1
    flat = frame[frame.combo.isna()]
    assert len(flat) and flat.notes.str.contains(">= 3 trades").all()  # no eligible combo: named, not guessed
    picked = [c for c in choices if c.combo is not None and c.regime != "all"]
    data = load_symbol(lake, spec, "MSFT")
    for c in picked:  # a regime cell's returns are exactly its bars' returns
        code = data.regime_names.index(c.regime)
        a, b = data.windows[data.window_names.index(DEPLOY)]
        expect = pd.to_datetime(data.ts[a:b][data.regimes[a:b] == code], unit="us", utc=True)
        assert c.is_returns.index.equals(expect)


def test_choose_names_missing_data(swept):
    lake, spec, results, _ = swept
    with pytest.raises(ValueError, match="no rows for MSFT"):
        choose(lake, spec, results[results.symbol != "MSFT"], "sharpe")
    with pytest.raises(ValueError, match="unknown objective"):
        choose(lake, spec, results, "alpha")
