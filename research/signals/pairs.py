"""pairs: trade the spread of two co-moving symbols back to its mean.

Definition (log prices ly = log y.close, lx = log x.close; y and x aligned bar for bar; L = lookback):
* alpha[t], beta[t], corr[t]: OLS of ly on lx (with intercept) and the correlation of ly and lx over
  bars t-L+1..t (running sums, O(n)). Log prices make beta an elasticity and the spread a log ratio.
* spread[t] = ly[t] - beta[t-1] * lx[t] - alpha[t-1]: bar t is scored by the fit that ends at t-1, so
  the bar being judged is not part of the regression judging it (an in-sample residual would be
  shrunk toward 0). Both choices read only data up to t; this one is the out-of-sample one.
  beta[t] is the hedge ratio for a position opened at t+1's open, and the same beta scores bar t+1.
* z[t] = (spread[t] - mean) / std (population) of spread[t-L+1..t]. First z at t = 2L-1. z is NaN
  where the spread is numerically flat (std < 1e-7, an exact synthetic relation).
* long spread = long y, short beta * x (bet that z rises); short spread = the mirror image.
A state machine (``pair_signals_nb``) turns z into one trade at a time, decided at bar t's close and
filled at t+1's open (research/exits.py):
* long entry when flat, corr[t] >= min_corr and -stop_z < z[t] <= -entry_z; short entry (if
  ``short``) when stop_z > z[t] >= entry_z. Entries are levels, not crossings.
* long exit when z[t] >= -exit_z (reverted; ">=" rather than |z| <= exit_z so a jump past the band
  still exits), or z[t] <= -stop_z (stop), or after max_hold bars held (time stop, counted as in
  exits.py: the first bar after the entry decision is bar 1; 0 = off). Shorts mirror it.
* the time stop lives here, not in ExitRules, because the plan must know a trade ended: after a stop
  or time stop that side stays locked until z reverts (long: z >= -exit_z), so a failed trade is not
  re-entered on the next bar. A long whose z jumps to >= entry_z exits and enters short on one bar.
* NaN z (warm-up, missing closes): no entry and no z exit; the time stop still counts.
``signals`` takes two Bars, ``signals(y, x, p) -> PairSignals``, unlike the single-symbol
``(Bars, Params) -> Signals`` of base.Strategy; PairSignals' first four fields are a Signals.
Pair selection (``engle_granger``, ``screen_pairs``) is done once on a training window.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple

import numpy as np

from ..bars import Bars
from ..kernels.pairs import pair_signals_nb, pair_spread_nb
from .base import Strategy, StrategyKind


@dataclass(frozen=True, slots=True)
class Pairs:
    lookback: int = 60
    entry_z: float = 1.2
    exit_z: float = 0.2
    stop_z: float = 2.8
    max_hold: int = 80  # bars, 0 = no time stop
    min_corr: float = 0.7
    short: bool = True

    def __post_init__(self) -> None:
        if self.lookback < 3:
            raise ValueError(f"pairs lookback must be >= 3 bars, got {self.lookback}")
        if not (0.0 <= self.exit_z < self.entry_z < self.stop_z):
            raise ValueError(f"pairs needs 0 <= exit_z < entry_z < stop_z, got exit_z={self.exit_z}, "
                             f"entry_z={self.entry_z}, stop_z={self.stop_z}")
        if self.max_hold < 0:
            raise ValueError(f"pairs max_hold must be >= 0 bars (0 = off), got {self.max_hold}")
        if not (-1.0 <= self.min_corr <= 1.0):
            raise ValueError(f"pairs min_corr must lie in [-1, 1], got {self.min_corr}")


GRID = {
    "lookback": (30, 45, 60, 75, 90),
    "entry_z": (0.8, 1.0, 1.2, 1.4, 1.6),
    "exit_z": (0.0, 0.2, 0.4),
    "stop_z": (2.4, 2.8, 3.2),
    "max_hold": (40, 80, 120),
}


class PairSignals(NamedTuple):
    """Spread decisions per bar (long spread = long y, short beta * x) and the series behind them."""

    long_entry: np.ndarray
    long_exit: np.ndarray
    short_entry: np.ndarray
    short_exit: np.ndarray
    beta: np.ndarray  # hedge ratio fitted over bars t-L+1..t (use it for a position opened at t+1)
    z: np.ndarray  # z-score of spread[t]
    spread: np.ndarray  # ly[t] - beta[t-1] * lx[t] - alpha[t-1]
    corr: np.ndarray  # correlation of ly and lx over bars t-L+1..t


def _log(close: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.ascontiguousarray(close, dtype=np.float64))  # <= 0 -> -inf / NaN: skipped


def signals(y: Bars, x: Bars, p: Pairs) -> PairSignals:
    """Spread entries and exits for the pair (y, x) (see the module docstring)."""
    if len(y) != len(x) or not (np.array_equal(y.session, x.session)
                                and np.array_equal(y.bar_in_session, x.bar_in_session)):
        raise ValueError("pairs needs y and x aligned bar for bar (same sessions and bar positions)")
    beta, corr, spread, z = pair_spread_nb(_log(y.close), _log(x.close), p.lookback)
    le, lx, se, sx = pair_signals_nb(z, corr, p.entry_z, p.exit_z, p.stop_z, p.max_hold, p.min_corr,
                                     p.short)
    return PairSignals(le, lx, se, sx, beta, z, spread, corr)


STRATEGY = Strategy("pairs", Pairs, GRID, signals, kind=StrategyKind.PAIR)


class CointResult(NamedTuple):
    """Engle-Granger result on log prices: p-value, hedge ratio, spread half-life in bars."""

    pvalue: float
    beta: float
    half_life: float  # inf when the spread shows no mean reversion


class PairCandidate(NamedTuple):
    """A pair that passed the screen, oriented as y ~ beta * x."""

    y: str
    x: str
    pvalue: float
    beta: float
    half_life: float
    corr: float


def _check_closes(*closes: np.ndarray) -> list[np.ndarray]:
    out = [np.asarray(c, dtype=np.float64) for c in closes]
    n = out[0].shape
    for c in out:
        if c.ndim != 1 or c.shape != n:
            raise ValueError("closes must be 1-d arrays of equal length (aligned bars)")
        if not (np.isfinite(c).all() and (c > 0).all()):
            raise ValueError("closes must be finite and positive (align and drop missing bars first)")
    return out


def engle_granger(y_close: np.ndarray, x_close: np.ndarray) -> CointResult:
    """Engle-Granger test of log y on log x (statsmodels' coint, constant, AIC lags), with beta and half-life.

    beta is the OLS slope of log y on log x with intercept; the half-life is -ln 2 / ln(phi) of the
    AR(1) fit spread[t] = c + phi * spread[t-1] on that regression's residual (inf unless 0 < phi < 1).
    """
    from statsmodels.tsa.stattools import coint

    ly, lx = (np.log(c) for c in _check_closes(y_close, x_close))
    pvalue = float(coint(ly, lx, trend="c", autolag="aic")[1])
    beta, alpha = np.polyfit(lx, ly, 1)
    e = ly - beta * lx - alpha
    phi = np.polyfit(e[:-1], e[1:], 1)[0]
    half_life = float(-np.log(2.0) / np.log(phi)) if 0.0 < phi < 1.0 else float("inf")
    return CointResult(pvalue, float(beta), half_life)


def screen_pairs(closes: dict[str, np.ndarray], max_pvalue: float = 0.05,
                 min_corr: float = 0.7) -> list[PairCandidate]:
    """Cointegrated, correlated pairs among aligned closes (a training window), best p-value first.

    Both orientations of each pair are tested (Engle-Granger is not symmetric); the one with the lower
    p-value is kept. corr is the correlation of the log prices, as in the signal's filter.
    Ties are ordered by name, so the result is deterministic.
    """
    names = list(closes)
    arrays = dict(zip(names, _check_closes(*closes.values()))) if names else {}
    out = []
    for a, b in combinations(names, 2):
        corr = float(np.corrcoef(np.log(arrays[a]), np.log(arrays[b]))[0, 1])
        if not corr >= min_corr:
            continue
        best = min(((engle_granger(arrays[u], arrays[v]), u, v) for u, v in ((a, b), (b, a))),
                   key=lambda r: r[0].pvalue)
        res, u, v = best
        if res.pvalue <= max_pvalue:
            out.append(PairCandidate(u, v, res.pvalue, res.beta, res.half_life, corr))
    return sorted(out, key=lambda c: (c.pvalue, c.y, c.x))
