"""Rotation baskets as nightly candidates: each "A,B,C/BENCH" through the walk-forward, one entry per basket.

``research.sweep.rotation_walkforward.walk_forward_rotation`` does the computing (the sweep, the
choice on the deploy window, the stitched out-of-sample record, the deflated Sharpe over every
basket's combinations, PBO, stability); this module reads the legs from the lake (one snapshot,
the night's window, aligned on the bars every leg and the benchmark have) and shapes each basket's
night like a pair's (``pipeline.nightly_pairs``), so the nightly turns its choice into a params-file
candidate (``pipeline.nightly.candidate``) the gate judges.

What live supports shapes the entry (``live_bridge/sleeves.py``): a basket trades one entry for
regime ``"all"``, rebalancing on its own schedule, so ``exit_rules`` are off; its symbol names the
legs as ``research.baskets.legs`` parses them ("A,B,C/BENCH": A, B and C are traded, BENCH is data
only). And the account holds one position per symbol: a traded leg may not be a symbol the night's
single-symbol strategies trade, a leg of a pair or of another basket (``check_rotation``, refused up
front naming the symbol). A benchmark is never traded, so it may be any symbol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from data_lake import Lake, LakeError
from data_lake.schema import check_symbol
from research import baskets
from research.bars import bars_from_arrays
from research.exits import ExitRules
from research.signals import get
from research.sweep.chunks import periods_per_year
from research.sweep.engine import Costs, valid_params
from research.sweep.rotation_walkforward import walk_forward_rotation
from research.sweep.select import Choice

from .nightly_pairs import parse_pair

STRATEGY = "rotation"
MIN_BARS = 20  # fewer common bars than this in the night's window: refused


@dataclass(frozen=True)
class RotationSpec:
    """What a basket's sweep ran: the report reads ``symbols`` and ``grid`` as it does a ``SweepSpec``'s,
    ``pipeline.nightly.candidate`` reads ``rules`` (off: the basket rebalances on its schedule) and
    ``params_fixed`` (none)."""

    symbols: tuple[str, ...]  # the basket's name, "A,B,C/BENCH"
    grid: tuple[tuple[str, tuple], ...]
    timeframe: str
    walk_forward: str | None
    rules: tuple[ExitRules, ...] = (ExitRules(),)
    params_fixed: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class RotationRun:
    """One basket's night, shaped like ``pipeline.nightly.StrategyRun`` (strategy, spec, results, choices)."""

    strategy: str
    spec: RotationSpec
    results: pd.DataFrame
    choices: tuple[Choice, ...]

    @property
    def note(self) -> str:
        """One line for the verdict: the basket and what the night chose."""
        c = self.choices[0]
        lg = baskets.legs(STRATEGY, c.symbol)
        chose = f"combo {c.combo} chosen" if c.combo is not None else "flat"
        return (f"{c.symbol} all: rotation over {len(lg.traded)} assets against {lg.reference}; {chose}; "
                f"{c.n_trials} trials over every candidate basket")


def parse_basket(text: str) -> str:
    """``"aapl, msft,goog/ibm"`` -> "AAPL,MSFT,GOOG/IBM"; ValueError naming the form or the bad symbol."""
    lg = baskets.legs(STRATEGY, str(text).strip().upper())
    try:
        traded, bench = tuple(check_symbol(s) for s in lg.traded), check_symbol(lg.reference)
    except LakeError as exc:
        raise ValueError(f"rotation {text!r}: {exc}") from None
    return f"{','.join(traded)}/{bench}"


def check_rotation(rotation: Sequence[str], symbols: Sequence[str], strategies: Sequence[str],
                   pairs: Sequence[str] = ()) -> None:
    """Refuse, in one line naming the symbol, a traded leg of a basket that another sleeve trades too:
    a single-symbol strategy (``symbols``), a pair's leg, or another basket's traded leg."""
    owner = {s: (f"{', '.join(strategies)} (symbols)", "symbols") for s in symbols}
    owner |= {leg: (f"pairs {p}", "pairs") for p in pairs for leg in parse_pair(p)}
    for text in rotation:
        name = parse_basket(text)
        traded = baskets.legs(STRATEGY, name).traded
        clash = next((leg for leg in traded if leg in owner), None)
        if clash is not None:
            who, where = owner[clash]
            raise ValueError(f"rotation {name}: {clash} is also traded by {who}: one account holds one position per "
                             f"symbol and a basket's legs are not netted with other strategies; drop {clash} from "
                             f"{where} or choose another basket")
        owner |= {leg: (f"rotation {name}", "rotation") for leg in traded}


def sweep_rotation_night(lake: Lake, rotation: Sequence[str], *, timeframe: str, start: str | None, end: str | None,
                         grid: dict | None, walk_forward: str | None, objective: str, min_trades: int, fees: float,
                         slippage: float) -> tuple[RotationRun, ...]:
    """Every candidate basket through ``walk_forward_rotation`` on the night's window (``lake``: the night's snapshot)."""
    grid = dict(grid or get(STRATEGY).grid)
    params = valid_params(STRATEGY, grid)
    if not params:
        raise ValueError("grids.rotation: every combination is invalid (lookback, rebalance and top_k must be >= 1)")
    candidates = {}
    for text in rotation:
        name = parse_basket(text)
        lg = baskets.legs(STRATEGY, name)
        arrays = {s: _load(lake, name, s, timeframe, start, end) for s in lg.data}
        ts, aligned = baskets.align(arrays, lg.data)
        if len(ts) < MIN_BARS:
            raise ValueError(f"rotation {name}: {len(ts)} common {timeframe} bars in the night's window; "
                             f"need >= {MIN_BARS}")
        bars = {s: bars_from_arrays(dict(aligned[s]), timeframe) for s in lg.data}
        candidates[name] = ([bars[s] for s in lg.traded], bars[lg.reference], ts)
    done = walk_forward_rotation(candidates, params, Costs(fees, slippage), walk_forward=walk_forward,
                                 objective=objective, min_trades=min_trades,
                                 periods_per_year=periods_per_year(timeframe))
    spec = tuple((k, tuple(v)) for k, v in grid.items())
    return tuple(RotationRun(STRATEGY, RotationSpec((r.name,), spec, timeframe, walk_forward), r.rows, (r.choice,))
                 for r in done)


def _load(lake: Lake, name: str, symbol: str, timeframe: str, start: str | None, end: str | None) -> dict:
    arrays = lake.load_arrays(symbol, timeframe, start, end)
    if len(arrays["ts"]) == 0:
        raise ValueError(f"rotation {name}: no {timeframe} bars of {symbol} in the night's window (ingest it first)")
    return arrays


__all__ = ["RotationRun", "RotationSpec", "check_rotation", "parse_basket", "sweep_rotation_night"]
