"""Timestamps of a user's bar file, read one explicit way: no bar ever moves to another day silently.

**Date order.** ``04/01/2010`` is 4 January day-first and 1 April month-first. The order is decided
from the whole column, never row by row: a first field above 12 anywhere makes the file day-first, a
second field above 12 makes it month-first, both is refused, and a file that could be read either
way (and would give different dates) is refused unless ``date_format`` says which.

**Daily stamps** (``1Day``) name a session by one rule, row by row:

1. midnight in the stamp's own offset (or with none) means that calendar date:
   ``2010-01-05``, ``2010-01-05T00:00:00Z``, ``2010-01-05T00:00:00+09:00`` are all 5 January;
2. an instant that is midnight in New York means that date (Alpaca's stamp and the lake's own:
   ``2010-01-05T05:00:00Z``);
3. an instant inside a New York session, or at its close (16:00, also on a half day), means
   that session; a stamp without an offset is read in ``tz`` (New York when not given).

Anything else (``2010-01-05T20:00:00Z``, 15:00 New York the day before, ...) is refused with the row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..calendar import NY, nyse
from ..schema import LakeError

US_PER_HOUR = 3_600_000_000
_NUMERIC_DATE = r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})(?!\d)"
_WITH_OFFSET = r"^(.*\d:\d\d(?::\d\d(?:\.\d*)?)?)\s*([zZ]|UTC|GMT|[+-]\d\d(?::?\d\d)?)$"


def date_order(text: pd.Series, date_format: str | None) -> bool:
    """True when the column's numeric dates are day-first (module docstring); refuses ambiguity."""
    if date_format:
        return False
    parts = text.str.extract(_NUMERIC_DATE)
    a = pd.to_numeric(parts[0], errors="coerce").to_numpy()
    b = pd.to_numeric(parts[1], errors="coerce").to_numpy()
    with np.errstate(invalid="ignore"):
        day_first, month_first = a > 12, b > 12
    if day_first.any() and month_first.any():
        i, j = np.flatnonzero(day_first)[0], np.flatnonzero(month_first)[0]
        raise LakeError(f"dates mix day-first and month-first: row {i + 1} ({text.iloc[i]}) can only be "
                        f"day-first, row {j + 1} ({text.iloc[j]}) only month-first; fix the file")
    if day_first.any():
        return True
    if month_first.any():
        return False
    either = np.flatnonzero((a != b) & ~np.isnan(a) & ~np.isnan(b))
    if len(either):
        i = either[0]
        raise LakeError(f"dates such as {text.iloc[i].strip()} (row {i + 1}) read as different days day-first "
                        "and month-first, and no date in the file decides it: pass --date-format "
                        "'%d/%m/%Y' (day first) or '%m/%d/%Y' (month first)")
    return False


def to_datetime(text: pd.Series, date_format: str | None, day_first: bool, utc: bool = False) -> pd.Series:
    """Parse stamps; one that does not parse becomes NaT, which the quality gate reports by row."""
    if date_format:
        try:
            return pd.to_datetime(text, format=date_format, errors="coerce", utc=utc)
        except ValueError as exc:  # a bad directive ('%Q'); a stamp that does not match is NaT, by row
            raise LakeError(f"--date-format {date_format!r} is not a usable strptime format: {exc}") from None
    return pd.to_datetime(text, format="mixed", dayfirst=day_first, errors="coerce", utc=utc)


def daily_from_text(text: pd.Series, tz: str | None, date_format: str | None, day_first: bool) -> pd.Series:
    """The session date (naive midnight) each daily stamp names, by the rule in the module docstring."""
    parts = text.str.extract(_WITH_OFFSET)
    has_offset = parts[1].notna().to_numpy()
    wall_fmt = date_format.replace("%z", "").replace("%Z", "").rstrip() if date_format else None
    wall = to_datetime(parts[0].where(has_offset, text), wall_fmt, day_first)
    instant = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    if has_offset.any():
        instant[has_offset] = to_datetime(text[has_offset], date_format, day_first, utc=True)
    naive = ~has_offset & wall.notna().to_numpy()
    if naive.any():
        instant[naive] = _localize(wall[naive], tz or NY)
    return _session_dates(wall, instant, text)


def daily_from_datetimes(ts: pd.Series) -> pd.Series:
    """The same rule for a Parquet datetime column: its own time zone is the stamps' offset."""
    tz = getattr(ts.dt, "tz", None)
    wall = ts.dt.tz_localize(None) if tz is not None else ts
    instant = ts.dt.tz_convert("UTC") if tz is not None else _localize(ts, NY)
    return _session_dates(wall, instant, ts.astype(str))


def _localize(wall: pd.Series, tz: str) -> pd.Series:
    try:
        return wall.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    except Exception as exc:  # zoneinfo raises several types for a bad name
        raise LakeError(f"unknown time zone {tz!r}: {exc}") from None


def _session_dates(wall: pd.Series, instant: pd.Series, shown: pd.Series) -> pd.Series:
    wall = pd.to_datetime(wall).dt.as_unit("us")
    midnight = (wall == wall.dt.normalize()).to_numpy()
    out = wall.dt.normalize().where(midnight)
    rest = ~midnight & instant.notna().to_numpy()
    if rest.any():
        s = nyse()
        t = pd.DatetimeIndex(instant[rest]).as_unit("us").asi8
        k = np.clip(np.searchsorted(s.day_us, t, side="right") - 1, 0, len(s.day_us) - 1)
        ny_midnight = s.day_us[k] == t
        i = np.clip(np.searchsorted(s.open_us, t, side="right") - 1, 0, len(s.open_us) - 1)
        in_session = (t >= s.open_us[i]) & (t <= np.maximum(s.close_us[i], s.day_us[i] + 16 * US_PER_HOUR))
        ny_day = pd.DatetimeIndex(pd.to_datetime(t, unit="us", utc=True)).tz_convert(NY).tz_localize(None).normalize()
        dates = np.where(ny_midnight | in_session, ny_day.as_unit("us").to_numpy(), np.datetime64("NaT", "us"))
        bad = ~(ny_midnight | in_session)
        if bad.any():
            row = int(np.flatnonzero(rest)[np.flatnonzero(bad)[0]])
            raise LakeError(
                f"{int(bad.sum())} daily stamps name no session (first: row {row + 1}: {str(shown.iloc[row]).strip()}): "
                "a 1Day stamp is midnight (in its own offset, or New York's) or a time inside that New York "
                "session up to its close; other times could mean either of two days, so nothing was written"
            )
        out[rest] = dates
    return out
