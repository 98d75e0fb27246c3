"""Choosing among strategies per (symbol, regime): the comparable number, ties, flats, pooled trials.

Hand-made choices and sweep rows (the nightly test, tests/pipeline/test_nightly.py, runs the real
sweeps); every figure here is recomputed from the rows the test builds.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from research.guards import deannualize_sharpe_variance, deflated_sharpe, sharpe_stats
from research.sweep.across import comparable, pick_strategies
from research.sweep.plan import SweepSpec
from research.sweep.select import Choice

RETURNS = pd.Series(np.random.default_rng(3).normal(0.001, 0.01, 300),
                    index=pd.date_range("2020-01-01", periods=300, freq="D", tz="UTC"))


def choice(regime: str = "up", oos: float | None = 0.5, combo: int | None = 0, n_trials: int = 4,
           **over) -> Choice:
    values = dict(symbol="AAPL", regime=regime, window="deploy", combo=combo, in_sample={"sharpe": 2.0},
                  out_of_sample=None if oos is None else {"sharpe": oos, "calmar": oos / 2},
                  n_trials=n_trials, deflated_sharpe=0.5, is_returns=RETURNS if combo is not None else None)
    return Choice(**{**values, **over})


def run(strategy: str, *choices: Choice, sharpes=(0.1, 0.4, 0.9, 1.3)):
    """A strategy's sweep rows (deploy window, one row per combination per cell) and its choices."""
    rows = pd.DataFrame([{"symbol": c.symbol, "regime": c.regime, "split": "deploy", "combo": k, "sharpe": s}
                         for c in choices for k, s in enumerate(sharpes)])
    spec = SweepSpec(strategy=strategy, symbols=("AAPL",), grid=(), rules=())
    return SimpleNamespace(strategy=strategy, spec=spec, results=rows, choices=tuple(choices))


def test_the_best_out_of_sample_objective_wins_whatever_the_in_sample_figure():
    a = run("sma_cross", choice(oos=0.3, in_sample={"sharpe": 3.0}))
    b = run("rsi_reversion", choice(oos=0.8, in_sample={"sharpe": 1.0}))

    [pick] = pick_strategies([a, b], "sharpe")

    assert pick.strategy == "rsi_reversion" and pick.measure == "out-of-sample sharpe"
    assert pick.note == "AAPL up: rsi_reversion chosen by out-of-sample sharpe (sma_cross 0.3, rsi_reversion 0.8)"


def test_ties_go_to_the_first_strategy_and_undefined_or_flat_never_beat_a_number():
    tie = pick_strategies([run("sma_cross", choice(oos=0.5)), run("rsi_reversion", choice(oos=0.5))])
    nan = pick_strategies([run("sma_cross", choice(oos=math.nan)), run("rsi_reversion", choice(oos=-0.2))])
    flat = pick_strategies([run("sma_cross", choice(oos=2.0, combo=None)), run("rsi_reversion", choice(oos=-0.2))])

    assert [p[0].strategy for p in (tie, nan, flat)] == ["sma_cross", "rsi_reversion", "rsi_reversion"]
    assert "sma_cross flat" in flat[0].note


def test_a_cell_where_nothing_is_eligible_is_flat_with_every_trial_counted():
    [pick] = pick_strategies([run("sma_cross", choice(combo=None, n_trials=6)),
                              run("rsi_reversion", choice(combo=None, n_trials=4))])

    assert pick.strategy == "sma_cross" and pick.choice.combo is None and pick.choice.n_trials == 10
    assert pick.note.startswith("AAPL up: no strategy has a combination with enough trades")


def test_the_deflated_sharpe_counts_every_strategys_trials():
    a = run("sma_cross", choice(oos=0.9, n_trials=6), sharpes=(0.1, 0.4, 0.9, 1.3))
    b = run("rsi_reversion", choice(oos=0.1, n_trials=4), sharpes=(-0.5, 0.0, 2.5, 0.2))

    [pick] = pick_strategies([a, b])

    st = sharpe_stats(RETURNS.to_numpy())
    var = deannualize_sharpe_variance(float(np.var([0.1, 0.4, 0.9, 1.3, -0.5, 0.0, 2.5, 0.2], ddof=1)), 252.0)
    assert pick.choice.n_trials == 10
    assert pick.choice.deflated_sharpe == pytest.approx(deflated_sharpe(st.sr, st.n_obs, st.skew, st.kurt, 10, var))


def test_the_comparable_number_per_objective_and_without_walk_forward():
    c = choice(oos=0.6)

    assert comparable(c, "calmar") == (0.3, "out-of-sample calmar")
    assert comparable(c, "expectancy") == (0.6, "out-of-sample sharpe")  # no per-trade figure out of sample
    assert comparable(choice(oos=None, window="full"), "sharpe") == (2.0, "in-sample sharpe (full window)")


def test_cells_are_per_symbol_and_regime_and_strategies_must_not_repeat():
    picks = pick_strategies([run("sma_cross", choice("up", 0.9), choice("down", 0.1)),
                             run("rsi_reversion", choice("up", 0.2), choice("down", 0.4))])

    assert [(p.regime, p.strategy) for p in picks] == [("up", "sma_cross"), ("down", "rsi_reversion")]
    with pytest.raises(ValueError, match="strategies repeat: sma_cross, sma_cross"):
        pick_strategies([run("sma_cross", choice()), run("sma_cross", choice())])


def test_a_winner_with_an_undefined_number_is_named_as_such_not_as_chosen_by_it():
    [pick] = pick_strategies([run("sma_cross", choice(oos=math.nan)), run("rsi_reversion", choice(oos=0.4, combo=None))])

    assert pick.strategy == "sma_cross"
    assert "chosen by" not in pick.note
    assert "its out-of-sample sharpe is undefined, which the gate refuses" in pick.note
