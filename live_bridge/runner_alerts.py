"""The runner's alerts and feed watch: what a person should see, in the log, the decision log and
the notifier (live_bridge/alerts.py). A mixin of ``Runner`` (live_bridge/runner.py), split out for
size; also the decision log's JSON helpers."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime

import numpy as np
import orjson
import pandas as pd

from data_lake.calendar import nyse
from data_lake.schema import TIMEFRAMES

from .ports import session_day

_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE

log = logging.getLogger("live_bridge.runner")


class AlertDesk:
    """Alerts and the stale-feed watch (mixed into Runner)."""

    def _alert(self, kind: str, symbol: str, message: str, **extra) -> None:
        """A problem a person should see: warning log, decision log line, ``alerts``, the notifier."""
        line = {"event": kind, "symbol": symbol, "message": message, **extra}
        self.alerts.append(line)
        if len(self.alerts) > 1000:  # a runner lives for weeks: keep the recent ones (the log has all)
            del self.alerts[:500]
        log.warning("runner: %s %s: %s", kind, symbol, message)
        self._write(line)
        self._notify(kind, symbol, message, **extra)

    def alert_later(self, kind: str, message: str, symbol: str = "") -> None:
        """An alert from another thread (the daemon's poll loop), written by the worker (the log's one writer)."""
        from .runner_orders import Work

        self._q.put(Work("alert", (kind, symbol, message)))

    def _notify(self, kind: str, symbol: str, message: str, severity: str = "warning", **extra) -> None:
        """Hand an alert to the notifier (log and webhook sinks: live_bridge/alerts.py); never raises."""
        if self.notifier is None:
            return
        from .alerts import Alert

        try:
            self.notifier.notify(Alert(kind, message, symbol or None, severity, extra=_jsonable(extra)))
        except Exception:  # a broken sink never stops trading
            log.exception("runner: alert %s not sent", kind)

    def _watch_feed(self) -> None:
        """While idle, intraday: a symbol without a bar for more than max_missing_bars + 1 intervals
        of an open session is alerted once per gap (its next bar will not enter either)."""
        ctx, step = self._ctx, TIMEFRAMES.get(self.config.timeframe, 0)
        if ctx is None or not step or not ctx.clock.is_open:
            return
        now_us = int(pd.Timestamp(ctx.clock.timestamp).value // 1000)
        cal = nyse()
        i = int(cal.dates.searchsorted(pd.Timestamp(session_day(ctx.clock.timestamp))))
        opened = int(cal.open_us[i]) if i < len(cal.dates) else now_us  # bars are due from the session's open
        late_us = (self.config.max_missing_bars + 2) * step * 60_000_000  # the bar closes one interval after it starts
        for sym, hist in self._hist.items():
            last = hist.last_ts
            if last is not None and now_us - max(last, opened) > late_us and self._stale.get(sym) != last:
                self._stale[sym] = last
                self._alert("stale_data", sym, f"no bar since {pd.Timestamp(last, unit='us', tz='UTC')} "
                            f"(more than {self.config.max_missing_bars + 1} intervals in an open session)")


def _json_default(o):
    """What json cannot write itself: times as ISO strings, dataclasses as objects, numpy scalars."""
    if isinstance(o, datetime):
        return o.isoformat()
    if hasattr(o, "__dataclass_fields__"):
        return {f: getattr(o, f) for f in o.__dataclass_fields__}
    if isinstance(o, np.generic):
        return o.item()
    return str(o)

def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, (pd.Timestamp, datetime)):
        return d.isoformat()
    if isinstance(d, float) and not np.isfinite(d):
        return None
    if hasattr(d, "__dataclass_fields__"):
        return _jsonable(asdict(d))
    return d


def json_line(entry: dict) -> bytes:
    """``entry`` as one JSON line: orjson (about 10x json's speed: 500 lines a bar at 500 sleeves), NaN
    and inf as null, times as ISO 8601, dataclasses as objects, numpy scalars as numbers."""
    try:
        return orjson.dumps(entry, default=_json_default, option=_ORJSON)
    except (TypeError, ValueError):  # e.g. an int past 64 bits: json's slower walk writes anything
        return (json.dumps(_jsonable(entry), default=str) + "\n").encode()


def _write_all(f, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[f.write(view):]
