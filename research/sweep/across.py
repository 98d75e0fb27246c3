"""Choosing among strategies per (symbol, regime): one strategy per cell, deflated over every trial.

``research.sweep.select.choose`` picks params within one strategy's sweep. A night that sweeps
several strategies has one such choice per strategy in every (symbol, regime) cell, but the
account holds one position per symbol, so ``pick_strategies`` sends one strategy per cell forward
as the candidate the promotion gate judges.

* **The comparable number** is the objective measured *out of sample*: the stitched walk-forward
  test windows of the combos chosen on each train window (``Choice.out_of_sample``). It is the
  record of "this strategy with its selection rule" on bars no choice saw, over the same test
  windows, the same regime mask and the same costs for every strategy of the night, so it does
  not depend on how many combinations a grid has. The in-sample (deploy-window) objective is not
  comparable: it is the maximum over a strategy's N trials, and that maximum grows with N, so the
  biggest grid would win by luck. The stitched record has no per-trade figure: with the objective
  ``expectancy`` the out-of-sample Sharpe is compared. Without walk-forward there is no
  out-of-sample record; the selection window's objective is compared, and the gate, which needs
  out-of-sample evidence, refuses the winner anyway.
* **Eligible**: a strategy with a chosen combination (enough trades) and a finite comparable
  number; higher wins, ties to the strategy listed first. One with a combination but an undefined
  number ranks after every defined one. When no strategy has a combination, the cell is flat (the
  first strategy's flat choice carries the cell).
* **Deflated Sharpe over every trial** (``select.deflated_over_trials``): the winner's returns in
  its cell against ``n_trials`` = the sum over strategies of their combinations, and the variance
  of the trial Sharpe ratios of every strategy's combinations in the cell (selection window x
  regime). With one strategy this is exactly ``choose``'s figure.
* **PBO and stability stay per strategy**: the winner's own grid (CSCV across strategies would
  need one returns matrix of every strategy's trials; not built). The winner's out-of-sample
  record was itself picked among K strategies' records: mildly optimistic for small K, which the
  deflated Sharpe over all trials and the gate's other rules are there to absorb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import pandas as pd

from .chunks import periods_per_year
from .plan import SweepSpec
from .results import check_objective
from .select import Choice, deflated_over_trials

#: The stitched out-of-sample record's metrics (``research.walkforward.stitched_metrics``).
STITCHED = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar")


class SweptStrategy(Protocol):
    """One strategy's sweep and choices (``pipeline.nightly.StrategyRun`` is one)."""

    strategy: str
    spec: SweepSpec
    results: pd.DataFrame
    choices: tuple[Choice, ...]


@dataclass(frozen=True)
class CellPick:
    """The strategy chosen for one (symbol, regime) and what every strategy scored there.

    ``choice`` is the winner's, with ``n_trials`` and ``deflated_sharpe`` over every strategy's
    trials. ``scores``: (strategy, comparable number, has a combination) in the order given.
    """

    symbol: str
    regime: str
    strategy: str
    choice: Choice
    measure: str  # e.g. "out-of-sample sharpe"
    scores: tuple[tuple[str, float, bool], ...]

    @property
    def note(self) -> str:
        """One line for the params file's verdict: who was chosen over whom, by what number."""
        shown = ", ".join(f"{s} {v:.4g}" if ok else f"{s} flat" for s, v, ok in self.scores)
        if self.choice.combo is None:
            return f"{self.symbol} {self.regime}: no strategy has a combination with enough trades ({shown})"
        won = next((v for s, v, ok in self.scores if s == self.strategy), math.nan)
        if math.isnan(won):  # ranked after every defined number: none of the others had one either
            return (f"{self.symbol} {self.regime}: {self.strategy} chosen as the first strategy with a combination; "
                    f"its {self.measure} is undefined, which the gate refuses ({shown})")
        return f"{self.symbol} {self.regime}: {self.strategy} chosen by {self.measure} ({shown})"


def comparable(choice: Choice, objective: str) -> tuple[float, str]:
    """The number strategies are compared by in one cell, and its name (see the module doc)."""
    if choice.out_of_sample is not None:
        name = objective if objective in STITCHED else "sharpe"
        return _finite(choice.out_of_sample.get(name)), f"out-of-sample {name}"
    return _finite(choice.in_sample.get(objective)), f"in-sample {objective} ({choice.window} window)"


def pick_strategies(runs: Sequence[SweptStrategy], objective: str = "sharpe") -> list[CellPick]:
    """One ``CellPick`` per (symbol, regime) of the runs' choices, in the first run's order."""
    check_objective(objective)
    if not runs:
        raise ValueError("pick_strategies needs at least one strategy's choices")
    names = [r.strategy for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"strategies repeat: {', '.join(names)}")
    cells: dict[tuple[str, str], list[tuple[SweptStrategy, Choice]]] = {}
    for run in runs:
        for c in run.choices:
            cells.setdefault((c.symbol, c.regime), []).append((run, c))
    return [_pick(sym, regime, entrants, objective) for (sym, regime), entrants in cells.items()]


def _pick(symbol: str, regime: str, entrants: list[tuple[SweptStrategy, Choice]], objective: str) -> CellPick:
    scored = [(run, c, *comparable(c, objective)) for run, c in entrants]
    ranked = [(i, s) for i, s in enumerate(scored) if s[1].combo is not None]
    # highest defined number first; undefined after; ties to the strategy listed first (stable sort)
    ranked.sort(key=lambda x: -x[1][2] if not math.isnan(x[1][2]) else math.inf)
    run, choice, _, measure = ranked[0][1] if ranked else scored[0]
    n_trials = sum(c.n_trials for _, c in entrants)
    if choice.combo is not None:
        sharpes = np.concatenate([_trial_sharpes(r, c) for r, c in entrants])
        dsr, notes = deflated_over_trials(choice.is_returns.to_numpy(float), sharpes, n_trials,
                                          periods_per_year(run.spec.timeframe))
        kept = tuple(n for n in choice.notes if not n.startswith("deflated Sharpe"))
        choice = replace(choice, n_trials=n_trials, deflated_sharpe=dsr, notes=(*kept, *notes))
    else:
        choice = replace(choice, n_trials=n_trials)
    scores = tuple((r.strategy, v, c.combo is not None) for r, c, v, _ in scored)
    return CellPick(symbol, regime, run.strategy, choice, measure, scores)


def _trial_sharpes(run: SweptStrategy, c: Choice) -> np.ndarray:
    """The Sharpe ratios of every combination of one strategy in the cell's selection window."""
    rows = run.results
    cell = rows[(rows["symbol"] == c.symbol) & (rows["regime"] == c.regime) & (rows["split"] == c.window)]
    return cell["sharpe"].to_numpy(float)


def _finite(v: object) -> float:
    return float(v) if v is not None and math.isfinite(float(v)) else math.nan
