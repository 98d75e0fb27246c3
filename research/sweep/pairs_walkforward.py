"""The nightly's walk-forward of pairs: the Engle-Granger screen per selection window, the sweep, the choice.

``walk_forward_pairs`` screens each candidate pair on every selection window (a train window, or the
deploy one) using bars before that window's end only (``anchored``: from the first bar; ``rolling``:
the window's own), sweeps the windows it passes (``research.sweep.pairs.run_pairs_grid``), and
chooses the combination, its out-of-sample record and guards as ``select.choose`` does for the
single-symbol strategies. A pair screened out of a window leaves that test window flat; every
candidate's combinations count as trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..bars import Bars
from ..guards import neighbourhood_stability, pbo_cscv
from ..metrics import METRICS
from ..signals.pairs import Pairs, engle_granger
from ..walkforward import choose as choose_one
from ..walkforward import splits as wf_splits
from ..walkforward import stitched_metrics
from .chunks import DEPLOY
from .engine import Costs
from .pairs import PARAM_FIELDS, _legs, _param_rows, pair_path, run_pairs_grid
from .results import check_objective
from .select import MATRIX_BYTES, PBO_SPLITS, PBO_TRIALS, Choice, deflated_over_trials


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


def walk_forward_windows(ts: np.ndarray, walk_forward: str | None, anchored: bool = False) -> tuple[np.ndarray, list[str]]:
    """[full, train-NN, test-NN, ..., deploy] bar ranges and names, as ``chunks.load_symbol`` builds them."""
    n = len(ts)
    windows, names = [(0, n)], ["full"]
    if walk_forward:
        parts = wf_splits(ts, walk_forward, anchored=anchored)
        for s in parts:
            windows += [s.train, s.test]
            names += [f"train-{s.index:02d}", f"test-{s.index:02d}"]
        length = parts[-1].train[1] - parts[-1].train[0]
        windows.append((0 if anchored else max(n - length, 0), n))
        names.append(DEPLOY)
    return np.asarray(windows, np.int64), names


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
        rows = pd.DataFrame(columns=["symbol", "combo", *PARAM_FIELDS, "split", "regime", *METRICS])
        if any(s.passed for s in screens.values()):
            m = run_pairs_grid(y, x, params, costs, windows=windows, periods_per_year=periods_per_year)
            rows = pd.DataFrame({"symbol": name, "combo": np.repeat(np.arange(len(params)), len(names)),
                                 **{f: np.repeat([getattr(p, f) for p in params], len(names)) for f in PARAM_FIELDS},
                                 "split": np.tile(names, len(params)), "regime": "all",
                                 **dict(zip(METRICS, m[:, :, -1, :].reshape(-1, len(METRICS)).T))})
        cells = _PairCells(name, y, x, ts, windows, names, params, costs, periods_per_year)
        out.append(PairWalkForward(name, tuple(screens.values()), rows,
                                   cells.choice(rows, screens, sel, objective, min_trades, pbo_trials, pbo_splits)))
    n_trials = len(candidates) * len(params)
    sharpes = np.concatenate([r.rows.loc[r.rows["split"] == sel, "sharpe"].to_numpy(float)
                              for r in out if r.screens[-1].passed] or [np.empty(0)])
    for k, r in enumerate(out):
        c = replace(r.choice, n_trials=n_trials)
        if c.combo is not None:
            dsr, notes = deflated_over_trials(c.is_returns.to_numpy(float), sharpes, n_trials, periods_per_year)
            c = replace(c, deflated_sharpe=dsr, notes=(*c.notes, *notes))
        out[k] = replace(r, choice=c)
    return out


def _screen(y: Bars, x: Bars, window: np.ndarray, name: str, max_pvalue: float, anchored: bool) -> Screen:
    a, b = 0 if anchored else int(window[0]), int(window[1])
    if b - a < 20:
        return Screen(name, math.nan, math.nan, False)
    with _one_blas_thread():
        coint = engle_granger(y.close[a:b], x.close[a:b])
    return Screen(name, coint.pvalue, coint.beta, coint.pvalue <= max_pvalue)


class _PairCells:
    """One pair's windows and a cache of per-bar returns by combo (``select._Cells`` for a pair)."""

    def __init__(self, name, y, x, ts, windows, names, params, costs, ppy) -> None:
        self.name, self.y, self.x, self.windows, self.names = name, y, x, windows, names
        self.params, self.costs, self.ppy = params, costs, ppy
        self.index = pd.to_datetime(ts, unit="us", utc=True)
        self._returns: dict[int, np.ndarray] = {}

    def returns(self, combo: int) -> np.ndarray:
        if combo not in self._returns:
            self._returns[combo] = pair_returns(self.y, self.x, self.params[combo], self.costs)
        return self._returns[combo]

    def span(self, window: str) -> slice:
        a, b = self.windows[self.names.index(window)]
        return slice(int(a), int(b))

    def choice(self, rows, screens, sel, objective, min_trades, pbo_trials, pbo_splits) -> Choice:
        oos, oos_trades, oos_returns, notes = self.out_of_sample(rows, screens, objective, min_trades)
        flat = dict(symbol=self.name, regime="all", window=sel, combo=None, out_of_sample=oos,
                    oos_trades=oos_trades, oos_returns=oos_returns)
        if not screens[sel].passed:
            return Choice(**flat, notes=(f"screened out on {sel}: {_why(screens[sel])}", *notes))
        deploy = rows[rows["split"] == sel].sort_values("combo")
        picked = choose_one(deploy, objective, min_trades)
        if picked is None:
            return Choice(**flat, notes=(f"no combination has >= {min_trades} trades in {sel}/all", *notes))
        combo = int(deploy["combo"].iloc[picked])
        cut = self.span(sel)
        r = self.returns(combo)[cut]
        pbo, note = self.pbo(deploy["combo"].to_numpy(np.int64), combo, cut, pbo_trials, pbo_splits)
        return Choice(**{**flat, "combo": combo}, params=asdict(self.params[combo]),
                      in_sample={k: float(deploy[k].iloc[picked]) for k in METRICS}, pbo=pbo,
                      stability=_stability(deploy, combo, objective), notes=(*notes, *note),
                      is_returns=pd.Series(r, index=self.index[cut], name="returns"))

    def out_of_sample(self, rows, screens, objective, min_trades):
        """Stitched test-window metrics of the combos chosen on each screened-in train window."""
        trains = [w for w in screens if w.startswith("train-")]
        if not trains:
            return None, 0, None, ()
        parts, stamps, trades, skipped = [], [], 0, []
        for train in trains:
            test = self.span(train.replace("train-", "test-"))
            tr = rows[rows["split"] == train].sort_values("combo")
            picked = choose_one(tr, objective, min_trades) if screens[train].passed else None
            if picked is None:
                skipped.append(f"{train.replace('train-', 'test-')} ({_why(screens[train]) if not screens[train].passed else 'nothing eligible'})")
                parts.append(np.zeros(test.stop - test.start))
            else:
                combo = int(tr["combo"].iloc[picked])
                parts.append(self.returns(combo)[test])
                hit = rows[(rows["split"] == train.replace("train-", "test-")) & (rows["combo"] == combo)]
                trades += int(hit["trades"].iloc[0])
            stamps.append(self.index[test])
        stitched = stitched_metrics(parts, self.ppy)
        metrics = {k: getattr(stitched, k) for k in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar")}
        series = pd.Series(np.concatenate(parts), index=stamps[0].append(stamps[1:]), name="returns")
        return metrics, trades, series, ((f"flat in {', '.join(skipped)}",) if skipped else ())

    def pbo(self, combos: np.ndarray, combo: int, cut: slice, trials: int, splits: int):
        n_bars = cut.stop - cut.start
        k = int(min(trials, max(2, MATRIX_BYTES // max(8 * n_bars, 1)), len(combos)))
        if k < 2:
            return math.nan, ("PBO needs >= 2 combinations",)
        pick = np.unique(np.r_[combos[np.linspace(0, len(combos) - 1, k).round().astype(int)], combo])
        s = min(splits, (n_bars // 4) // 2 * 2)
        if s < 4:
            return math.nan, (f"PBO needs >= 16 bars in the cell, has {n_bars}",)
        matrix = np.stack([self.returns(int(c))[cut] for c in pick], axis=1)
        return pbo_cscv(matrix, n_splits=s, metric="sharpe").pbo, ()


def _one_blas_thread():
    """statsmodels' ADF runs many small SVDs: next to numba's threads, a multi-threaded BLAS makes each
    25x slower (8.7 s instead of 0.35 s for 3,270 bars on 2 cores), so the screen runs on one."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _why(s: Screen) -> str:
    return "fewer than 20 bars to screen" if math.isnan(s.pvalue) else f"Engle-Granger p={s.pvalue:.4g}"


def _stability(sel: pd.DataFrame, combo: int, objective: str) -> float:
    """``neighbourhood_stability`` of the chosen point over every swept param (as ``select``)."""
    axes = [f for f in PARAM_FIELDS if sel[f].nunique() > 1]
    if not axes:
        return math.nan
    levels = [np.sort(sel[a].unique()) for a in axes]
    grid = np.full([len(v) for v in levels], np.nan)
    pos = tuple(np.searchsorted(v, sel[a].to_numpy()) for a, v in zip(axes, levels))
    grid[pos] = sel[objective].to_numpy(float)
    at = int(np.flatnonzero(sel["combo"].to_numpy() == combo)[0])
    return neighbourhood_stability(grid, tuple(int(p[at]) for p in pos))
