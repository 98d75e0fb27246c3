"""Session-aligned resampling, hand-checked, half days included."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_lake import BarMeta, Feed, Lake
from data_lake.resample import resample_bars, resample_lake
from tests.kit import minute_bars


def test_five_minute_bar_by_hand():
    m = minute_bars(["2024-03-04"])
    five = resample_bars(m, "5Min")
    first = m.iloc[:5]
    assert five["ts"].iloc[0] == pd.Timestamp("2024-03-04 14:30", tz="UTC")
    assert five.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [
        first["open"].iloc[0], first["high"].max(), first["low"].min(), first["close"].iloc[-1], first["volume"].sum()]
    assert five["vwap"].iloc[0] == np.average(first["vwap"], weights=first["volume"])
    assert five["trade_count"].iloc[0] == first["trade_count"].sum()
    assert len(five) == 78


def test_hourly_buckets_start_at_the_open_and_half_day_ends_at_one():
    m = minute_bars(["2024-11-29"])  # half day
    hour = resample_bars(m, "1Hour")
    ny = hour["ts"].dt.tz_convert("America/New_York").dt.strftime("%H:%M").tolist()
    assert ny == ["09:30", "10:30", "11:30", "12:30"]
    assert hour["close"].iloc[-1] == m["close"].iloc[-1] and hour["volume"].sum() == m["volume"].sum()


def test_daily_bar_is_the_session():
    m = minute_bars(["2024-03-04", "2024-03-05"])
    day = resample_bars(m, "1Day")
    assert day["ts"].tolist() == [pd.Timestamp("2024-03-04 05:00", tz="UTC"), pd.Timestamp("2024-03-05 05:00", tz="UTC")]
    assert day["high"].iloc[1] == m["high"].iloc[390:].max() and day["open"].iloc[1] == m["open"].iloc[390]


def test_resample_is_prefix_invariant():
    m = minute_bars(["2024-03-04"])
    full = resample_bars(m, "15Min")
    cut = resample_bars(m.iloc[:150], "15Min")  # 150 minutes = 10 complete buckets
    pd.testing.assert_frame_equal(full.iloc[:10], cut)


def test_resample_lake_writes_valid_bars(lake: Lake):
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-11-27", "2024-11-29"]), BarMeta("synthetic", Feed.SYNTHETIC))
    for tf in ("5Min", "15Min", "1Hour", "1Day"):
        resample_lake(lake, "XYZ", tf)
    assert len(lake.read_bars("XYZ", "1Hour")) == 7 + 4
    d = lake.read_bars("XYZ", "1Day")
    assert d["source"].unique().tolist() == ["resample:1Min"] and d["feed"].unique().tolist() == ["synthetic"]
