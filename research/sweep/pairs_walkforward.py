"""The nightly's walk-forward of pairs: the Engle-Granger screen per selection window, the sweep, the choice.

``walk_forward_pairs`` screens each candidate pair on every selection window (a train window, or the
deploy one) using bars before that window's end only (``anchored``: from the first bar; ``rolling``:
the window's own), sweeps the windows it passes (``research.sweep.pairs.run_pairs_grid``), and
chooses the combination, its out-of-sample record and guards as ``select.choose`` does for the
single-symbol strategies (``legs_walkforward``, shared with the rotation baskets). A pair screened
out of a window leaves that test window flat; every candidate's combinations count as trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..bars import Bars
from ..signals.pairs import Pairs, engle_granger
from .chunks import DEPLOY, walk_forward_windows
from .engine import Costs
from .legs_walkforward import LegCells, deflate, empty_rows, sweep_rows
from .pairs import PARAM_FIELDS, _legs, _param_rows, pair_path, run_pairs_grid
from .results import check_objective
from .select import PBO_SPLITS, PBO_TRIALS, Choice

__all__ = ["SCREENS", "PairWalkForward", "Screen", "pair_returns", "walk_forward_pairs", "walk_forward_windows"]


SCREENS = ("anchored", "rolling")  # the bars a selection window's Engle-Granger screen reads (walk_forward_pairs)


class Screen(NamedTuple):
    """The Engle-Granger screen of one pair on one selection window (a train window or the deploy one)."""

    window: str
    pvalue: float  # NaN when the window holds fewer than 20 bars (not screened in)
    beta: float
    passed: bool


@dataclass(frozen=True)
class PairWalkForward:
    """One candidate pair through the walk-forward: its screens, its sweep rows and the choice for tomorrow.

    ``rows``: one row per (combo, window), the pair's name as ``symbol``, regime ``"all"``, the
    METRICS (empty when no selection window screened it in: it was never swept).
    """

    name: str
    screens: tuple[Screen, ...]
    rows: pd.DataFrame
    choice: Choice


def pair_returns(y: Bars, x: Bars, p: Pairs, costs: Costs) -> np.ndarray:
    """Per-bar returns of one combination's equity (bar 0: 0), the returns ``run_pairs_grid`` scores."""
    eq = pair_path(y, x, p, costs).equity
    return np.r_[0.0, eq[1:] / eq[:-1] - 1.0]


def walk_forward_pairs(candidates: Mapping[str, tuple[Bars, Bars, np.ndarray]], params: list, costs: Costs, *,
                       walk_forward: str | None, objective: str = "sharpe", min_trades: int = 5,
                       max_pvalue: float = 0.05, screen: str = "anchored", periods_per_year: float = 252.0,
                       anchored: bool = False, pbo_trials: int = PBO_TRIALS,
                       pbo_splits: int = PBO_SPLITS) -> list[PairWalkForward]:
    """Each candidate "Y/X" -> (y, x, ts) through the walk-forward, the pairs' own way of ``select.choose``.

    * Every selection window (each train window, and the deploy window the params for tomorrow are
      chosen on) screens the pair by Engle-Granger on bars before its end only: ``screen="rolling"``
      on the window's own bars, ``"anchored"`` on every bar from the first one to the window's end
      (two years of daily bars give the test little power; cointegration is a long-run property).
      Never a bar of a test window it is scored on. A window that fails the screen chooses
      nothing: its test window is flat out of sample (zero returns); a failed deploy screen leaves
      the pair flat. The sweep (``run_pairs_grid``, every window at once, positions
      carrying across window edges) runs when any selection window screened the pair in.
    * Choice, out-of-sample record, PBO and stability as in ``select.choose`` (regime ``"all"``).
    * ``n_trials`` = every candidate's combinations, screened out or not; the variance of trial
      Sharpe ratios is over the deploy rows of every candidate the deploy screen let in.
    """
    check_objective(objective)
    if screen not in SCREENS:
        raise ValueError(f"screen must be one of {', '.join(SCREENS)}, got {screen!r}")
    if not 0.0 < max_pvalue <= 1.0:
        raise ValueError(f"max_pvalue must be in (0, 1], got {max_pvalue}")
    params = list(params)
    _param_rows(params)
    sel = DEPLOY if walk_forward else "full"
    out = []
    for name, (y, x, ts) in candidates.items():
        _legs(y, x)
        windows, names = walk_forward_windows(ts, walk_forward, anchored)
        screens = {w: _screen(y, x, windows[names.index(w)], w, max_pvalue, screen == "anchored")
                   for w in [n for n in names if n.startswith("train-")] + [sel]}
        rows = empty_rows(PARAM_FIELDS)
        if any(s.passed for s in screens.values()):
            m = run_pairs_grid(y, x, params, costs, windows=windows, periods_per_year=periods_per_year)
            rows = sweep_rows(name, params, PARAM_FIELDS, names, m)
        cells = LegCells(name, ts, windows, names, params, lambda p, y=y, x=x: pair_returns(y, x, p, costs),
                         PARAM_FIELDS, periods_per_year)
        refused = {w: None if s.passed else _why(s) for w, s in screens.items()}
        out.append(PairWalkForward(name, tuple(screens.values()), rows,
                                   cells.choice(rows, refused, sel, objective, min_trades, pbo_trials, pbo_splits)))
    n_trials = len(candidates) * len(params)
    sharpes = np.concatenate([r.rows.loc[r.rows["split"] == sel, "sharpe"].to_numpy(float)
                              for r in out if r.screens[-1].passed] or [np.empty(0)])
    choices = deflate([r.choice for r in out], sharpes, n_trials, periods_per_year)
    out = [replace(r, choice=c) for r, c in zip(out, choices)]
    return out


def _screen(y: Bars, x: Bars, window: np.ndarray, name: str, max_pvalue: float, anchored: bool) -> Screen:
    a, b = 0 if anchored else int(window[0]), int(window[1])
    if b - a < 20:
        return Screen(name, math.nan, math.nan, False)
    with _one_blas_thread():
        coint = engle_granger(y.close[a:b], x.close[a:b])
    return Screen(name, coint.pvalue, coint.beta, coint.pvalue <= max_pvalue)


def _one_blas_thread():
    """statsmodels' ADF runs many small SVDs: next to numba's threads, a multi-threaded BLAS makes each
    25x slower (8.7 s instead of 0.35 s for 3,270 bars on 2 cores), so the screen runs on one."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _why(s: Screen) -> str:
    return "fewer than 20 bars to screen" if math.isnan(s.pvalue) else f"Engle-Granger p={s.pvalue:.4g}"
