"""Gaps against the NYSE calendar: which sessions (or bars within sessions) the lake lacks.

Between a series' first and last bar, every NYSE session should be there; for intraday bars,
every grid slot of every session (390 minutes, 210 on half days). IEX minute bars legitimately
skip minutes without trades, so intraday gaps are reported as counts per session, not as errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .calendar import day_index, nyse, session_index
from .schema import TIMEFRAMES
from .store import Lake

GAP_COLUMNS = ["symbol", "timeframe", "session", "expected", "found", "missing"]


def find_gaps(lake: Lake, symbol: str | None = None, timeframe: str | None = None) -> pd.DataFrame:
    """One row per (symbol, timeframe, session) with fewer bars than the calendar expects."""
    series = sorted({(sym, tf) for tf, sym, _, _ in lake.files(symbol, timeframe)})
    rows = [gaps_of(lake, sym, tf) for sym, tf in series]
    rows = [r for r in rows if len(r)]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=GAP_COLUMNS)


def gaps_of(lake: Lake, symbol: str, timeframe: str) -> pd.DataFrame:
    """The gap rows of one series (empty when complete)."""
    sessions = nyse()
    ts = lake.load_arrays(symbol, timeframe)["ts"]
    if len(ts) == 0:
        return pd.DataFrame(columns=GAP_COLUMNS)
    step = TIMEFRAMES[timeframe]
    idx = day_index(ts, sessions) if step == 0 else session_index(ts, sessions)
    idx = idx[idx >= 0]
    first, last = idx.min(), idx.max()
    found = np.bincount(idx - first, minlength=last - first + 1)
    if step == 0:
        expected = np.ones_like(found)
    else:
        expected = -(-sessions.minutes()[first:last + 1] // step)  # ceil: a half hour counts as a 1Hour bar
    short = np.flatnonzero(found < expected)
    return pd.DataFrame({
        "symbol": symbol,
        "timeframe": timeframe,
        "session": sessions.dates[first + short].date,
        "expected": expected[short],
        "found": found[short],
        "missing": expected[short] - found[short],
    })
