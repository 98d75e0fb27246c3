"""The quality gate: each rule names the row and the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_lake.quality import check_bars
from tests.kit import minute_bars


def _daily() -> pd.DataFrame:
    from data_lake.sources.sample import sample_bars
    return sample_bars("IBM").iloc[:10].reset_index(drop=True)


@pytest.mark.parametrize(
    "col, value, reason",
    [
        ("close", np.nan, "close is NaN or infinite"),
        ("open", np.inf, "open is NaN or infinite"),
        ("low", -1.0, "low is not positive"),
        ("high", 0.5, "high < low"),
        ("volume", -5.0, "negative volume"),
    ],
)
def test_price_rules(col, value, reason):
    bars = _daily()
    bars.loc[3, col] = value
    report = check_bars(bars, "1Day")
    assert 4 in report.reasons_by_row() and reason in report.reasons_by_row()[4]
    assert set(report.reasons_by_row()) == {4}


def test_open_and_close_outside_range():
    bars = _daily()
    bars.loc[0, "open"] = bars.loc[0, "high"] + 1
    bars.loc[1, "close"] = bars.loc[1, "low"] - 0.01
    assert check_bars(bars, "1Day").reasons_by_row() == {1: "open outside [low, high]", 2: "close outside [low, high]"}


def test_duplicate_and_out_of_order_timestamps():
    bars = _daily()
    bars.loc[5, "ts"] = bars.loc[4, "ts"]
    bars.loc[8, "ts"] = bars.loc[2, "ts"]
    got = check_bars(bars, "1Day").reasons_by_row()
    assert got[6] == "duplicate timestamp" and got[9] == "timestamp out of order"


def test_minute_outside_session_and_half_day_close():
    bars = minute_bars(["2024-11-29"])  # half day: closes 13:00 ET = 18:00 UTC
    assert len(bars) == 210 and check_bars(bars, "1Min").ok
    late = bars.copy()
    late.loc[209, "ts"] = pd.Timestamp("2024-11-29 18:00", tz="UTC")
    assert check_bars(late, "1Min").reasons_by_row() == {210: "outside the NYSE regular session"}


def test_off_grid_and_non_session_daily():
    bars = minute_bars(["2024-03-04"]).iloc[::5].reset_index(drop=True)
    assert check_bars(bars, "5Min").ok
    shifted = bars.copy()
    shifted.loc[2, "ts"] += pd.Timedelta(minutes=1)
    assert "not aligned to the 5Min grid" in check_bars(shifted, "5Min").reasons_by_row()[3]
    daily = _daily()
    daily.loc[9, "ts"] = pd.Timestamp("2000-03-19 05:00", tz="UTC")  # a Sunday
    assert "not an NYSE session" in check_bars(daily, "1Day").reasons_by_row()[10]
