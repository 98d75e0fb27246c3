"""Data faults: a bar with a bad price is refused, never traded on; bars missing for N intervals (a
halted symbol) mean an alert and no new entry on the first bar back; a half-day session trades
exactly like the backtest, flat before its early close. Real runner, alpaca-py, simulator."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from data_lake import Lake
from data_lake.calendar import nyse
from data_lake.sources.synthetic import synthetic_bars, synthetic_meta
from live_bridge.parity import check
from live_bridge.replay import replay
from live_bridge.runner import Runner, RunnerConfig
from live_bridge.sleeves import decide, sleeves
from live_bridge.state import StateStore
from research.params import DataWindow, ExitRulesModel
from tests.live_bridge.test_alpaca_adapter import simulator
from tests.kit import entry, params_file

SMA = {"fast": 2, "slow": 5, "short": False}
RULES = ExitRulesModel(stop_loss=0.05, allow_short=False)


def daily_file(symbol: str, start: str, end: str):
    return params_file([entry(symbol=symbol, params=SMA, exit_rules=RULES)],
                       data=DataWindow(timeframe="1Day", start=start, end=end, symbols=[symbol],
                                       bars_hash={symbol: "synthetic"}))


def halted_bars() -> tuple[pd.DataFrame, pd.Timestamp]:
    """Daily bars (SYNTHETIC, by hand): a slow fall, a 6-session halt (no bars), then a jump up on the
    first session back: a fresh sma crossing exactly on the bar after the gap."""
    days = nyse().dates
    days = days[(days >= pd.Timestamp("2023-09-01")) & (days < pd.Timestamp("2024-03-01"))]
    close = 100 * np.exp(np.cumsum(np.where(np.arange(len(days)) % 2, 0.004, -0.006)))
    halt = (days >= pd.Timestamp("2024-01-22")) & (days < pd.Timestamp("2024-01-30"))
    back = int(np.argmax(days >= pd.Timestamp("2024-01-30")))
    close[back:] *= 1.08
    open_ = np.r_[close[0], close[:-1]]
    ts = pd.DatetimeIndex(days).tz_localize("America/New_York").tz_convert("UTC")
    df = pd.DataFrame({"ts": ts, "open": open_, "high": np.maximum(open_, close) * 1.002,
                       "low": np.minimum(open_, close) * 0.998, "close": close, "volume": 1e6})
    return df[~halt].reset_index(drop=True), ts[back]


def test_a_halted_symbol_alerts_and_does_not_enter_on_the_first_bar_back(tmp_path, chaos):
    bars, back = halted_bars()
    lake = Lake(tmp_path / "lake")
    lake.write_bars("HALT", "1Day", bars, synthetic_meta())
    pf = daily_file("HALT", "2023-09-01", "2024-02-29")
    # the backtest (the same signal over the same bars) enters on the bar after the gap
    arrays = lake.load_arrays("HALT", "1Day")
    keep = {c: a[arrays["ts"] <= back.value // 1000] for c, a in arrays.items()}
    d, _ = decide(sleeves(pf)[0], keep, "1Day", None)
    assert d.target == 1 and d.position == 0, "the case must want an entry on the first bar back"

    result = replay(lake, pf, "2023-12-01", "2024-03-01", work_dir=tmp_path / "run")

    chaos["faults_injected"] += 1
    lines = [json.loads(x) for x in (tmp_path / "run" / "decisions.jsonl").read_text().splitlines()]
    gaps = [x for x in lines if x["event"] == "data_gap"]
    assert len(gaps) == 1 and pd.Timestamp(gaps[0]["bar_time"]) == back and "6 bars missing" in gaps[0]["message"]
    at_back = [x for x in lines if x["event"] == "decision" and pd.Timestamp(x["bar_time"]) == back]
    assert at_back and any("data gap" in a.get("skip", "") for a in at_back[0]["actions"])
    assert not result.fills["client_order_id"].str.contains(f"-{back.tz_convert('UTC'):%Y%m%dT%H%M}-entry-").any()
    assert result.errors == []
    parity = check(result)  # the one named divergence: the entry refused on 01-30 would have filled on 01-31
    assert not parity.ok and "backtest buy" in parity.first_divergence and "2024-01-31" in parity.first_divergence


@pytest.mark.parametrize("bad, why", [
    (dict(close=0.0), "non-positive price"),
    (dict(low=float("nan")), "missing or non-positive price"),
    (dict(high=99.0, low=101.5), "inconsistent bar"),
    (dict(open=1000.0, high=1001.0, close=1000.5), "from the previous close"),
    (dict(volume=-5.0), "bad volume"),
])
def test_a_bar_with_a_bad_price_is_refused_not_traded_on(tmp_path, chaos, bad, why):
    rows = [(100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 1000) for i in range(8)]
    with simulator(rows) as s, StateStore(tmp_path / "state.db") as store:
        s.clock.step()
        ts0 = pd.Timestamp("2024-01-02 14:30", tz="UTC")
        n = 40
        prev_close = pd.Timestamp("2023-12-29 21:00", tz="UTC")  # the warm-up: the last 40 minutes of 2023
        history = {"AAPL": {"ts": (prev_close - pd.to_timedelta(np.arange(n, 0, -1), "min")).as_unit("us").asi8,
                            "open": np.full(n, 100.0), "high": np.full(n, 101.0), "low": np.full(n, 99.0),
                            "close": np.full(n, 100.0), "volume": np.full(n, 1000.0)}}
        pf = params_file([entry(params={"fast": 2, "slow": 5, "short": False}, exit_rules=RULES)],
                         data=DataWindow(timeframe="1Min", start="2024-01-02", end="2024-01-02", symbols=["AAPL"],
                                         bars_hash={"AAPL": "x"}))
        runner = Runner(s.broker, pf, history, {}, store, RunnerConfig(timeframe="1Min",
                                                                       decision_log=tmp_path / "d.jsonl"))
        runner.start()
        good = dict(symbol="AAPL", ts=ts0, open=100.0, high=101.0, low=99.5, close=100.5, volume=1000.0)
        runner.on_bar(SimpleNamespace(**{**good, **bad}))
        runner.settle(10)
        chaos["faults_injected"] += 1
        assert len(runner.decisions) == 0 and len(runner.history["AAPL"]["ts"]) == n, "the bad bar was used"
        assert [a["event"] for a in runner.alerts] == ["bad_bar"] and why in runner.alerts[0]["message"]
        runner.on_bar(SimpleNamespace(**good))  # the corrected bar: decided on as usual
        runner.settle(10)
        runner.stop()
        assert len(runner.decisions) == 1 and runner.errors == []
        assert s.sim.orders() == [] or all(o.client_order_id.startswith("tl-") for o in s.sim.orders())


def test_a_half_day_session_trades_like_the_backtest_and_is_flat_before_the_early_close(tmp_path, chaos):
    lake = Lake(tmp_path / "lake")
    lake.write_bars("HALF", "1Min", synthetic_bars("HALF", 8, 3, end="2024-07-05"), synthetic_meta())
    pf = params_file([entry(symbol="HALF", strategy="sma_cross", params={"fast": 10, "slow": 30},
                            exit_rules=ExitRulesModel(stop_loss=0.01, flat_at_close=True, allow_short=False))],
                     data=DataWindow(timeframe="1Min", start="2024-06-25", end="2024-07-05", symbols=["HALF"],
                                     bars_hash={"HALF": "synthetic"}))

    result = replay(lake, pf, "2024-07-03", "2024-07-04", work_dir=tmp_path / "run")  # 07-03 closes at 13:00

    chaos["faults_injected"] += 1
    parity = check(result)
    assert parity.ok, parity.first_divergence
    f = result.fills
    assert len(f) >= 2, "no trade on the half day proves nothing"
    ny = pd.DatetimeIndex(f["ts"]).tz_convert("America/New_York")
    assert (ny <= pd.Timestamp("2024-07-03 13:00", tz="America/New_York")).all()
    last = result.equity.index.max().tz_convert("America/New_York")
    assert last.hour == 12 and last.minute == 59, "the replay ends with the session's last minute bar"
    net = (np.where(f["side"] == "buy", 1, -1) * f["qty"]).sum()
    assert net == 0, "flat at the early close"


def test_no_bar_for_n_intervals_of_an_open_session_raises_a_stale_data_alert(tmp_path, chaos):
    rows = [(100.0, 101.0, 99.0, 100.5, 1000)] * 8
    with simulator(rows) as s, StateStore(tmp_path / "state.db") as store:
        pf = params_file([entry(params={"fast": 2, "slow": 5, "short": False}, exit_rules=RULES)],
                         data=DataWindow(timeframe="1Min", start="2024-01-02", end="2024-01-02", symbols=["AAPL"],
                                         bars_hash={"AAPL": "x"}))
        first = pd.Timestamp("2024-01-02 14:30", tz="UTC")
        history = {"AAPL": {"ts": np.array([first.value // 1000]), **{c: np.array([100.0]) for c in
                                                                       ("open", "high", "low", "close", "volume")}}}
        runner = Runner(s.broker, pf, history, {}, store, RunnerConfig(timeframe="1Min", snapshot_seconds=0.2))
        runner.start()
        for _ in range(3):  # 2 minutes without a bar: within max_missing_bars
            s.clock.step()
        runner.settle(5)
        time.sleep(0.5)
        assert runner.alerts == []
        for _ in range(4):  # 6 minutes: more than max_missing_bars + 1 intervals
            s.clock.step()
        deadline = time.monotonic() + 5
        while not runner.alerts and time.monotonic() < deadline:
            time.sleep(0.05)
        runner.stop()
        chaos["faults_injected"] += 1
        assert [a["event"] for a in runner.alerts] == ["stale_data"] and runner.alerts[0]["symbol"] == "AAPL"
