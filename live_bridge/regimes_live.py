"""Regime labels computed online, from the benchmark bars the runner itself receives.

A decision at bar t's close needs the label of the session bar t+1 is in, and that label is made
from the benchmark's daily close of the session of bar t: the lake only gets that bar in the
evening, after the decision. So the runner labels sessions itself, with the very function the
nightly uses (``research.regimes.regimes_from_daily``) over the benchmark's daily bars: the lake's
history up to the start, then every daily bar it receives (daily params: the benchmark's own 1Day
bar, polled even when the benchmark is not traded; intraday params: the session's bars of the
benchmark aggregated as the lake resamples them, close = the session's last bar's close, known at
the session's last bar). Every regime measure is a trailing window, so the labels equal those of
the nightly's table over the whole lake (a test holds them equal).

Replays and ``tradelab parity`` run this same path: they are never handed a precomputed table.
The regime definition (scheme and thresholds) is the params file's (``ParamsFile.regime_params``):
every file a runner trades must have the same one (``regime_params_of``), since its sessions carry one
label each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from data_lake.calendar import nyse
from research.params import ParamsFile
from research.regimes import RegimeParams, params_hash, regimes_from_daily

_COLS = ("ts", "open", "high", "low", "close")


class OnlineRegimes:
    """One benchmark's daily bars, growing, and the regimes table of them (recomputed on a new bar)."""

    def __init__(self, benchmark: str, daily: Mapping[str, np.ndarray] | None = None,
                 params: RegimeParams = RegimeParams()) -> None:
        self.benchmark, self.params = benchmark, params
        daily = daily or {}
        self._cols = {c: [float(x) for x in np.asarray(daily.get(c, ()), dtype=np.float64)] if c != "ts"
                      else [int(x) for x in np.asarray(daily.get("ts", ()), dtype=np.int64)] for c in _COLS}
        self._table: pd.DataFrame | None = None
        self._session: tuple[int, list[float]] | None = None  # intraday: (session day stamp, o h l c) so far

    @property
    def last_day_us(self) -> int | None:
        """The 1Day stamp of the last daily bar held (None: none)."""
        return self._cols["ts"][-1] if self._cols["ts"] else None

    def add_daily(self, ts_us: int, open_: float, high: float, low: float, close: float) -> bool:
        """A completed 1Day bar (stamped 00:00 New York); False when it is not newer than the last."""
        if self._cols["ts"] and ts_us <= self._cols["ts"][-1]:
            return False
        for c, v in zip(_COLS, (int(ts_us), open_, high, low, close)):
            self._cols[c].append(v)
        self._table = None
        return True

    def add_intraday(self, session_day_us: int, open_: float, high: float, low: float, close: float,
                     first_of_session: bool, last_of_session: bool) -> bool:
        """An intraday bar of the benchmark, aggregated into its session's daily bar as the lake
        resamples (open first, high max, low min, close last); the daily bar is added (True) at the
        session's last bar. A session not seen from its first bar is never completed (its daily bar
        would not be the lake's), so the next session's label stays unknown."""
        cur = self._session
        if cur is None or cur[0] != session_day_us:
            cur = self._session = (session_day_us, [open_, high, low, close] if first_of_session else [])
        elif cur[1]:
            agg = cur[1]
            agg[1], agg[2], agg[3] = max(agg[1], high), min(agg[2], low), close
        if not last_of_session:
            return False
        self._session = None
        return bool(cur[1]) and self.add_daily(session_day_us, *cur[1])

    def table(self) -> pd.DataFrame:
        """The regimes table (``research.regimes`` columns) of the bars held: one row per session up to
        the session after the last bar."""
        if self._table is None:
            a = {c: np.asarray(v, dtype=np.int64 if c == "ts" else np.float64) for c, v in self._cols.items()}
            self._table = regimes_from_daily(a["ts"], a["open"], a["high"], a["low"], a["close"], self.params)
        return self._table

    def label(self, session_day_us: int) -> str:
        """The label of one session ('unknown' when the bars held do not reach it)."""
        t = self.table()
        if t.empty:
            return "unknown"
        day = pd.Timestamp(session_day_us, unit="us", tz="UTC").tz_convert("America/New_York").tz_localize(None)
        hit = t["session"].searchsorted(day.normalize())
        if hit < len(t) and t["session"].iloc[hit] == day.normalize():
            return str(t["label"].iloc[hit])
        return "unknown"


def regime_params_of(files: Sequence[ParamsFile] | Sequence[tuple[int, ParamsFile]]) -> RegimeParams:
    """The regime definition of the params files (or epochs) a runner trades: one for all of them
    (ValueError naming the two that differ: a runner cannot switch definitions mid-state)."""
    pfs = [f[1] if isinstance(f, tuple) else f for f in files]
    if not pfs:
        raise ValueError("no params file: no regime definition")
    first = pfs[0].regime_params()
    for pf in pfs[1:]:
        if (other := pf.regime_params()) != first:
            raise ValueError(f"the params files define regimes differently (scheme {first.scheme}, params "
                             f"{params_hash(first)} vs scheme {other.scheme}, params {params_hash(other)}): "
                             "a runner labels each session once, so it cannot trade both; start a new runner "
                             "state to switch")
    return first


def daily_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A lake frame of 1Day bars as the arrays ``OnlineRegimes`` starts from."""
    return {c: (pd.DatetimeIndex(frame["ts"]).as_unit("us").asi8 if c == "ts" else frame[c].to_numpy(float))
            for c in _COLS}


def session_day_us(ts_us: int) -> int:
    """The 1Day stamp (00:00 New York, UTC µs) of the session an intraday bar lies in."""
    cal = nyse()
    i = int(np.searchsorted(cal.close_us, ts_us, side="right"))
    return int(cal.day_us[min(i, len(cal.day_us) - 1)])
