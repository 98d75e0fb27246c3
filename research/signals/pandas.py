"""Thin pandas wrappers for notebooks: frames in, frames out, index preserved.

The signal functions and kernels stay index-free (numpy in, numpy out); this layer only converts a
DatetimeIndex'd OHLCV frame to ``Bars`` and puts results back on the frame's index.

Timestamps: intraday frames need a tz-aware index (any zone; converted to UTC). For 1Day frames
each stamp names its session by its calendar date in the index's own zone, so a naive date index,
midnight New York and the lake's own stamps all work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data_lake.calendar import session_stamp
from data_lake.schema import TIMEFRAMES

from ..bars import Bars, bars_from_arrays
from ..kernels.indicators import ema_nb, rolling_mean_nb, rsi_nb, session_vwap_nb
from . import get

OHLCV = ("open", "high", "low", "close", "volume")


def _ts_us(index: pd.Index, timeframe: str) -> np.ndarray:
    """int64 UTC microseconds of the bar stamps, as ``bars_from_arrays`` expects them."""
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"the frame needs a DatetimeIndex, got {type(index).__name__}")
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise ValueError("the frame's index must be strictly increasing (oldest bar first)")
    if TIMEFRAMES[timeframe] == 0:
        dates = index.tz_localize(None) if index.tz is not None else index
        return session_stamp(dates).asi8.copy()
    if index.tz is None:
        raise ValueError("intraday frames need a tz-aware index (tz_localize it: naive NY times "
                         "read as UTC would fall inside the wrong hours)")
    return index.tz_convert("UTC").as_unit("us").asi8.copy()


def bars_from_frame(df: pd.DataFrame, timeframe: str) -> Bars:
    """Bars from a frame with open/high/low/close/volume columns and a DatetimeIndex."""
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}: use one of {', '.join(TIMEFRAMES)}")
    missing = [c for c in OHLCV if c not in df.columns]
    if missing:
        raise ValueError(f"the frame lacks column(s) {', '.join(missing)}")
    arrays = {c: df[c].to_numpy(dtype=np.float64) for c in OHLCV}
    arrays["ts"] = _ts_us(df.index, timeframe)
    return bars_from_arrays(arrays, timeframe)


def signals_df(df: pd.DataFrame, timeframe: str, strategy_name: str, **params: Any) -> pd.DataFrame:
    """One strategy's signals on df's bars: bool columns long_entry, long_exit, short_entry, short_exit."""
    strategy = get(strategy_name)
    if getattr(strategy, "kind", "single") != "single":
        raise ValueError(f"{strategy_name} is a {strategy.kind} strategy: signals_df serves single-symbol "
                         "ones (see its module for its own inputs)")
    p = strategy.make_params(**params)
    sig = strategy.signals(bars_from_frame(df, timeframe), p)
    return pd.DataFrame(sig._asdict(), index=df.index)


def sma(series: pd.Series, n: int) -> pd.Series:
    """Simple moving average over the last n values (NaN for the first n-1)."""
    return pd.Series(rolling_mean_nb(series.to_numpy(np.float64), n), index=series.index, name=series.name)


def ema(series: pd.Series, n: int) -> pd.Series:
    """Exponential moving average (alpha 2/(n+1), SMA seed), as ``research.kernels.indicators.ema_nb``."""
    return pd.Series(ema_nb(series.to_numpy(np.float64), n), index=series.index, name=series.name)


def rsi(series: pd.Series, n: int = 14) -> pd.Series:
    """Wilder's RSI(n) (NaN for the first n values)."""
    return pd.Series(rsi_nb(series.to_numpy(np.float64), n), index=series.index, name="rsi")


def session_vwap(df: pd.DataFrame, timeframe: str) -> pd.Series:
    """Cumulative VWAP of the typical price since each session's first bar."""
    b = bars_from_frame(df, timeframe)
    return pd.Series(session_vwap_nb(b.high, b.low, b.close, b.volume, b.session), index=df.index,
                     name="vwap")
