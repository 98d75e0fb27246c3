"""Live bars above 1Min are the lake's bars: built from Alpaca's clock-aligned bars exactly as the lake
builds them, completed bars only (issue 15, item 3). Real alpaca-py against the simulator, which
aggregates its minute bars clock-aligned as Alpaca does."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from data_lake.resample import resample_bars
from live_bridge.alpaca.bars import RestBars
from live_bridge.history import History
from simulator import market_data_app, serve
from tests.kit import minute_bars

KEY, SECRET = "rest-bars-key", "rest-bars-secret"
DAYS = ["2024-11-27", "2024-11-29", "2024-12-02"]  # 11-29: a half day (13:00 close)


def _ny(text: str) -> datetime:
    return pd.Timestamp(text, tz="America/New_York").tz_convert("UTC").to_pydatetime()


@pytest.fixture(scope="module")
def minutes() -> pd.DataFrame:
    bars = minute_bars(DAYS, seed=5)
    return bars.drop(index=bars.index[150:180]).reset_index(drop=True)  # a half hour without trades (11-27)


@pytest.fixture(scope="module")
def sim(minutes):
    pre = minutes.iloc[:3].assign(ts=minutes["ts"].iloc[:3] - pd.Timedelta(hours=5))  # 04:30 ET: extended hours
    frame = pd.concat([pre, minutes], ignore_index=True)
    with serve(market_data_app({("SYN", "1Min"): frame}, api_key=KEY, secret_key=SECRET)) as s:
        yield s


def _rest(sim, tf: str) -> RestBars:
    r = RestBars(KEY, SECRET, tf, url_override=sim.url, retry_wait=0.0)
    r.last["SYN"] = _ny("2024-11-26 16:00")
    return r


def _frame(bars) -> pd.DataFrame:
    return pd.DataFrame({"ts": [pd.Timestamp(b.ts) for b in bars], "open": [b.open for b in bars],
                         "high": [b.high for b in bars], "low": [b.low for b in bars], "close": [b.close for b in bars],
                         "volume": [b.volume for b in bars], "vwap": [b.vwap for b in bars],
                         "trade_count": [b.trade_count for b in bars]})


@pytest.mark.parametrize("tf", ["5Min", "15Min", "1Hour"])
def test_live_bars_equal_the_lakes_resampled_bars(sim, minutes, tf):
    got = _frame(_rest(sim, tf).since(["SYN"], _ny("2024-12-03 09:00")))
    want = resample_bars(minutes, tf)
    assert len(got) == len(want)
    assert (got["ts"].dt.as_unit("us") == want["ts"]).all()
    for c in ("open", "high", "low", "close", "volume", "vwap"):
        assert np.allclose(got[c].to_numpy(float), want[c].to_numpy(float), rtol=1e-12), c
    assert (got["trade_count"].to_numpy(float) == want["trade_count"].to_numpy(float)).all()
    if tf == "1Hour":
        ny = got["ts"].dt.tz_convert("America/New_York")
        assert set(ny.dt.minute) == {30} and ny.dt.hour.min() == 9  # 09:30, 10:30, ...: never Alpaca's 10:00
        half = ny[ny.dt.date == pd.Timestamp("2024-11-29").date()]
        assert [t.strftime("%H:%M") for t in half] == ["09:30", "10:30", "11:30", "12:30"]  # the half day


def test_an_hour_is_delivered_once_complete_and_never_twice(sim):
    rest = _rest(sim, "1Hour")
    first = rest.since(["SYN"], _ny("2024-12-02 11:10"))  # 10:30-11:30 is in progress
    assert pd.Timestamp(first[-1].ts).tz_convert("America/New_York").strftime("%m-%d %H:%M") == "12-02 09:30"
    assert rest.since(["SYN"], _ny("2024-12-02 11:20")) == []
    later = rest.since(["SYN"], _ny("2024-12-02 11:30"))  # its last half hour (11:00) has ended
    assert [pd.Timestamp(b.ts).tz_convert("America/New_York").strftime("%H:%M") for b in later] == ["10:30"]


def test_an_hour_whose_last_half_had_no_trades_waits_for_the_grace(sim):
    """11-27 12:00-12:29 has no minute bars: Alpaca sends no 12:00 half hour, so 11:30-12:30 is held
    until two minutes after its end, then delivered from its first half, as the lake rolls it up."""
    rest = _rest(sim, "1Hour")
    rest.last["SYN"] = _ny("2024-11-27 10:30")
    assert [b.ts for b in rest.since(["SYN"], _ny("2024-11-27 12:31"))] == []
    held = rest.since(["SYN"], _ny("2024-11-27 12:33"))
    assert [pd.Timestamp(b.ts).tz_convert("America/New_York").strftime("%H:%M") for b in held] == ["11:30"]


def test_a_daily_bar_waits_for_its_close(sim):
    rest = _rest(sim, "1Day")
    got = rest.since(["SYN"], _ny("2024-11-29 12:00"))  # the half day is in progress
    assert [pd.Timestamp(b.ts).tz_convert("America/New_York").strftime("%m-%d %H:%M") for b in got] == ["11-27 00:00"]
    got = rest.since(["SYN"], _ny("2024-11-29 13:00"))  # closed at 13:00
    assert [pd.Timestamp(b.ts).tz_convert("America/New_York").strftime("%m-%d") for b in got] == ["11-29"]


def test_a_bar_off_the_lakes_grid_is_refused_by_the_history():
    h = History({}, "1Hour")
    ten = int(pd.Timestamp("2024-12-02 10:00", tz="America/New_York").value // 1000)
    with pytest.raises(ValueError, match="off the lake's 1Hour grid"):
        h.append(ten, 1, 1, 1, 1, 1)
    assert h.append(ten - 30 * 60_000_000, 1, 1, 1, 1, 1)  # 09:30: on the grid
