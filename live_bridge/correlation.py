"""Daily-return correlations for the risk check's correlated-positions rule, from data known at decision time.

The window is the ``days`` daily log returns of the sessions *before* the decision's session
(closes of sessions ``k - days - 1 .. k - 1`` for a decision in session ``k``): every close in it is
final when the session opens, so the matrix is the same for every decision of the session (built
once, cached by the runner per session) and never depends on which symbol's bar of today arrived
first. A session's close is its daily bar's close, or its last intraday bar's: one rule for every
timeframe (an intraday runner needs ``days + 1`` sessions of history for it; see ``window_closes``).

A symbol is *measured* when its history reaches the window's first session and it lacks at most
``days // 10`` of the window's sessions (a missing session repeats the previous close: a zero
return); otherwise it has "too little history", and the rule says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np

from data_lake.calendar import nyse

__all__ = ["Correlations", "LastCloses", "correlations_from_sessions", "session_index"]


@dataclass(frozen=True, slots=True, eq=False)
class Correlations:
    """Correlations of the measured symbols' daily returns, and why the others are not measured.

    Held as standardized return rows (``z``: zero mean, unit norm): a correlation is a dot product,
    computed for the few pairs a check asks about. The full n x n product was 20-35 ms for 500
    symbols on the shared 2-core box (BLAS threads contending); a check's row is microseconds.
    ``matrix`` instead of ``z``: a given matrix (tests, or one built elsewhere).
    """

    index: Mapping[str, int]  # measured symbol -> row of ``z`` (or of ``matrix``)
    z: np.ndarray | None  # (n, days) standardized daily log returns
    days: int  # returns in the window
    short: Mapping[str, str]  # symbol not measured -> why (too little history, no variance)
    as_of: date | None = None  # the last session in the window
    matrix: np.ndarray | None = None

    @classmethod
    def from_matrix(cls, symbols: Iterable[str], matrix: np.ndarray, days: int = 60,
                    short: Mapping[str, str] | None = None, as_of: date | None = None) -> Correlations:
        """A lookup over a given matrix (symbols in its row order)."""
        symbols = list(symbols)
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (len(symbols), len(symbols)):
            raise ValueError(f"a {len(symbols)}-symbol correlation matrix must be square, got {m.shape}")
        return cls({s: i for i, s in enumerate(symbols)}, None, days, dict(short or {}), as_of, m)

    @classmethod
    def from_returns(cls, symbols: list[str], returns: np.ndarray, days: int, as_of: date | None = None,
                     short: Mapping[str, str] | None = None) -> Correlations:
        """From aligned return rows (n, >= days; the last ``days`` used): a row with a NaN or no variance
        (no correlation is defined) is left out, with the reason."""
        short = dict(short or {})
        if not symbols:  # nothing measured (e.g. an intraday runner's few sessions of bars)
            return cls({}, np.empty((0, days)), days, short, as_of)
        r = np.asarray(returns, dtype=np.float64).reshape(len(symbols), -1)[:, -days:]
        finite = np.isfinite(r).sum(axis=1)
        z = r - r.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(z, axis=1)
        ok = (finite == days) & (norm > 1e-12)
        for k in np.flatnonzero(~ok):
            s = symbols[k]
            short[s] = f"{s} has {finite[k]} of the {days} daily returns needed" if finite[k] < days else \
                f"{s} did not move in the last {days} sessions: no correlation is defined"
        keep = np.flatnonzero(ok)
        z = z[keep] / norm[keep, None]
        return cls({symbols[k]: i for i, k in enumerate(keep)}, z, days, short, as_of)

    def why_not(self, symbol: str) -> str | None:
        """Why ``symbol`` cannot be measured (too little history, or not in the data), or None."""
        if symbol in self.index:
            return None
        return self.short.get(symbol) or f"{symbol} has no daily closes before {self.as_of or 'today'}"

    def with_others(self, symbol: str, others: Iterable[str]) -> tuple[dict[str, float], tuple[str, ...]]:
        """``symbol``'s correlation with each of ``others`` that is measured, and the others that are not.

        ``symbol`` itself must be measured (``why_not`` is None)."""
        i = self.index[symbol]
        names, rows, missing = [], [], []
        for s in others:
            j = self.index.get(s)
            if j is None:
                missing.append(s)
            else:
                names.append(s)
                rows.append(j)
        if self.matrix is not None:
            values = self.matrix[i, rows]
        else:
            values = np.clip(self.z[rows] @ self.z[i], -1.0, 1.0) if rows else np.empty(0)
        return dict(zip(names, values.tolist())), tuple(missing)


def session_index(day: date) -> int:
    """The NYSE session index of a New York date (of the next session when ``day`` is not one)."""
    cal = nyse()
    stamp = np.datetime64(day, "D").astype("datetime64[us]").astype(np.int64)  # 00:00 UTC of the date
    # the calendar's day stamps are 00:00 New York (04:00-05:00 UTC): the first one after 00:00 UTC
    return int(np.searchsorted(cal.day_us, stamp, side="left"))


def correlations_from_sessions(series: Mapping[str, tuple[np.ndarray, np.ndarray]], session: int,
                               days: int) -> Correlations:
    """Correlations over the ``days`` daily returns ending at the session before ``session`` (an index).

    ``series``: symbol -> (session index of each bar, increasing; close of each bar), daily or
    intraday bars alike: a session's close is its last bar's close.
    """
    grid = np.arange(session - days - 1, session)  # days + 1 closes -> days returns
    max_missing = days // 10
    names: list[str] = []
    closes = np.empty((len(series), days + 1))
    short: dict[str, str] = {}
    for sym, (sess, close) in series.items():
        pos = np.searchsorted(sess, grid, side="right") - 1  # the last bar at or before each session
        own = (pos >= 0) & (sess[np.maximum(pos, 0)] == grid) if len(sess) else np.zeros(len(grid), bool)
        if not len(sess) or pos[0] < 0 or (~own).sum() > max_missing:  # (else a missing close repeats)
            short[sym] = (f"{sym} has {max(int(own.sum()) - 1, 0)} of the {days} daily returns needed "
                          f"(closes of {int(own.sum())} of the {days + 1} sessions before today)")
            continue
        closes[len(names)] = close[pos]
        names.append(sym)
    with np.errstate(divide="ignore", invalid="ignore"):  # a non-positive close: NaN, then short
        returns = np.diff(np.log(closes[:len(names)]), axis=1)
    return Correlations.from_returns(names, returns, days, _day_of(session - 1), short)


def _day_of(session: int) -> date | None:
    cal = nyse()
    if not 0 <= session < len(cal.day_us):
        return None
    return (np.datetime64(int(cal.day_us[session]), "us").astype("datetime64[D]")).astype(date)


class LastCloses(Mapping[str, float]):
    """symbol -> its latest close, read from the runner's history when asked (current after every bar)."""

    def __init__(self, history: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        self._history = history

    def __getitem__(self, symbol: str) -> float:
        close = self._history[symbol]["close"]
        if not len(close):
            raise KeyError(symbol)
        return float(close[-1])

    def __iter__(self) -> Iterator[str]:
        return iter(self._history)

    def __len__(self) -> int:
        return len(self._history)
