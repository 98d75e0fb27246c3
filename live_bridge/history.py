"""One symbol's bars as the runner holds them: growable buffers, the calendar facts computed once per bar.

Rebuilding a symbol's arrays and session facts on every bar (``np.append``, ``bars_from_arrays``
over the whole history) costs more than the signal itself; here a bar is appended in place
(capacity doubles when full) and ``arrays`` / ``bars`` are views of the filled part, equal to
what ``research.bars.bars_from_arrays`` makes of the same columns (a test holds them equal).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import numpy as np
import pandas as pd

from data_lake.calendar import US_PER_MIN, nyse
from data_lake.schema import TIMEFRAMES
from research.bars import Bars, bars_from_arrays

COLUMNS = ("ts", "open", "high", "low", "close", "volume")
_FACTS = ("session", "bar_in_session", "bars_left")


class History:
    """Append-only bars of one symbol (ts in UTC µs, increasing)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], timeframe: str) -> None:
        self.timeframe = timeframe
        n = len(arrays["ts"]) if "ts" in arrays else 0
        cap = max(64, 2 * n)
        self._buf = {c: np.empty(cap, np.int64 if c == "ts" else np.float64) for c in COLUMNS}
        self._facts = {c: np.empty(cap, np.int64) for c in _FACTS}
        self.n = 0
        if n:
            cols = {c: np.asarray(arrays[c]) for c in COLUMNS}
            if np.any(np.diff(cols["ts"]) <= 0):
                raise ValueError("history timestamps must increase")
            bars = bars_from_arrays(cols, timeframe)
            for c in COLUMNS:
                self._buf[c][:n] = cols[c]
            for c in _FACTS:
                self._facts[c][:n] = getattr(bars, c)
            self.n = n
        self._views()

    def __len__(self) -> int:
        return self.n

    @property
    def last_ts(self) -> int | None:
        return int(self._buf["ts"][self.n - 1]) if self.n else None

    def append(self, ts: int, open_: float, high: float, low: float, close: float, volume: float) -> bool:
        """Add a bar; False (nothing added) when it is not newer than the last one (a bar seen already)."""
        if self.n and ts <= self._buf["ts"][self.n - 1]:
            return False
        facts = _facts(ts, self.timeframe)  # the calendar facts of one bar: its own session's
        if self.n == len(self._buf["ts"]):
            for d in (self._buf, self._facts):
                for c, a in d.items():
                    d[c] = np.concatenate([a, np.empty_like(a)])
        i = self.n
        for c, v in zip(COLUMNS, (ts, open_, high, low, close, volume)):
            self._buf[c][i] = v
        for c, v in zip(_FACTS, facts):
            self._facts[c][i] = v
        self.n += 1
        self._views()
        return True

    def missing_before_last(self) -> int:
        """Bars the calendar expected between the last two bars and that never came (0: none)."""
        if self.n < 2:
            return 0
        sess, pos, left = (self._facts[c][self.n - 2:self.n] for c in _FACTS)
        if sess[1] == sess[0]:
            return int(pos[1] - pos[0] - 1)
        if self.timeframe == "1Day":
            return int(sess[1] - sess[0] - 1)
        gap = int(left[0] + pos[1])  # the end of the previous session and the start of this one
        whole = int(sess[1] - sess[0] - 1)  # sessions without a single bar (a halt): each counts a session's bars
        return gap + whole * int(left[0] + pos[0] + 1)

    def _views(self) -> None:
        n = self.n
        self.arrays = {c: self._buf[c][:n] for c in COLUMNS}
        self.bars = Bars(*(self._buf[c][:n] for c in COLUMNS[1:]), *(self._facts[c][:n] for c in _FACTS))


def _facts(ts: int, timeframe: str) -> tuple[int, int, int]:
    """(session, bar_in_session, bars_left) of one bar, as ``research.bars.bars_from_arrays`` computes
    them (a test holds the two equal); scalar arithmetic, because it runs for every live bar."""
    cal, step = nyse(), TIMEFRAMES[timeframe]
    day_us, open_us = _stamps()
    if step == 0:
        i = bisect.bisect_left(day_us, ts)
        if i >= len(day_us) or day_us[i] != ts:
            raise ValueError("a daily bar not stamped on an NYSE session")
        return i, 0, 0
    i = bisect.bisect_right(open_us, ts) - 1
    if i < 0 or ts >= cal.close_us[i]:
        raise ValueError("a bar outside NYSE sessions")
    width = step * US_PER_MIN
    if (ts - cal.open_us[i]) % width:  # e.g. Alpaca's clock-aligned 10:00 hour: not a bar the sweep saw
        raise ValueError(f"a bar off the lake's {timeframe} grid (its bars start at the session open, every "
                         f"{step} minutes)")
    return i, int((ts - cal.open_us[i]) // width), int(-(-(int(cal.close_us[i]) - ts) // width) - 1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def utc_us(ts: object) -> int:
    """A bar's timezone-aware stamp as UTC microseconds (exact; a naive stamp is refused)."""
    if isinstance(ts, datetime) and ts.tzinfo is not None and not isinstance(ts, pd.Timestamp):
        return (ts - _EPOCH) // _US  # alpaca-py's bars: a plain datetime, 1 µs instead of pandas' 10
    return int(pd.Timestamp(ts).tz_convert("UTC").value // 1000)


@lru_cache(maxsize=1)
def _stamps() -> tuple[list[int], list[int]]:
    """The calendar's session days and opens as Python ints, for a scalar bisect per bar (a fraction
    of a scalar ``np.searchsorted`` call's overhead)."""
    cal = nyse()
    return cal.day_us.tolist(), cal.open_us.tolist()


def bar_problem(prev_close: float | None, open_: float, high: float, low: float, close: float, volume: float,
                max_jump: float) -> str | None:
    """Why a bar must not be traded on, or None. ``max_jump``: the largest |log(close / previous close)|."""
    prices = (open_, high, low, close)
    if not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in prices):
        return f"missing or non-positive price (open {open_}, high {high}, low {low}, close {close})"
    if not (math.isfinite(volume) and volume >= 0):
        return f"bad volume {volume}"
    tol = 1e-9 * high
    if low > min(open_, close) + tol or high < max(open_, close) - tol:
        return f"inconsistent bar: low {low} / high {high} do not contain open {open_} and close {close}"
    if prev_close is not None and abs(math.log(close / prev_close)) > max_jump:
        return (f"close {close} is {close / prev_close - 1:+.1%} from the previous close {prev_close} (more than "
                f"max_bar_jump={max_jump} in log terms): refused until a person checks it")
    return None
