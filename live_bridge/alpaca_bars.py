"""Completed bars from Alpaca's REST bars endpoint: how a daily runner gets its bar after the close.

Alpaca's market-data stream carries minute bars (``alpaca_feeds.AlpacaBarFeed``); a daily bar is
fetched once its session has closed. ``RestBars.since`` returns every bar after the last one
delivered per symbol, oldest first, so a late or repeated call never skips or repeats a bar.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

import requests
from alpaca.common.exceptions import APIError

from .alpaca import LiveBar, broker_error, network_error, tune_rest_client

_TF = {"1Day": TimeFrame(1, TimeFrameUnit.Day), "1Hour": TimeFrame(1, TimeFrameUnit.Hour),
       "1Min": TimeFrame(1, TimeFrameUnit.Minute)}


class RestBars:
    """Bars of ``timeframe`` after the last delivered one, per symbol (keys are never logged)."""

    def __init__(self, api_key: str, secret_key: str, timeframe: str, *, url_override: str | None = None,
                 feed: str = "iex", retry_wait: float = 3.0, lookback: timedelta = timedelta(days=10)) -> None:
        if timeframe not in _TF:
            raise ValueError(f"RestBars serves {', '.join(_TF)}, got {timeframe!r}")
        self._client = StockHistoricalDataClient(api_key, secret_key, url_override=url_override)
        tune_rest_client(self._client, retry_attempts=3, retry_wait=retry_wait, timeout=10.0)
        self.timeframe, self.feed, self.lookback = timeframe, DataFeed(feed), lookback
        self.last: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"RestBars({self.timeframe})"

    def since(self, symbols: list[str], now: datetime) -> list[LiveBar]:
        """New bars of ``symbols`` up to ``now``, oldest first per symbol; safe to call again after a BrokerError."""
        start = min((self.last.get(s, now - self.lookback) for s in symbols), default=now - self.lookback)
        req = StockBarsRequest(symbol_or_symbols=list(symbols), timeframe=_TF[self.timeframe],
                               start=start, end=now, feed=self.feed, adjustment=Adjustment.RAW)
        try:  # a BrokerError (status, Alpaca's message), never alpaca-py's error with the request headers
            data = self._client.get_stock_bars(req).data
        except APIError as err:
            raise broker_error(err) from None
        except requests.RequestException as err:
            raise network_error(err) from None
        out = []
        for sym, bars in data.items():
            for b in bars:
                if sym in self.last and b.timestamp <= self.last[sym]:
                    continue
                out.append(LiveBar(sym, b.timestamp, float(b.open), float(b.high), float(b.low), float(b.close),
                                   float(b.volume), b.vwap, b.trade_count))
                self.last[sym] = b.timestamp
        return sorted(out, key=lambda b: (b.ts, b.symbol))
