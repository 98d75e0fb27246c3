"""Parity: the live runner, through the real alpaca-py clients (REST + the trade_updates websocket)
against the simulator in lockstep, makes exactly the backtest's fills, for every daily strategy,
with per-regime params switched by the regime labels; and the check can fail."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from live_bridge.parity import check
from live_bridge.replay import replay
from research.params import DataWindow, ExitRulesModel
from research.regimes import RegimeParams, load_regimes, regimes_from_daily, save_regimes
from tests.kit import entry, params_file

#: Daily strategies and per-regime params (two regimes with different params and exits; the rest flat).
CASES = {
    "sma_cross": ({"fast": 10, "slow": 50, "short": False}, {"fast": 5, "slow": 20, "short": False}),
    "rsi_reversion": ({"n": 14, "short": False}, {"n": 7, "lower": 35.0, "upper": 65.0, "short": False}),
    "breakout": ({"n": 20, "short": False}, {"n": 10, "k": 1.0, "short": False}),
    "sma_convergence": ({"fast": 20, "slow": 100, "converge_pct": 0.05, "short": False},
                        {"fast": 10, "slow": 150, "converge_pct": 0.03, "pullback_window": 8, "short": False}),
}
RULES = (ExitRulesModel(stop_loss=0.02, allow_short=False),
         ExitRulesModel(stop_loss=0.03, trailing_stop=0.04, time_stop=15, allow_short=False))


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from data_lake import Lake
    from data_lake.sources.sample import sample_bars, sample_meta

    lk = Lake(tmp_path_factory.mktemp("parity") / "lake")
    for sym in ("AAPL", "MSFT", "IBM"):
        lk.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    arr = lk.load_arrays("IBM", "1Day")
    save_regimes(lk, "IBM", regimes_from_daily(arr["ts"], arr["open"], arr["high"], arr["low"], arr["close"]),
                 RegimeParams())
    return lk


def per_regime_file(lake, strategy: str):
    labels = load_regimes(lake, "IBM")
    recent = labels[labels["session"] >= pd.Timestamp("2012-03-01")]["label"].value_counts().index[:2].tolist()
    entries = [entry(symbol=sym, regime=reg, strategy=strategy, params=p, exit_rules=r)
               for sym in ("AAPL", "MSFT") for reg, p, r in zip(recent, CASES[strategy], RULES)]
    data = DataWindow(timeframe="1Day", start="2000-01-03", end="2013-03-01", symbols=["AAPL", "MSFT"],
                      bars_hash={"AAPL": "x", "MSFT": "y"}, benchmark="IBM")
    return params_file(entries, data=data)


@pytest.fixture(scope="module")
def sma(lake, tmp_path_factory):
    work = tmp_path_factory.mktemp("sma")
    return replay(lake, per_regime_file(lake, "sma_cross"), "2012-03-01", "2013-03-01", work_dir=work), work


@pytest.mark.parametrize("strategy", sorted(CASES))
def test_live_runner_matches_the_backtest_fill_for_fill(lake, tmp_path, strategy, sma):
    pf = per_regime_file(lake, strategy)

    if strategy == "sma_cross":
        result, tmp_path = sma
    else:
        result = replay(lake, pf, "2012-03-01", "2013-03-01", work_dir=tmp_path)
    parity = check(result)

    assert result.errors == []
    assert parity.ok, parity.first_divergence
    assert len(result.fills) >= 2, "a replay without trades proves nothing"
    assert len(parity.equity) >= 240
    assert (result.fills["client_order_id"].str.startswith(f"tl-{strategy[:9]}")).all()
    lines = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert {"decision", "fill"} <= {x["event"] for x in lines}
    assert all(x["reason"] for x in lines if x["event"] == "decision")


def test_a_divergence_is_found_and_named(sma):
    result, _ = sma
    assert check(result).ok
    moved = result.fills.copy()
    moved.loc[0, "price"] += 0.01  # one fill a cent off
    bad = check(type(result)(**{**result.__dict__, "fills": moved}))
    assert not bad.ok and "fill #1" in bad.first_divergence and "backtest buy" in bad.first_divergence
    fewer = result.fills.iloc[1:].reset_index(drop=True)  # one fill missing
    assert not check(type(result)(**{**result.__dict__, "fills": fewer})).ok
    richer = result.equity.copy()
    richer.iloc[-1] += 1.0  # a dollar of equity from nowhere
    worse = check(type(result)(**{**result.__dict__, "equity": richer}))
    assert not worse.ok and "equity" in worse.first_divergence


def test_stops_are_placed_on_the_entry_fill(sma):
    result, tmp_path = sma
    lines = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    entries = [x for x in lines if x["event"] == "fill" and "-entry-" in x["order"]]
    assert entries and all(any(a.get("type") == "stop" and a["allowed"] for a in x["actions"]) for x in entries)
    stops = {a["order"] for x in entries for a in x["actions"]}
    acks = {x["order"]: x for x in lines if x["event"] == "order"}
    assert all(acks[o]["status"] in ("new", "accepted") for o in stops), "the broker did not take every stop"
    assert np.isfinite(result.equity).all()
