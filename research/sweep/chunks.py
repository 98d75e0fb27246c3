"""One symbol's sweep inputs and one chunk of a sweep computed into result rows: the pure half of a sweep.

``load_symbol`` reads a symbol's bars and regime labels (through ``data_lake``) and builds the
walk-forward windows; ``compute_chunk`` runs the engine (``research.sweep.engine``) on a slice of
the grid and returns its rows, with no I/O, so it can run in this process or on a Dask worker.
Running a whole sweep as a resumable job that stores its chunks in the lake is ``pipeline.sweep``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from data_lake import Lake
from data_lake.schema import TIMEFRAMES

from ..bars import Bars, bars_from_arrays
from ..metrics import METRICS
from ..regimes import label_bars, load_regimes
from ..walkforward import splits as wf_splits
from .engine import Costs, run_grid
from .plan import SweepSpec, bars_hash

#: The window params are chosen on for use from now on: the last train-length window (walk-forward).
DEPLOY = "deploy"
MINUTES_PER_YEAR = 252 * 390


@dataclass(frozen=True)
class SymbolData:
    """One symbol's bars and what the engine needs besides them."""

    symbol: str
    bars: Bars
    ts: np.ndarray
    windows: np.ndarray  # int64 [n_windows, 2]
    window_names: list[str]
    regimes: np.ndarray | None  # int64 code per bar
    regime_names: list[str]  # code -> label; the last slot of the results is "all"
    data_hash: str
    regime_hash: str | None = None  # research.regimes.params_hash of the labels (by_regime)


def periods_per_year(timeframe: str) -> float:
    """Bars per year: 252 sessions of 1Day, or 252 x (390 / minutes) intraday bars."""
    minutes = TIMEFRAMES[timeframe]
    return 252.0 if minutes == 0 else MINUTES_PER_YEAR / minutes


def load_symbol(lake: Lake, spec: SweepSpec, symbol: str) -> SymbolData:
    """Bars, walk-forward windows and regime codes of one symbol, from the lake."""
    arrays = lake.load_arrays(symbol, spec.timeframe, spec.start, spec.end)
    if len(arrays["ts"]) < 2:
        raise ValueError(f"the lake holds no {symbol} {spec.timeframe} bars in the sweep's window")
    bars = bars_from_arrays(arrays, spec.timeframe)
    n = len(bars)
    windows, names = [(0, n)], ["full"]
    if spec.walk_forward:
        parts = wf_splits(arrays["ts"], spec.walk_forward, anchored=spec.anchored)
        for s in parts:
            windows += [s.train, s.test]
            names += [f"train-{s.index:02d}", f"test-{s.index:02d}"]
        if parts:  # what goes live is chosen the same way, on the most recent train-length window
            length = parts[-1].train[1] - parts[-1].train[0]
            windows.append((0 if spec.anchored else max(n - length, 0), n))
            names.append(DEPLOY)
    codes, regime_names, regime_hash = None, [], None
    if spec.by_regime:
        regimes = load_regimes(lake, spec.benchmark or symbol, spec.regime_hash)
        if regimes.empty:
            raise ValueError(f"no regimes for benchmark {spec.benchmark or symbol}: run tradelab regimes first")
        regime_hash = str(regimes["params_hash"].iloc[0])
        labels = label_bars(bars.session, regimes)
        regime_names = sorted(set(labels.tolist()))
        codes = np.searchsorted(np.array(regime_names), labels).astype(np.int64)
    return SymbolData(symbol, bars, arrays["ts"], np.asarray(windows, np.int64), names, codes, regime_names,
                      bars_hash(arrays), regime_hash)


def compute_chunk(spec: SweepSpec, data: SymbolData, params: list, rules: list, first: int = 0) -> pd.DataFrame:
    """Run the engine on one chunk of params and return its result rows (pure: no I/O).

    ``first`` is the index of the chunk's first params in the whole grid, so that ``combo``
    numbers the combinations of the whole sweep (params-major), whatever the chunking.
    """
    out = run_grid(spec.strategy, data.bars, params, rules, Costs(spec.fees, spec.slippage),
                   windows=data.windows, regimes=data.regimes, n_regimes=len(data.regime_names),
                   periods_per_year=periods_per_year(spec.timeframe))
    n_combo, n_win, n_reg, n_met = out.shape
    combo = np.repeat(np.arange(n_combo), n_win * n_reg)
    frame = pd.DataFrame(out.reshape(-1, n_met), columns=list(METRICS))
    frame.insert(0, "symbol", data.symbol)
    # combos are params-major: combo c = (params[c // len(rules)], rules[c % len(rules)])
    for rows, pick in (([asdict(p) for p in params], combo // len(rules)), ([asdict(r) for r in rules], combo % len(rules))):
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
    frame["combo"] = combo + first * len(rules)
    return frame
