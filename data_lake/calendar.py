"""NYSE sessions from exchange-calendars, as numpy arrays that vectorized code can search.

All times are int64 microseconds since the epoch, UTC, matching the lake's ``ts`` column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .schema import LakeError

CALENDAR_START = "1962-07-02"  # as far back as the sessions are reliable: weekdays only since 1952
CALENDAR_END = "2030-12-31"
NY = "America/New_York"
US_PER_MIN = 60_000_000


@dataclass(frozen=True)
class Sessions:
    """Every NYSE session in the calendar window, sorted."""

    dates: pd.DatetimeIndex  # session dates (naive midnight)
    open_us: np.ndarray  # regular-session open, UTC us
    close_us: np.ndarray  # regular-session close, UTC us (13:00 ET on half days)
    day_us: np.ndarray  # 00:00 America/New_York of the date, UTC us: the 1Day bar stamp

    def minutes(self) -> np.ndarray:
        """Length of each session in minutes (390, or 210 on a half day)."""
        return (self.close_us - self.open_us) // US_PER_MIN

    def slice(self, start: object = None, end: object = None) -> "Sessions":
        """The sessions whose date lies in [start, end] (dates, inclusive)."""
        lo = 0 if start is None else int(self.dates.searchsorted(pd.Timestamp(start).normalize()))
        hi = (
            len(self.dates)
            if end is None
            else int(self.dates.searchsorted(pd.Timestamp(end).normalize(), side="right"))
        )
        return Sessions(
            self.dates[lo:hi], self.open_us[lo:hi], self.close_us[lo:hi], self.day_us[lo:hi]
        )

    def __len__(self) -> int:
        return len(self.dates)


def _utc_us(index: pd.DatetimeIndex) -> np.ndarray:
    return index.tz_convert("UTC").as_unit("us").asi8.copy()


@lru_cache(maxsize=1)
def nyse() -> Sessions:
    """All XNYS sessions from 1962-07-02 to 2030 (half days and special closures included); computed once.

    exchange-calendars builds its sessions with a ``CustomBusinessDay`` over its holiday rules, and
    pandas evaluates such rules from 1970 only (``AbstractHolidayCalendar.start_date``): before 1970
    Christmas, Independence Day and the rest came out as sessions. The rules themselves are right
    for those years, so their dates are taken out here (nothing changes from 1970 on). Before 1985
    the exchange opened at 10:00 (and closed at 15:30 until 1974); the calendar keeps 09:30-16:00,
    which matters only to intraday bars of those years.
    """
    import exchange_calendars as xc

    cal = xc.get_calendar("XNYS", start=CALENDAR_START, end=CALENDAR_END)
    sched = cal.schedule
    holidays = cal.regular_holidays.holidays(pd.Timestamp(CALENDAR_START), pd.Timestamp(CALENDAR_END))
    sched = sched[~pd.DatetimeIndex(sched.index).isin(holidays)]
    dates = pd.DatetimeIndex(sched.index).tz_localize(None).as_unit("us")
    day = dates.tz_localize(NY)
    return Sessions(
        dates=dates,
        open_us=_utc_us(pd.DatetimeIndex(sched["open"])),
        close_us=_utc_us(pd.DatetimeIndex(sched["close"])),
        day_us=_utc_us(day),
    )


def session_index(ts_us: np.ndarray, sessions: Sessions | None = None) -> np.ndarray:
    """For each timestamp, the index of the session whose [open, close) holds it, else -1."""
    s = sessions or nyse()
    idx = np.searchsorted(s.open_us, ts_us, side="right") - 1
    safe = np.clip(idx, 0, len(s.open_us) - 1)
    inside = (idx >= 0) & (ts_us < s.close_us[safe])
    return np.where(inside, idx, -1)


def day_index(ts_us: np.ndarray, sessions: Sessions | None = None) -> np.ndarray:
    """For each daily-bar stamp, the index of the session it names, else -1."""
    s = sessions or nyse()
    idx = np.searchsorted(s.day_us, ts_us)
    safe = np.clip(idx, 0, len(s.day_us) - 1)
    return np.where(s.day_us[safe] == ts_us, safe, -1)


def session_stamp(dates: pd.DatetimeIndex | pd.Series) -> pd.DatetimeIndex:
    """The 1Day bar stamp (00:00 New York, in UTC) of each calendar date."""
    idx = pd.DatetimeIndex(dates)
    if idx.tz is not None:
        idx = idx.tz_convert(NY).tz_localize(None)
    return idx.normalize().tz_localize(NY).tz_convert("UTC").as_unit("us")


#: Test clock: an ISO instant read as "now" by the checks that refuse bars from the future.
NOW_VARIABLE = "TRADELAB_NOW"


def now() -> pd.Timestamp:
    """The current instant in UTC (``TRADELAB_NOW`` overrides it, for tests and replays of a past day)."""
    text = os.environ.get(NOW_VARIABLE, "").strip()
    if not text:
        return pd.Timestamp.now(tz="UTC")
    try:
        t = pd.Timestamp(text)
    except ValueError:
        raise LakeError(f"{NOW_VARIABLE}={text!r} is not a timestamp (e.g. 2024-03-04T21:00:00Z)") from None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def current_session(at: pd.Timestamp | None = None, sessions: Sessions | None = None) -> int:
    """Index of the session that has opened last by ``at`` (now): the newest a bar can belong to."""
    s = sessions or nyse()
    t = int((at if at is not None else now()).value // 1000)
    return int(np.searchsorted(s.open_us, t, side="right")) - 1


def check_window(start: pd.Timestamp, end: pd.Timestamp) -> None:
    """Raise LakeError when a date window falls outside the calendar this project carries."""
    if start > end:
        raise LakeError(f"start {start.date()} is after end {end.date()}")
    if start < pd.Timestamp(CALENDAR_START) or end > pd.Timestamp(CALENDAR_END):
        raise LakeError(
            f"dates must lie between {CALENDAR_START} and {CALENDAR_END} (the NYSE calendar window)"
        )
