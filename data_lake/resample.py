"""Resample intraday bars to coarser, session-aligned bars.

Buckets are counted from each session's open, not from the clock: 5Min bars start at 09:30,
09:35, ...; 1Hour bars at 09:30, 10:30, ..., 15:30 (the last one covers 30 minutes); on a half
day the session, and so the last bucket, ends at 13:00. A 1Day bar is one whole session, stamped
00:00 New York like every 1Day bar in the lake. (Alpaca's own 1Hour bars are clock-aligned and
include extended hours; ours are not, which is why the lake resamples rather than mixing both.)

Aggregation: open = first, high = max, low = min, close = last, volume = sum,
trade_count = sum, vwap = volume-weighted mean of the bars' vwaps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .calendar import US_PER_MIN, nyse, session_index
from .schema import TIMEFRAMES, BarMeta, LakeError, check_timeframe
from .store import Lake, WriteResult, normalize_frame


def resample_arrays(ts: np.ndarray, o, h, l, c, v, vwap, tc, to: str) -> dict[str, np.ndarray]:  # noqa: E741
    """Resample sorted intraday bars given as arrays (ts in UTC microseconds) to ``to``."""
    to = check_timeframe(to)
    sessions = nyse()
    sidx = session_index(ts, sessions)
    if (sidx < 0).any():
        raise LakeError("cannot resample bars that lie outside the NYSE regular session")
    step = TIMEFRAMES[to]
    if step == 0:
        bucket_ts = sessions.day_us[sidx]
    else:
        opens = sessions.open_us[sidx]
        bucket_ts = opens + (ts - opens) // (step * US_PER_MIN) * (step * US_PER_MIN)
    if len(ts) == 0:
        return {k: np.zeros(0, dtype=np.int64 if k == "ts" else np.float64)
                for k in ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")}
    starts = np.flatnonzero(np.r_[True, bucket_ts[1:] != bucket_ts[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    vol = np.add.reduceat(v, starts)
    pv = np.add.reduceat(vwap * v, starts)
    counts = np.diff(np.r_[starts, len(ts)])
    mean_vwap = np.add.reduceat(vwap, starts) / counts
    with np.errstate(invalid="ignore", divide="ignore"):
        out_vwap = np.where(vol > 0, pv / vol, mean_vwap)
    return {
        "ts": bucket_ts[starts],
        "open": o[starts],
        "high": np.maximum.reduceat(h, starts),
        "low": np.minimum.reduceat(l, starts),
        "close": c[ends],
        "volume": vol,
        "vwap": out_vwap,
        "trade_count": np.add.reduceat(tc, starts),
    }


def resample_bars(frame: pd.DataFrame, to: str) -> pd.DataFrame:
    """Resample a frame of sorted intraday bars (ts column, UTC) to the timeframe ``to``."""
    f = normalize_frame(frame)
    arrays = resample_arrays(
        f["ts"].to_numpy(dtype="datetime64[us]").view(np.int64),
        *(f[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume")),
        f["vwap"].to_numpy(dtype=np.float64, na_value=np.nan),
        f["trade_count"].to_numpy(dtype=np.float64, na_value=np.nan),
        to=to,
    )
    out = pd.DataFrame(arrays)
    out["ts"] = pd.to_datetime(out["ts"], unit="us", utc=True).dt.as_unit("us")
    out["trade_count"] = pd.array(np.where(np.isnan(out["trade_count"]), np.nan, out["trade_count"]), dtype="Float64").astype("Int64")
    return out


def resample_lake(lake: Lake, symbol: str, to: str, source_tf: str = "1Min",
                  start: object = None, end: object = None) -> WriteResult:
    """Resample one symbol's bars held in the lake and write the result as timeframe ``to``."""
    source_tf, to = check_timeframe(source_tf), check_timeframe(to)
    if TIMEFRAMES[source_tf] == 0:
        raise LakeError("resample needs intraday input bars (1Min, 5Min, 15Min or 1Hour)")
    step_in, step_out = TIMEFRAMES[source_tf], TIMEFRAMES[to]
    if step_out != 0 and (step_out <= step_in or step_out % step_in):
        raise LakeError(f"cannot resample {source_tf} to {to}: the target must be a coarser multiple")
    bars = lake.read_bars(symbol, source_tf, start, end)
    if bars.empty:
        raise LakeError(f"the lake holds no {symbol} {source_tf} bars to resample")
    feeds, adjustments = bars["feed"].unique(), bars["adjustment"].unique()
    if len(feeds) > 1:
        raise LakeError(f"{symbol} {source_tf} mixes feeds ({', '.join(map(str, feeds))}); resample one feed at a time")
    meta = BarMeta(source=f"resample:{source_tf}", feed=feeds[0], adjustment=adjustments[0])
    return lake.write_bars(symbol, to, resample_bars(bars, to), meta, what=f"{symbol} {source_tf}->{to}")
