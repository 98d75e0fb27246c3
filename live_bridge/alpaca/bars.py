"""Completed bars from Alpaca's REST bars endpoint, built exactly as the lake builds them.

Alpaca's market-data stream carries minute bars (``feeds.AlpacaBarFeed``); every coarser
timeframe is polled here. ``RestBars.since`` returns every bar after the last one delivered per
symbol, oldest first, so a late or repeated call never skips or repeats a bar.

**The bars the sweep saw.** The lake's intraday bars are regular-session bars on a grid counted
from the open; Alpaca's are clock-aligned and include extended hours. So each timeframe is
fetched and parsed with ``data_lake.sources.alpaca``'s own ``bars_request`` and ``bars_frame``
(``FETCH_MINUTES``: 1Hour as 30Min bars, rolled up to 09:30, 10:30, ..., 15:30 by the same
``session_hours``), extended-hours and off-grid bars are dropped (``regular_session``), and a
daily bar is stamped 00:00 New York of its session.

**Only completed bars.** Alpaca serves the bar in progress (today's daily bar during the session,
the current minute's or half hour's bar); a bar is delivered once its end (its session's close for
1Day) is not after ``now``. A session-aligned hour is delivered once its last 30Min bar is in, or
``HOUR_GRACE`` after its end when that half hour had no trades (Alpaca then sends no bar).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient

from data_lake.calendar import US_PER_MIN, day_index, nyse, session_index
from data_lake.schema import TIMEFRAMES
from data_lake.sources.alpaca import FETCH_MINUTES, bars_frame, bars_request, regular_session, session_hours

from ..ports import LiveBar
from .client import broker_error, network_error, tune_rest_client

HOUR_GRACE = timedelta(minutes=2)


class RestBars:
    """Bars of ``timeframe`` after the last delivered one, per symbol (keys are never logged)."""

    def __init__(self, api_key: str, secret_key: str, timeframe: str, *, url_override: str | None = None,
                 feed: str = "iex", retry_wait: float = 3.0, lookback: timedelta = timedelta(days=10)) -> None:
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"RestBars serves {', '.join(TIMEFRAMES)}, got {timeframe!r}")
        # raw_data: Alpaca's wire bars, parsed by the lake's own bars_frame
        self._client = StockHistoricalDataClient(api_key, secret_key, url_override=url_override, raw_data=True)
        tune_rest_client(self._client, retry_attempts=3, retry_wait=retry_wait, timeout=10.0)
        self.timeframe, self.feed, self.lookback = timeframe, DataFeed(feed), lookback
        self.last: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"RestBars({self.timeframe})"

    def since(self, symbols: list[str], now: datetime) -> list[LiveBar]:
        """New bars of ``symbols`` completed by ``now``, oldest first; safe to call again after a BrokerError."""
        start = min((self.last.get(s, now - self.lookback) for s in symbols), default=now - self.lookback)
        req = bars_request(list(symbols), self.timeframe, start, now, self.feed, "raw")
        try:  # a BrokerError (status, Alpaca's message), never alpaca-py's error with the request headers
            data = self._client.get_stock_bars(req) or {}
        except APIError as err:
            raise broker_error(err) from None
        except requests.RequestException as err:
            raise network_error(err) from None
        now_us = int(pd.Timestamp(now).value // 1000)
        out = []
        for sym, bars in data.items():
            frame = lake_bars(bars_frame(bars), self.timeframe, now_us)
            for row in frame.itertuples(index=False):
                ts = row.ts.to_pydatetime()
                if sym in self.last and ts <= self.last[sym]:
                    continue
                out.append(LiveBar(sym, ts, row.open, row.high, row.low, row.close, row.volume,
                                   None if np.isnan(row.vwap) else row.vwap,
                                   None if np.isnan(row.trade_count) else int(row.trade_count)))
                self.last[sym] = ts
        return sorted(out, key=lambda b: (b.ts, b.symbol))


def lake_bars(frame: pd.DataFrame, timeframe: str, now_us: int) -> pd.DataFrame:
    """Alpaca's bars of ``FETCH_MINUTES[timeframe]`` as the lake's bars of ``timeframe``, completed by ``now_us``."""
    s = nyse()
    minutes = FETCH_MINUTES[timeframe]
    ts = frame["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    if minutes == 0:  # stamped 00:00 New York (Alpaca does); kept once its session has closed
        idx = day_index(ts, s)
        keep = (idx >= 0) & (s.close_us[np.maximum(idx, 0)] <= now_us)
        return frame.loc[keep].reset_index(drop=True)
    frame, _ = regular_session(frame, minutes, s)
    ts = frame["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    closes = s.close_us[np.maximum(session_index(ts, s), 0)]
    frame = frame.loc[np.minimum(ts + minutes * US_PER_MIN, closes) <= now_us].reset_index(drop=True)
    if timeframe != "1Hour":
        return frame
    halves = frame["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    hours = session_hours(frame, s)
    start = hours["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    end = np.minimum(start + 60 * US_PER_MIN, s.close_us[np.maximum(session_index(start, s), 0)])
    last_half_in = np.isin(np.maximum(end - 30 * US_PER_MIN, start), halves)
    grace = int(HOUR_GRACE / timedelta(microseconds=1))
    return hours.loc[last_half_in | (end + grace <= now_us)].reset_index(drop=True)
