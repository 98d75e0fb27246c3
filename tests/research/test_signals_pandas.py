"""The notebook layer: frames in, frames out on the same index, same numbers as the kernels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_lake.sources.sample import sample_bars
from research.bars import bars_from_arrays
from research.kernels.indicators import rolling_mean_nb, rsi_nb, session_vwap_nb
from research.signals import get
from research.signals.pandas import bars_from_frame, rsi, session_vwap, signals_df, sma
from tests.kit import minute_bars

COLS = ["long_entry", "long_exit", "short_entry", "short_exit"]


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    return sample_bars("AAPL").set_index("ts")[["open", "high", "low", "close", "volume"]].iloc[:600]


@pytest.fixture(scope="module")
def minutes() -> pd.DataFrame:
    return minute_bars(["2024-03-04", "2024-03-05"], seed=3).set_index("ts")


def reference(df: pd.DataFrame, timeframe: str, name: str, **params) -> np.ndarray:
    arrays = {c: df[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
    arrays["ts"] = df.index.as_unit("us").asi8
    s = get(name)
    return np.column_stack(s.signals(bars_from_arrays(arrays, timeframe), s.make_params(**params)))


def test_signals_df_daily_matches_the_signal_function(daily: pd.DataFrame) -> None:
    out = signals_df(daily, "1Day", "rsi_reversion", short=True)
    assert list(out.columns) == COLS and out.index.equals(daily.index)
    assert (out.dtypes == bool).all()
    np.testing.assert_array_equal(out.to_numpy(), reference(daily, "1Day", "rsi_reversion", short=True))
    assert out["long_entry"].any()


def test_daily_index_may_be_naive_dates_or_new_york_midnight(daily: pd.DataFrame) -> None:
    ref = signals_df(daily, "1Day", "breakout", short=True).to_numpy()
    ny = daily.tz_convert("America/New_York")
    naive = daily.set_axis(ny.index.tz_localize(None))
    for frame in (ny, naive):
        out = signals_df(frame, "1Day", "breakout", short=True)
        assert out.index.equals(frame.index)
        np.testing.assert_array_equal(out.to_numpy(), ref)


def test_signals_df_intraday_any_timezone(minutes: pd.DataFrame) -> None:
    ref = reference(minutes, "1Min", "vwap_reversion", window=10, warmup_bars=10, short=True)
    ny = minutes.tz_convert("America/New_York")
    out = signals_df(ny, "1Min", "vwap_reversion", window=10, warmup_bars=10, short=True)
    assert out.index.equals(ny.index)
    np.testing.assert_array_equal(out.to_numpy(), ref)
    assert ref.any()


def test_naive_intraday_index_is_refused(minutes: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        signals_df(minutes.tz_localize(None), "1Min", "gap")


def test_bad_inputs_get_clear_errors(daily: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="did you mean 'short'"):
        signals_df(daily, "1Day", "rsi_reversion", shrt=True)
    with pytest.raises(ValueError, match="unknown strategy"):
        signals_df(daily, "1Day", "rsi_revert")
    with pytest.raises(ValueError, match="single-symbol"):
        signals_df(daily, "1Day", "pairs")
    with pytest.raises(ValueError, match="volume"):
        signals_df(daily.drop(columns="volume"), "1Day", "breakout")
    with pytest.raises(ValueError, match="increasing"):
        signals_df(daily.iloc[::-1], "1Day", "breakout")
    with pytest.raises(ValueError, match="timeframe"):
        bars_from_frame(daily, "1Week")


def test_indicator_wrappers_keep_the_index(daily: pd.DataFrame, minutes: pd.DataFrame) -> None:
    close = daily["close"]
    s = sma(close, 20)
    assert s.index.equals(close.index) and s.name == "close"
    np.testing.assert_array_equal(s.to_numpy(), rolling_mean_nb(close.to_numpy(), 20))
    np.testing.assert_array_equal(rsi(close, 14).to_numpy(), rsi_nb(close.to_numpy(), 14))
    v = session_vwap(minutes, "1Min")
    b = bars_from_frame(minutes, "1Min")
    assert v.index.equals(minutes.index)
    np.testing.assert_array_equal(v.to_numpy(), session_vwap_nb(b.high, b.low, b.close, b.volume, b.session))
    first = minutes.index.tz_convert("America/New_York").time == pd.Timestamp("09:30").time()
    tp = (minutes["high"] + minutes["low"] + minutes["close"]) / 3
    np.testing.assert_allclose(v[first], tp[first])  # the VWAP restarts at each open
