"""Run a sweep as a resumable job: chunks sized to memory, results streamed to the lake.

Each chunk's rows are written to the lake's ``sweeps`` table as one immutable file (key
``<sweep id>-<symbol>-<chunk>``), committed atomically, so a sweep killed at any point keeps every
finished chunk; ``resume=True`` skips them and the sweep ends with the same rows as an
uninterrupted run. Chunks run in this process (numba threads) or on a Dask cluster; only this
process writes to the lake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from data_lake import Lake
from data_lake.schema import TIMEFRAMES
from data_lake.tables import read_table, table_files, write_table

from ..bars import Bars, bars_from_arrays
from ..metrics import METRICS
from ..regimes import label_bars, load_regimes
from ..walkforward import splits as wf_splits
from .engine import Costs, run_grid
from .plan import SweepSpec, bars_hash, chunk_size, sweep_id

TABLE = "sweeps"
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
    codes, regime_names = None, []
    if spec.by_regime:
        regimes = load_regimes(lake, spec.benchmark or symbol)
        if regimes.empty:
            raise ValueError(f"no regimes for benchmark {spec.benchmark or symbol}: run tradelab regimes first")
        labels = label_bars(bars.session, regimes)
        regime_names = sorted(set(labels.tolist()))
        codes = np.searchsorted(np.array(regime_names), labels).astype(np.int64)
    return SymbolData(symbol, bars, arrays["ts"], np.asarray(windows, np.int64), names, codes, regime_names,
                      bars_hash(arrays))


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


def run_sweep(lake: Lake, spec: SweepSpec, *, max_memory: int = 2 * 2**30, resume: bool = False,
              client: object | None = None, progress: Callable[[int, int], None] | None = None,
              chunk: int | None = None) -> pd.DataFrame:
    """Run (or resume) a sweep and return all its rows, as stored in the lake's sweeps table.

    ``chunk`` fixes the combinations per chunk (otherwise sized from ``max_memory``).
    """
    params, rules, _ = spec.combos()
    lake = lake.snapshot()  # every symbol from one lake state: the sweep id names a state that existed
    datas = {sym: load_symbol(lake, spec, sym) for sym in spec.symbols}
    sid = sweep_id(spec, {s: d.data_hash for s, d in datas.items()})
    done = set(table_files(lake, TABLE).get(TABLE, {}))
    jobs = list(_jobs(spec, datas, params, rules, max_memory, sid, chunk))
    finished = [key for key, *_ in jobs if key in done]
    if finished and not resume:
        raise ValueError(f"sweep {sid} has {len(finished)} of {len(jobs)} chunks in the lake already: "
                         "pass --resume to continue it")
    todo = [job for job in jobs if job[0] not in done]
    total, count = len(jobs), len(jobs) - len(todo)
    if progress:
        progress(count, total)
    for key, frame in _execute(spec, datas, todo, client):
        frame.insert(0, "sweep_id", sid)
        frame.insert(1, "strategy", spec.strategy)
        write_table(lake, TABLE, key, frame)
        count += 1
        if progress:
            progress(count, total)
    return load_sweep(lake, sid)


def load_sweep(lake: Lake, sid: str) -> pd.DataFrame:
    """Every stored row of one sweep, in a stable order."""
    keys = sorted(k for k in table_files(lake, TABLE).get(TABLE, {}) if k.startswith(f"{sid}-"))
    if not keys:
        raise ValueError(f"no sweep {sid} in the lake")
    frames = [read_table(lake, TABLE, k) for k in keys]
    return pd.concat(frames, ignore_index=True)


def _jobs(spec: SweepSpec, datas: dict[str, SymbolData], params: list, rules: list, max_memory: int,
          sid: str, chunk: int | None) -> Iterator[tuple[str, str, int, int]]:
    for sym, data in datas.items():
        cells = len(data.windows) * (len(data.regime_names) + 1) * len(rules)
        size = chunk or chunk_size(len(data.bars), cells, max_memory)
        for i, a in enumerate(range(0, len(params), size)):
            yield f"{sid}-{sym}-{i:05d}", sym, a, min(a + size, len(params))


def _execute(spec: SweepSpec, datas: dict[str, SymbolData], todo: list, client: object | None):
    """Yield (key, rows) per chunk: in this process, or on a Dask cluster as they finish."""
    params, rules, _ = spec.combos()
    if client is None:
        for key, sym, a, b in todo:
            yield key, compute_chunk(spec, datas[sym], params[a:b], rules, a)
        return
    from distributed import as_completed

    scattered = {sym: client.scatter(d, broadcast=True) for sym, d in datas.items()}
    futures = {client.submit(compute_chunk, spec, scattered[sym], params[a:b], rules, a, key=f"sweep-{key}",
                             pure=False): key for key, sym, a, b in todo}
    for fut in as_completed(futures):
        yield futures[fut], fut.result()
