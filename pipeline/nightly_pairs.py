"""Swept pairs as nightly candidates: each "Y/X" through the walk-forward, one entry per pair (regime "all").

``research.sweep.pairs_walkforward.walk_forward_pairs`` does the computing (the Engle-Granger screen on bars
before each selection window's end only, the sweep, the choice on the deploy window, the stitched
out-of-sample record, the deflated Sharpe over every candidate's combinations, PBO, stability);
this module reads the legs from the lake (one snapshot, the night's window, aligned on the bars
both legs have), and turns each pair's choice into the params-file candidate the gate judges.

What live supports shapes the entry: a pair trades one entry for regime ``"all"`` with its own
exits (z exit, z stop, time stop), so ``exit_rules`` are off (``live_bridge/sleeves.py``). And the
account holds one position per symbol: a leg may not be a symbol the night's single-symbol
strategies trade, nor a leg of another pair (``check_pairs``, refused up front, naming the symbol).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import pandas as pd

from data_lake import Lake
from research import baskets
from research.bars import bars_from_arrays
from research.exits import ExitRules
from research.params import Entry, ExitRulesModel, Metrics
from research.signals import get
from research.sweep.chunks import periods_per_year
from research.sweep.engine import Costs, valid_params
from research.sweep.pairs_walkforward import SCREENS, PairWalkForward, Screen, walk_forward_pairs
from research.sweep.select import Choice

STRATEGY = "pairs"


@dataclass(frozen=True)
class PairsSpec:
    """What a pair's sweep ran: the report reads ``symbols`` and ``grid`` as it does a ``SweepSpec``'s."""

    symbols: tuple[str, ...]  # the pair's name, "Y/X"
    grid: tuple[tuple[str, tuple], ...]
    timeframe: str
    walk_forward: str | None
    screen: str
    max_pvalue: float


@dataclass(frozen=True)
class PairsRun:
    """One pair's night, shaped like ``pipeline.nightly.StrategyRun`` (strategy, spec, results, choices)."""

    strategy: str
    spec: PairsSpec
    results: pd.DataFrame
    choices: tuple[Choice, ...]
    screens: tuple[Screen, ...]

    @property
    def note(self) -> str:
        """One line for the verdict: the pair, its deploy screen and what the night chose."""
        c, s = self.choices[0], self.screens[-1]
        p = "n/a" if s.pvalue != s.pvalue else f"{s.pvalue:.4g}"
        chose = f"combo {c.combo} chosen" if c.combo is not None else "flat"
        passed = sum(x.passed for x in self.screens[:-1])
        return (f"{c.symbol} all: pairs, Engle-Granger ({self.spec.screen}) p={p} on {s.window} "
                f"(<= {self.spec.max_pvalue:g}: {'in' if s.passed else 'out'}), screened in on {passed} of "
                f"{len(self.screens) - 1} train windows; {chose}; {c.n_trials} trials over every candidate pair")


def parse_pair(text: str) -> tuple[str, str]:
    """``"msft/ibm"`` -> ("MSFT", "IBM"); ValueError naming the form."""
    lg = baskets.legs(STRATEGY, str(text).strip().upper())
    return lg.traded[0], lg.traded[1]


def check_pairs(pairs: Sequence[str], symbols: Sequence[str], strategies: Sequence[str]) -> None:
    """Refuse, in one line naming the symbol, a pair leg also traded by a single-symbol strategy or another pair."""
    owner: dict[str, str] = {s: f"{', '.join(strategies)} (symbols)" for s in symbols}
    for text in pairs:
        y, x = parse_pair(text)
        for leg in (y, x):
            if leg in owner:
                where = "symbols" if leg in symbols else "pairs"
                raise ValueError(f"pairs {y}/{x}: {leg} is also traded by {owner[leg]}: one account holds one "
                                 f"position per symbol and a pair's legs are not netted with other strategies "
                                 f"(single-leg ones are); drop {leg} from {where} or choose "
                                 "another pair")
        owner[y] = owner[x] = f"pairs {y}/{x}"


def sweep_pairs_night(lake: Lake, pairs: Sequence[str], *, timeframe: str, start: str | None, end: str | None,
                      grid: dict | None, walk_forward: str | None, objective: str, min_trades: int, fees: float,
                      slippage: float, max_pvalue: float, screen: str) -> tuple[PairsRun, ...]:
    """Every candidate pair through ``walk_forward_pairs`` on the night's window (``lake``: the night's snapshot)."""
    if screen not in SCREENS:
        raise ValueError(f"pairs_screen must be one of {', '.join(SCREENS)}, got {screen!r}")
    grid = dict(grid or get(STRATEGY).grid)
    params = valid_params(STRATEGY, grid)
    if not params:
        raise ValueError("grids.pairs: every combination is invalid (0 <= exit_z < entry_z < stop_z)")
    candidates = {}
    for text in pairs:
        y, x = parse_pair(text)
        arrays = {s: lake.load_arrays(s, timeframe, start, end) for s in (y, x)}
        ts, aligned = baskets.align(arrays, (y, x))
        if len(ts) < 20:
            raise ValueError(f"pairs {y}/{x}: {len(ts)} common {timeframe} bars in the night's window; need >= 20")
        candidates[f"{y}/{x}"] = (*(bars_from_arrays(dict(aligned[s]), timeframe) for s in (y, x)), ts)
    done = walk_forward_pairs(candidates, params, Costs(fees, slippage), walk_forward=walk_forward,
                              objective=objective, min_trades=min_trades, max_pvalue=max_pvalue, screen=screen,
                              periods_per_year=periods_per_year(timeframe))
    spec = tuple((k, tuple(v)) for k, v in grid.items())
    return tuple(PairsRun(STRATEGY, PairsSpec((r.name,), spec, timeframe, walk_forward, screen, max_pvalue),
                          r.rows, (r.choice,), r.screens) for r in done)


def pair_entry(run: PairsRun) -> Entry:
    """The params-file candidate of one pair: regime "all", exit rules off (the pair's own exits)."""
    c: Choice = run.choices[0]
    params = c.params or asdict(get(STRATEGY).make_params())
    return Entry(strategy=STRATEGY, symbol=c.symbol, regime="all", status="active" if c.combo is not None else "flat",
                 params=params, exit_rules=ExitRulesModel.from_rules(ExitRules()),
                 in_sample=Metrics.from_mapping(c.in_sample),
                 out_of_sample=Metrics.from_mapping(c.out_of_sample) if c.out_of_sample is not None else None,
                 oos_trades=c.oos_trades, n_trials=c.n_trials, deflated_sharpe=_num(c.deflated_sharpe),
                 pbo=_num(c.pbo), stability=_num(c.stability))


def _num(v: float) -> float | None:
    return None if v is None or v != v else float(v)


__all__ = ["PairWalkForward", "PairsRun", "PairsSpec", "check_pairs", "pair_entry", "parse_pair", "sweep_pairs_night"]
