"""Data-quality gate: every batch passes through here before a byte of it reaches the lake.

The checks are vectorized (numpy over whole columns), so the gate costs a few ms per million
rows. A row can fail for several reasons; the report lists each (row, reason) pair. Rows are
numbered from 1 in the order the source delivered them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .calendar import CALENDAR_END, CALENDAR_START, US_PER_MIN, current_session, day_index, nyse, session_index
from .schema import PRICE_COLUMNS, TIMEFRAMES, LakeError


@dataclass(frozen=True)
class QualityReport:
    """Which rows of a batch are bad and why."""

    rows: np.ndarray  # 1-based row numbers, one per issue
    reasons: list[str]  # the reason for each issue
    n_rows: int  # rows in the batch

    @property
    def ok(self) -> bool:
        return len(self.reasons) == 0

    @property
    def bad_mask(self) -> np.ndarray:
        """Boolean mask (by position) of the rows with at least one issue."""
        mask = np.zeros(self.n_rows, dtype=bool)
        mask[self.rows - 1] = True
        return mask

    def reasons_by_row(self) -> dict[int, str]:
        """One '; '-joined reason string per bad row."""
        out: dict[int, list[str]] = {}
        for r, why in zip(self.rows.tolist(), self.reasons):
            out.setdefault(r, []).append(why)
        return {r: "; ".join(v) for r, v in sorted(out.items())}

    def summary(self, limit: int = 10, row_label: str = "row") -> str:
        """A short human report: the first ``limit`` bad rows and a count of the rest."""
        by_row = self.reasons_by_row()
        lines = [f"{row_label} {r}: {why}" for r, why in list(by_row.items())[:limit]]
        if len(by_row) > limit:
            lines.append(f"... and {len(by_row) - limit} more bad rows")
        return "\n".join(lines)


class DataQualityError(LakeError):
    """A batch was refused whole; ``report`` holds every (row, reason)."""

    def __init__(self, what: str, report: QualityReport):
        self.report = report
        bad = len(report.reasons_by_row())
        first_row, first_why = next(iter(report.reasons_by_row().items()))
        super().__init__(
            f"{what}: refused, {bad} of {report.n_rows} rows are bad "
            f"(first: row {first_row}: {first_why}); nothing was written "
            "(use --quarantine to keep the bad rows aside and write the good ones)"
        )


def check_bars(frame: pd.DataFrame, timeframe: str, at: pd.Timestamp | None = None) -> QualityReport:
    """Check a batch of bars of one symbol and timeframe; return every (row, reason).

    ``at`` is now (``calendar.now()``): no bar may lie after the close of the session open last by then.
    """
    n = len(frame)
    found: list[tuple[np.ndarray, str]] = []

    def flag(mask: np.ndarray, reason: str) -> None:
        if mask.any():
            found.append((np.flatnonzero(mask), reason))

    prices = {c: frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in PRICE_COLUMNS}
    volume = frame["volume"].to_numpy(dtype=np.float64, na_value=np.nan)
    for name, arr in [*prices.items(), ("volume", volume)]:
        flag(~np.isfinite(arr), f"{name} is NaN or infinite")
    for name, arr in prices.items():
        flag(arr <= 0, f"{name} is not positive")
    o, h, low, c = (prices[k] for k in PRICE_COLUMNS)
    flag(h < low, "high < low")
    flag((o < low) | (o > h), "open outside [low, high]")
    flag((c < low) | (c > h), "close outside [low, high]")
    flag(volume < 0, "negative volume")
    if "vwap" in frame:
        vwap = frame["vwap"].to_numpy(dtype=np.float64, na_value=np.nan)
        flag(np.isinf(vwap) | (vwap <= 0), "vwap is infinite or not positive")
    if "trade_count" in frame:
        tc = frame["trade_count"].to_numpy(dtype=np.float64, na_value=np.nan)
        flag(tc < 0, "negative trade_count")
        # the file column is int64: anything past 2**63 (or inf) would be stored as garbage
        flag(tc >= 2.0**63, "trade_count is infinite or too large")
        with np.errstate(invalid="ignore"):  # inf % 1 is NaN: flagged just above
            flag(np.isfinite(tc) & (tc % 1 != 0), "trade_count is not a whole number")

    ts_col = frame["ts"]
    nat = ts_col.isna().to_numpy()
    flag(nat, "missing timestamp")
    ts = ts_col.to_numpy(dtype="datetime64[us]", na_value=np.datetime64("NaT")).view(np.int64)
    if n > 1:
        # against the latest stamp of ALL earlier rows, not just the row before: dropping the bad rows
        # (--quarantine) must leave strictly increasing stamps ([5, 4, 5] would otherwise keep 5 twice)
        none = np.iinfo(np.int64).min
        latest = np.r_[none, np.maximum.accumulate(np.where(nat, none, ts))[:-1]]
        valid = ~nat & (latest != none)
        flag(valid & (ts == latest), "duplicate timestamp")
        flag(valid & (ts < latest), "timestamp out of order")
    _check_calendar(ts, nat, timeframe, flag, at)

    if not found:
        return QualityReport(np.zeros(0, dtype=np.int64), [], n)
    rows = np.concatenate([idx for idx, _ in found]) + 1
    reasons = [why for idx, why in found for _ in range(len(idx))]
    order = np.argsort(rows, kind="stable")
    return QualityReport(rows[order], [reasons[i] for i in order], n)


def _check_calendar(ts: np.ndarray, nat: np.ndarray, timeframe: str, flag, at: pd.Timestamp | None) -> None:
    """Daily stamps must name an NYSE session; intraday bars must start inside one, on the grid;
    none may lie after the current session (a bar from the future)."""
    sessions = nyse()
    minutes = TIMEFRAMES[timeframe]
    cur = current_session(at, sessions)
    day = sessions.dates[cur].date() if cur >= 0 else None
    early = ~nat & (ts < sessions.day_us[0])
    late = ~nat & (ts >= sessions.close_us[-1])
    flag(early, f"before the NYSE calendar's first session, {CALENDAR_START}")
    flag(late, f"after the NYSE calendar's last session, {CALENDAR_END}")
    nat = nat | early | late  # named once: not also "not a session" below
    if minutes == 0:
        flag(~nat & (day_index(ts, sessions) < 0), "not an NYSE session date (1Day bars are stamped 00:00 New York)")
        flag(~nat & (ts > (sessions.day_us[cur] if cur >= 0 else -2**62)),
             f"after the current session ({day}): a bar from the future")
        return
    flag(~nat & (ts >= (sessions.close_us[cur] if cur >= 0 else -2**62)),
         f"after the close of the current session ({day}): a bar from the future")
    idx = session_index(ts, sessions)
    flag(~nat & (idx < 0), "outside the NYSE regular session")
    inside = ~nat & (idx >= 0)
    offset = ts - sessions.open_us[np.maximum(idx, 0)]
    flag(inside & (offset % (minutes * US_PER_MIN) != 0), f"not aligned to the {timeframe} grid")
