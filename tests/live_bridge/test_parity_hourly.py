"""1Hour parity on Alpaca-style input (issue 15, item 3): the simulator holds half-hour bars made from
minute bars, as Alpaca does, so its own 1Hour bars are clock-aligned (09:00, 10:00). The runner asks
for half hours and builds the lake's session-aligned hours (09:30, 10:30) itself; its fills equal the
backtest's on the lake's 1Hour bars, fill for fill."""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from live_bridge.parity import check
from live_bridge.replay import _half_hours, replay
from simulator import market_data_app, serve
from research.params import DataWindow, ExitRulesModel
from tests.kit import entry, params_file

SEEDS = {"AAA": 5, "BBB": 1}
START, END = "2024-03-04", "2024-03-09"
RULES = ExitRulesModel(stop_loss=0.01, allow_short=False)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from data_lake import Lake
    from data_lake.resample import resample_lake
    from data_lake.sources.synthetic import synthetic_bars, synthetic_meta

    lk = Lake(tmp_path_factory.mktemp("parity-hourly") / "lake")
    for sym, seed in SEEDS.items():
        lk.write_bars(sym, "1Min", synthetic_bars(sym, 20, seed, end="2024-03-08"), synthetic_meta())
        resample_lake(lk, sym, "1Hour")
    return lk


def hour_file():
    entries = [entry(symbol=s, strategy="sma_cross", params={"fast": 3, "slow": 8}, exit_rules=RULES) for s in SEEDS]
    data = DataWindow(timeframe="1Hour", start="2024-02-09", end="2024-03-08", symbols=list(SEEDS),
                      bars_hash={s: "synthetic" for s in SEEDS})
    return params_file(entries, data=data)


def test_the_simulator_serves_clock_aligned_hours_as_alpaca_does(lake):
    halves = _half_hours(lake, ["AAA"], pd.Timestamp(START), pd.Timestamp(END))["AAA"]
    with serve(market_data_app({("AAA", "30Min"): halves}, api_key="k", secret_key="s")) as sim:
        r = requests.get(f"{sim.url}/v2/stocks/bars", headers={"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"},
                         params={"symbols": "AAA", "timeframe": "1Hour", "start": "2024-03-04T00:00:00Z",
                                 "end": "2024-03-05T00:00:00Z"}, timeout=5).json()
    stamps = [pd.Timestamp(b["t"]).tz_convert("America/New_York").strftime("%H:%M") for b in r["bars"]["AAA"]]
    assert stamps[:3] == ["09:00", "10:00", "11:00"]  # what a runner asking Alpaca for 1Hour would trade on


@pytest.fixture(scope="module")
def result(lake, tmp_path_factory):
    return replay(lake, hour_file(), START, END, work_dir=tmp_path_factory.mktemp("hourly"))


def test_hourly_replay_matches_the_backtest_fill_for_fill(result):
    parity = check(result)
    assert result.errors == []
    assert parity.ok, parity.first_divergence
    assert len(result.fills) >= 4, "a replay without trades proves nothing"
    assert len(parity.equity) == 5 * 7  # every session-aligned hour of five sessions


def test_the_runner_decided_on_the_lakes_hours_and_their_closes(result):
    """What the runner built from the simulator's half hours is the lake's 1Hour bars, bar for bar."""
    for sym in SEEDS:
        mine = [d for d in result.decisions if getattr(d, "symbol", None) == sym]
        lake = result.bars[sym]
        assert [d.bar_time for d in mine] == list(lake["ts"])  # 09:30, 10:30, ..., 15:30: every hour once
        assert [d.close for d in mine] == pytest.approx(list(lake["close"]), rel=1e-12)
