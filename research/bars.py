"""The bar container every signal takes: OHLCV columns plus calendar facts known in advance.

Session facts (which session a bar belongs to, its position in it, how many bars remain) come from
the NYSE schedule, which is published ahead of time, so using them reads no future prices.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from data_lake.calendar import US_PER_MIN, day_index, nyse, session_index
from data_lake.schema import TIMEFRAMES


class Bars(NamedTuple):
    """One symbol's bars as float64 / int64 arrays of equal length, oldest first."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    session: np.ndarray  # int64: index of the NYSE session (increasing)
    bar_in_session: np.ndarray  # int64: 0 for the session's first bar
    bars_left: np.ndarray  # int64: bars of this session after this one (0 = last bar)

    def __len__(self) -> int:
        return self.close.shape[0]

    def slice(self, stop: int) -> "Bars":
        """The first ``stop`` bars (what a live runner would have seen at bar stop-1)."""
        return Bars(*(a[:stop] for a in self))


def bars_from_arrays(arrays: dict[str, np.ndarray], timeframe: str) -> Bars:
    """Build Bars from ``Lake.load_arrays`` output (ts as int64 UTC microseconds)."""
    ts = arrays["ts"]
    sessions = nyse()
    step = TIMEFRAMES[timeframe]
    if step == 0:
        sess = day_index(ts, sessions)
        n = len(ts)
        in_sess = np.zeros(n, np.int64)
        left = np.zeros(n, np.int64)
    else:
        sess = session_index(ts, sessions)
        opens = sessions.open_us[np.maximum(sess, 0)]
        closes = sessions.close_us[np.maximum(sess, 0)]
        width = step * US_PER_MIN
        in_sess = (ts - opens) // width
        left = -(-(closes - ts) // width) - 1  # ceil: a half-hour tail is one more 1Hour bar
    if (sess < 0).any():
        raise ValueError("bars outside NYSE sessions: load them through the lake, which refuses such bars")
    f = lambda k: np.ascontiguousarray(arrays[k], dtype=np.float64)  # noqa: E731
    return Bars(f("open"), f("high"), f("low"), f("close"), f("volume"),
                sess.astype(np.int64), in_sess.astype(np.int64), left.astype(np.int64))
