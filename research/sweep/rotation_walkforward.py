"""The nightly's walk-forward of rotation baskets: the sweep over every window at once, the choice.

``walk_forward_rotation`` sweeps each candidate basket "A,B,C/BENCH" (``research.sweep.rotation.
run_rotation_grid``, its legs aligned on the bars all of them have, positions carrying across window
edges) and chooses as pairs do (``legs_walkforward``): the best combination on each train window,
scored on the next test window and stitched (the out-of-sample record), the best on the deploy
window for tomorrow, PBO and stability there, regime ``"all"`` (a multi-leg entry trades one
entry in every regime). There is no screen: every window may choose. Every basket's combinations
count as trials, so the deflated Sharpe of the luckiest basket is not flattered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..bars import Bars
from ..signals.rotation import Rotation
from .chunks import DEPLOY, walk_forward_windows
from .engine import Costs
from .legs_walkforward import LegCells, deflate, sweep_rows
from .results import check_objective
from .rotation import PARAM_FIELDS, _param_rows, basket_arrays, rotation_path, run_rotation_grid
from .select import PBO_SPLITS, PBO_TRIALS, Choice


@dataclass(frozen=True)
class BasketWalkForward:
    """One candidate basket through the walk-forward: its sweep rows and the choice for tomorrow.

    ``rows``: one row per (combo, window), the basket's name as ``symbol``, regime ``"all"``, the METRICS.
    """

    name: str
    rows: pd.DataFrame
    choice: Choice


def basket_returns(assets: Sequence[Bars], bench: Bars, p: Rotation, costs: Costs) -> np.ndarray:
    """Per-bar returns of one combination's equity (bar 0: 0), the returns ``run_rotation_grid`` scores."""
    eq = rotation_path(assets, bench, p, costs).equity
    return np.r_[0.0, eq[1:] / eq[:-1] - 1.0]


def walk_forward_rotation(candidates: Mapping[str, tuple[Sequence[Bars], Bars, np.ndarray]], params: list,
                          costs: Costs, *, walk_forward: str | None, objective: str = "sharpe", min_trades: int = 5,
                          periods_per_year: float = 252.0, anchored: bool = False, pbo_trials: int = PBO_TRIALS,
                          pbo_splits: int = PBO_SPLITS) -> list[BasketWalkForward]:
    """Each candidate "A,B,C/BENCH" -> (assets, bench, ts) through the walk-forward (see the module docstring).

    ``n_trials`` = every candidate's combinations; the variance of the trial Sharpe ratios behind
    the deflated Sharpe is over the deploy rows (``"full"`` without a walk-forward) of every candidate.
    """
    check_objective(objective)
    params = list(params)
    _param_rows(params)
    if not candidates:
        raise ValueError("nothing to sweep: no baskets")
    for name, (assets, bench, ts) in candidates.items():  # every basket checked before any is swept
        basket_arrays(assets, bench)
        if len(ts) != len(bench):
            raise ValueError(f"rotation {name}: {len(ts)} timestamps for {len(bench)} bars")
    sel = DEPLOY if walk_forward else "full"
    out = []
    for name, (assets, bench, ts) in candidates.items():
        windows, names = walk_forward_windows(ts, walk_forward, anchored)
        m = run_rotation_grid(assets, bench, params, costs, windows=windows, periods_per_year=periods_per_year)
        rows = sweep_rows(name, params, PARAM_FIELDS, names, m)
        cells = LegCells(name, ts, windows, names, params,
                         lambda p, assets=assets, bench=bench: basket_returns(assets, bench, p, costs),
                         PARAM_FIELDS, periods_per_year)
        out.append(BasketWalkForward(name, rows, cells.choice(rows, {}, sel, objective, min_trades, pbo_trials,
                                                              pbo_splits)))
    sharpes = np.concatenate([r.rows.loc[r.rows["split"] == sel, "sharpe"].to_numpy(float) for r in out])
    choices = deflate([r.choice for r in out], sharpes, len(candidates) * len(params), periods_per_year)
    return [BasketWalkForward(r.name, r.rows, c) for r, c in zip(out, choices)]
