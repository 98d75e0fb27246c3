"""One unit's sweep inputs and one chunk of a sweep computed into result rows: the pure half of a sweep.

A unit is a symbol, or for the multi-leg strategies a pair "Y/X" or a rotation basket
"A,B,C/BENCH" (``research.baskets.legs``), its legs aligned on the bars all of them have; the
windows, regimes, chunks and rows are the same for every kind, so one job runner serves them all.
``load_symbol`` reads a unit's bars and regime labels (through ``data_lake``) and builds the
walk-forward windows; ``compute_chunk`` runs the engine (``research.sweep.engine``, ``.pairs`` or
``.rotation`` by the strategy's kind) on a slice of the grid and returns its rows, with no I/O, so
it can run in this process or on a Dask worker. Running a whole sweep as a resumable job that
stores its chunks in the lake is ``pipeline.sweep``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from data_lake import Lake
from data_lake.schema import TIMEFRAMES

from .. import baskets
from ..bars import Bars, bars_from_arrays
from ..metrics import METRICS
from ..regimes import label_bars, load_regimes
from ..walkforward import splits as wf_splits
from ..signals import StrategyKind, get
from .engine import Costs, run_grid
from .pairs import pair_path, run_pairs_grid
from .plan import SweepSpec, bars_hash
from .rotation import rotation_path, run_rotation_grid

#: The window params are chosen on for use from now on: the last train-length window (walk-forward).
DEPLOY = "deploy"
MINUTES_PER_YEAR = 252 * 390


@dataclass(frozen=True)
class SymbolData:
    """One sweep unit's bars and what the engine needs besides them: a symbol, or the legs of a pair
    ("Y/X") or rotation basket ("A,B,C/BENCH"), aligned on the bars all of them have."""

    symbol: str
    bars: Bars  # multi-leg: the first leg's (its sessions label the regimes)
    ts: np.ndarray
    windows: np.ndarray  # int64 [n_windows, 2]
    window_names: list[str]
    regimes: np.ndarray | None  # int64 code per bar
    regime_names: list[str]  # code -> label; the last slot of the results is "all"
    data_hash: str
    regime_hash: str | None = None  # research.regimes.params_hash of the labels (by_regime)
    legs: tuple[Bars, ...] = ()  # multi-leg: research.baskets.Legs.data order (pairs y, x; rotation assets, bench)
    leg_names: tuple[str, ...] = ()


#: Fewest common bars a multi-leg unit is swept on (the Engle-Granger screen needs 20).
MIN_LEG_BARS = 20


def periods_per_year(timeframe: str) -> float:
    """Bars per year: 252 sessions of 1Day, or 252 x (390 / minutes) intraday bars."""
    minutes = TIMEFRAMES[timeframe]
    return 252.0 if minutes == 0 else MINUTES_PER_YEAR / minutes


def is_multi_leg(strategy: str) -> bool:
    """Pairs and rotation: a sweep unit names its legs ("Y/X", "A,B,C/BENCH")."""
    return get(strategy).kind != StrategyKind.SINGLE


def load_symbol(lake: Lake, spec: SweepSpec, symbol: str) -> SymbolData:
    """Bars, walk-forward windows and regime codes of one sweep unit, from the lake.

    A multi-leg unit's regimes are labelled by ``spec.benchmark``, by default its reference leg
    (pairs: X; rotation: BENCH)."""
    if is_multi_leg(spec.strategy):
        lg = baskets.legs(spec.strategy, symbol)
        _, aligned = baskets.align({s: lake.load_arrays(s, spec.timeframe, spec.start, spec.end) for s in lg.data},
                                   lg.data)
        arrays, bench = aligned[lg.data[0]], spec.benchmark or lg.reference
        if len(arrays["ts"]) < MIN_LEG_BARS:
            kind = "pair" if get(spec.strategy).kind == StrategyKind.PAIR else "basket"
            raise ValueError(f"{kind} {symbol}: {len(arrays['ts'])} common {spec.timeframe} bars in the window; "
                             f"need >= {MIN_LEG_BARS}")
        legs = tuple(bars_from_arrays(dict(aligned[s]), spec.timeframe) for s in lg.data)
        digest = hashlib.sha256(" ".join(f"{s}:{bars_hash(aligned[s])}" for s in lg.data).encode()).hexdigest()[:16]
    else:
        arrays, bench = lake.load_arrays(symbol, spec.timeframe, spec.start, spec.end), spec.benchmark or symbol
        if len(arrays["ts"]) < 2:
            raise ValueError(f"the lake holds no {symbol} {spec.timeframe} bars in the sweep's window")
        legs, digest = (), bars_hash(arrays)
    bars = legs[0] if legs else bars_from_arrays(arrays, spec.timeframe)
    windows, names = walk_forward_windows(arrays["ts"], spec.walk_forward, spec.anchored)
    codes, regime_names, regime_hash = _regime_codes(lake, spec, bench, bars) if spec.by_regime else (None, [], None)
    return SymbolData(symbol, bars, arrays["ts"], windows, names, codes, regime_names,
                      digest, regime_hash, legs, tuple(lg.data) if legs else ())


def walk_forward_windows(ts: np.ndarray, walk_forward: str | None,
                         anchored: bool = False) -> tuple[np.ndarray, list[str]]:
    """[full, train-NN, test-NN, ..., deploy] bar ranges (int64 [n_windows, 2]) and their names."""
    n = len(ts)
    windows, names = [(0, n)], ["full"]
    if walk_forward:
        parts = wf_splits(ts, walk_forward, anchored=anchored)
        for s in parts:
            windows += [s.train, s.test]
            names += [f"train-{s.index:02d}", f"test-{s.index:02d}"]
        if parts:  # what goes live is chosen the same way, on the most recent train-length window
            length = parts[-1].train[1] - parts[-1].train[0]
            windows.append((0 if anchored else max(n - length, 0), n))
            names.append(DEPLOY)
    return np.asarray(windows, np.int64), names


def _regime_codes(lake: Lake, spec: SweepSpec, bench: str, bars: Bars) -> tuple[np.ndarray, list[str], str]:
    """Regime code per bar (labels of ``bench``'s stored regimes), the labels, their params hash."""
    regimes = load_regimes(lake, bench, spec.regime_hash)
    if regimes.empty:
        raise ValueError(f"no regimes for benchmark {bench}: run tradelab regimes first")
    labels = label_bars(bars.session, regimes)
    regime_names = sorted(set(labels.tolist()))
    codes = np.searchsorted(np.array(regime_names), labels).astype(np.int64)
    return codes, regime_names, str(regimes["params_hash"].iloc[0])


def compute_chunk(spec: SweepSpec, data: SymbolData, params: list, rules: list, first: int = 0) -> pd.DataFrame:
    """Run the engine on one chunk of params and return its result rows (pure: no I/O).

    ``first`` is the index of the chunk's first params in the whole grid, so that ``combo``
    numbers the combinations of the whole sweep (params-major), whatever the chunking. Rows of a
    multi-leg unit (no exit rules: combo = params index) end with ``legs`` (the traded legs,
    comma-separated, pairs Y first) and, for rotation, ``bench``.
    """
    out = unit_grid(spec, data, params, rules)
    n_combo, n_win, n_reg, n_met = out.shape
    n_rules = max(len(rules), 1)
    combo = np.repeat(np.arange(n_combo), n_win * n_reg)
    frame = pd.DataFrame(out.reshape(-1, n_met), columns=list(METRICS))
    frame.insert(0, "symbol", data.symbol)
    # combos are params-major: combo c = (params[c // len(rules)], rules[c % len(rules)])
    picks = [([asdict(p) for p in params], combo // n_rules)] + ([([asdict(r) for r in rules], combo % n_rules)]
                                                                  if rules else [])
    for rows, pick in picks:
        for name in rows[0]:
            frame.insert(len(frame.columns) - n_met, name, np.array([r[name] for r in rows])[pick])
    win = np.tile(np.repeat(np.arange(n_win), n_reg), n_combo)
    reg = np.tile(np.arange(n_reg), n_combo * n_win)
    frame.insert(len(frame.columns) - n_met, "split", np.array(data.window_names, dtype=object)[win])
    frame.insert(len(frame.columns) - n_met, "regime", np.array([*data.regime_names, "all"], dtype=object)[reg])
    starts = data.ts[data.windows[:, 0]]
    ends = data.ts[np.maximum(data.windows[:, 1] - 1, 0)]
    frame["window_start"] = pd.to_datetime(starts[win], unit="us", utc=True)
    frame["window_end"] = pd.to_datetime(ends[win], unit="us", utc=True)
    frame["combo"] = combo + first * n_rules
    if data.legs:
        lg = baskets.legs(spec.strategy, data.symbol)
        frame["legs"] = ",".join(lg.traded)
        if lg.reference not in lg.traded:
            frame["bench"] = lg.reference
    return frame


def unit_grid(spec: SweepSpec, data: SymbolData, params: list, rules: list) -> np.ndarray:
    """METRICS [n_combos, n_windows, n_regimes + 1, M] of one unit: ``run_grid``, ``run_pairs_grid``
    or ``run_rotation_grid`` by the strategy's kind."""
    kw = dict(windows=data.windows, regimes=data.regimes, n_regimes=len(data.regime_names),
              periods_per_year=periods_per_year(spec.timeframe))
    costs = Costs(spec.fees, spec.slippage)
    kind = get(spec.strategy).kind
    if kind == StrategyKind.PAIR:
        return run_pairs_grid(*data.legs, params, costs, **kw)
    if kind == StrategyKind.BASKET:
        return run_rotation_grid(data.legs[:-1], data.legs[-1], params, costs, **kw)
    return run_grid(spec.strategy, data.bars, params, rules, costs, **kw)


def unit_equity(spec: SweepSpec, data: SymbolData, p: object) -> np.ndarray:
    """The equity curve (at each close, from 1.0) of one multi-leg combination over the unit's bars."""
    costs = Costs(spec.fees, spec.slippage)
    if get(spec.strategy).kind == StrategyKind.PAIR:
        return pair_path(*data.legs, p, costs).equity
    return rotation_path(data.legs[:-1], data.legs[-1], p, costs).equity
