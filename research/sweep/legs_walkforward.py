"""The nightly's walk-forward of a multi-leg candidate (a pair, a rotation basket): windows, choice, guards.

Pairs (``pairs_walkforward``) and rotation baskets (``rotation_walkforward``) are swept as one
series over every window at once (positions carrying across window edges) and chosen the way
``select.choose`` chooses for the single-symbol strategies, for regime ``"all"``: the best
combination on each train window, scored on the next test window and stitched (the out-of-sample
record), the best on the deploy window for tomorrow, PBO over that window's per-bar returns and
the stability of the chosen point in the grid. What differs between them lives in their modules:
the sweep, the per-bar returns of one combination, and (pairs) a screen that may refuse a
selection window; here a refused window is a reason string, and its test window is flat.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from ..guards import pbo_cscv, point_stability
from ..metrics import METRICS
from ..walkforward import choose as choose_one
from ..walkforward import stitched_metrics
from .select import MATRIX_BYTES, Choice, deflated_over_trials

OOS_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar")


def sweep_rows(name: str, params: Sequence, fields: Sequence[str], names: Sequence[str], m: np.ndarray) -> pd.DataFrame:
    """One row per (combo, window) of a grid's METRICS array ``m`` [params, windows, slots, M] (last slot: "all")."""
    n = len(names)
    return pd.DataFrame({"symbol": name, "combo": np.repeat(np.arange(len(params)), n),
                         **{f: np.repeat([getattr(p, f) for p in params], n) for f in fields},
                         "split": np.tile(list(names), len(params)), "regime": "all",
                         **dict(zip(METRICS, m[:, :, -1, :].reshape(-1, len(METRICS)).T))})


def empty_rows(fields: Sequence[str]) -> pd.DataFrame:
    """``sweep_rows``' columns, no rows (a candidate never swept)."""
    return pd.DataFrame(columns=["symbol", "combo", *fields, "split", "regime", *METRICS])


def deflate(choices: Sequence[Choice], trial_sharpes: np.ndarray, n_trials: int, ppy: float) -> list[Choice]:
    """Each choice with ``n_trials`` and, when it chose, its deflated Sharpe against ``trial_sharpes``."""
    out = []
    for c in choices:
        c = replace(c, n_trials=n_trials)
        if c.combo is not None:
            dsr, notes = deflated_over_trials(c.is_returns.to_numpy(float), trial_sharpes, n_trials, ppy)
            c = replace(c, deflated_sharpe=dsr, notes=(*c.notes, *notes))
        out.append(c)
    return out


class LegCells:
    """One candidate's windows and a cache of per-bar returns by combo (``select._Cells`` for multi-leg).

    ``path_returns(params)``: the per-bar returns of one combination's equity (bar 0: 0), the
    returns its sweep scores; ``fields``: the params' swept columns of the rows.
    """

    def __init__(self, name: str, ts: np.ndarray, windows: np.ndarray, names: list[str], params: list,
                 path_returns: Callable[[object], np.ndarray], fields: Sequence[str], ppy: float) -> None:
        self.name, self.windows, self.names, self.params, self.ppy = name, windows, names, params, ppy
        self.path_returns, self.fields = path_returns, tuple(fields)
        self.index = pd.to_datetime(ts, unit="us", utc=True)
        self._returns: dict[int, np.ndarray] = {}

    def returns(self, combo: int) -> np.ndarray:
        if combo not in self._returns:
            self._returns[combo] = self.path_returns(self.params[combo])
        return self._returns[combo]

    def span(self, window: str) -> slice:
        a, b = self.windows[self.names.index(window)]
        return slice(int(a), int(b))

    def choice(self, rows: pd.DataFrame, refused: Mapping[str, str | None], sel: str, objective: str, min_trades: int,
               pbo_trials: int, pbo_splits: int) -> Choice:
        """The choice on ``sel`` and the out-of-sample record; ``refused[w]``: why window w may not choose (None: it may)."""
        oos, oos_trades, oos_returns, notes = self.out_of_sample(rows, refused, objective, min_trades)
        flat = dict(symbol=self.name, regime="all", window=sel, combo=None, out_of_sample=oos,
                    oos_trades=oos_trades, oos_returns=oos_returns)
        if refused.get(sel):
            return Choice(**flat, notes=(f"screened out on {sel}: {refused[sel]}", *notes))
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
                      stability=self.stability(deploy, combo, objective), notes=(*notes, *note),
                      is_returns=pd.Series(r, index=self.index[cut], name="returns"))

    def out_of_sample(self, rows, refused, objective, min_trades):
        """Stitched test-window metrics of the combos chosen on each train window it let choose."""
        trains = [w for w in self.names if w.startswith("train-")]
        if not trains:
            return None, 0, None, ()
        parts, stamps, trades, skipped = [], [], 0, []
        for train in trains:
            name = train.replace("train-", "test-")
            test = self.span(name)
            tr = rows[rows["split"] == train].sort_values("combo")
            picked = None if refused.get(train) else choose_one(tr, objective, min_trades)
            if picked is None:
                skipped.append(f"{name} ({refused.get(train) or 'nothing eligible'})")
                parts.append(np.zeros(test.stop - test.start))
            else:
                combo = int(tr["combo"].iloc[picked])
                parts.append(self.returns(combo)[test])
                hit = rows[(rows["split"] == name) & (rows["combo"] == combo)]
                trades += int(hit["trades"].iloc[0])
            stamps.append(self.index[test])
        stitched = stitched_metrics(parts, self.ppy)
        series = pd.Series(np.concatenate(parts), index=stamps[0].append(stamps[1:]), name="returns")
        return ({k: getattr(stitched, k) for k in OOS_METRICS}, trades, series,
                (f"flat in {', '.join(skipped)}",) if skipped else ())

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

    def stability(self, sel: pd.DataFrame, combo: int, objective: str) -> float:
        """``neighbourhood_stability`` of the chosen point over every swept param (as ``select``)."""
        at = int(np.flatnonzero(sel["combo"].to_numpy() == combo)[0])
        return point_stability(sel[list(self.fields)], sel[objective].to_numpy(float), at)
