"""Run a sweep as a resumable job: chunks sized to memory, results streamed to the lake.

Each chunk's rows are written to the lake's ``sweeps`` table as one immutable file (key
``<sweep id>-<unit>-<chunk>``, a unit being a symbol, a pair or a rotation basket: ``unit_key``),
committed atomically, so a sweep killed at any point keeps every finished chunk; ``resume=True`` skips them and the sweep ends with the same rows as an
uninterrupted run. Chunks run in this process (numba threads) or on a Dask cluster; only this
process writes to the lake. What a chunk computes is ``research.sweep.chunks``.

Pairs and rotation run through the same job, one unit per pair or basket. A pairs spec with
``max_pvalue`` screens each pair by Engle-Granger first (in-sample, on the sweep's bars): a pair
that fails gets no chunks, but its combinations count in ``n_trials``. Multi-leg rows end with
``legs`` (traded legs, comma-separated; a pair Y first), ``bench`` (rotation's benchmark),
``n_trials`` and, for a screened pair, ``coint_pvalue``; single-symbol rows are as they were.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd

from data_lake import Lake
from data_lake.tables import read_table, table_files, write_table
from research.sweep.chunks import SymbolData, compute_chunk, is_multi_leg, load_symbol
from research.sweep.plan import SweepSpec, chunk_size, sweep_id

TABLE = "sweeps"


@dataclass(frozen=True)
class SweepJob:
    """A finished sweep: its rows as stored, its units' inputs, and what a multi-leg sweep adds."""

    rows: pd.DataFrame
    datas: dict[str, SymbolData]
    n_trials: int  # every unit's combinations, pairs the screen refused included
    screen: pd.DataFrame | None = None  # pairs: pair, pvalue, beta, half_life, swept (one row per pair)


def run_sweep(lake: Lake, spec: SweepSpec, *, max_memory: int = 2 * 2**30, resume: bool = False,
              client: object | None = None, progress: Callable[[int, int], None] | None = None,
              chunk: int | None = None) -> pd.DataFrame:
    """Run (or resume) a sweep and return all its rows, as stored in the lake's sweeps table.

    ``chunk`` fixes the combinations per chunk (otherwise sized from ``max_memory``).
    """
    return sweep_job(lake, spec, max_memory=max_memory, resume=resume, client=client, progress=progress,
                     chunk=chunk).rows


def sweep_job(lake: Lake, spec: SweepSpec, *, max_memory: int = 2 * 2**30, resume: bool = False,
              client: object | None = None, progress: Callable[[int, int], None] | None = None,
              chunk: int | None = None) -> SweepJob:
    """``run_sweep``, returning the ``SweepJob``: the same for a symbol, a pair ("Y/X", screened by
    Engle-Granger when ``spec.max_pvalue`` is set) or a rotation basket ("A,B,C/BENCH")."""
    params, rules, _ = spec.combos()
    lake = lake.snapshot()  # every symbol from one lake state: the sweep id names a state that existed
    datas = {sym: load_symbol(lake, spec, sym) for sym in spec.symbols}
    sid = sweep_id(spec, {s: d.data_hash for s, d in datas.items()},
                   {s: d.regime_hash for s, d in datas.items() if d.regime_hash})
    n_trials = len(datas) * len(params) * max(len(rules), 1)
    screen = _screen(spec, datas) if spec.max_pvalue is not None else None
    swept = {s: d for s, d in datas.items() if screen is None or s in set(screen["pair"][screen["swept"]])}
    columns = _leg_columns(spec, swept, n_trials, screen)
    done = set(table_files(lake, TABLE).get(TABLE, {}))
    jobs = list(_jobs(spec, swept, params, rules, max_memory, sid, chunk))
    finished = [key for key, *_ in jobs if key in done]
    if finished and not resume:
        raise ValueError(f"sweep {sid} has {len(finished)} of {len(jobs)} chunks in the lake already: "
                         "pass --resume to continue it")
    todo = [job for job in jobs if job[0] not in done]
    total, count = len(jobs), len(jobs) - len(todo)
    if progress:
        progress(count, total)
    for key, frame in _execute(spec, swept, todo, client):
        frame.insert(0, "sweep_id", sid)
        frame.insert(1, "strategy", spec.strategy)
        for name, value in columns.get(frame["symbol"].iloc[0], {}).items():
            frame[name] = value
        write_table(lake, TABLE, key, frame)
        count += 1
        if progress:
            progress(count, total)
    rows = load_sweep(lake, sid) if jobs else pd.DataFrame(columns=["sweep_id", "strategy", "symbol", "combo"])
    return SweepJob(rows, datas, n_trials, screen)


def _screen(spec: SweepSpec, datas: dict[str, SymbolData]) -> pd.DataFrame:
    """The Engle-Granger screen of every pair on its bars (in-sample): a pair that fails is not
    swept, its combinations still count as trials."""
    from research.sweep.pairs import screen_pair

    rows = []
    for sym, data in datas.items():
        coint, passed = screen_pair(sym, *data.legs, spec.max_pvalue)
        rows.append({"pair": sym, "pvalue": coint.pvalue, "beta": coint.beta, "half_life": coint.half_life,
                     "swept": passed})
    return pd.DataFrame(rows, columns=["pair", "pvalue", "beta", "half_life", "swept"])


def _leg_columns(spec: SweepSpec, datas: dict[str, SymbolData], n_trials: int,
                 screen: pd.DataFrame | None) -> dict[str, dict[str, object]]:
    """The columns a multi-leg unit's rows end with besides ``legs``/``bench``: the sweep's trial
    count and, for a screened pair, its Engle-Granger p-value (none for single-symbol rows)."""
    if not is_multi_leg(spec.strategy):
        return {}
    pvalues = {} if screen is None else dict(zip(screen["pair"], screen["pvalue"].astype(float)))
    return {s: {"n_trials": n_trials, **({"coint_pvalue": pvalues[s]} if s in pvalues else {})} for s in datas}


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
        cells = len(data.windows) * (len(data.regime_names) + 1) * max(len(rules), 1)
        size = chunk or chunk_size(len(data.bars) * max(len(data.legs), 1), cells, max_memory)
        for i, a in enumerate(range(0, len(params), size)):
            yield f"{sid}-{unit_key(sym)}-{i:05d}", sym, a, min(a + size, len(params))


def unit_key(symbol: str) -> str:
    """A unit's name as part of a table key: a symbol as it is; a pair or basket ("KO/PEP",
    "A,B,C/BENCH") with '_' for its separators, a hash of the name when that is long."""
    key = re.sub(r"[^A-Za-z0-9.-]", "_", symbol)
    if len(key) > 30:  # keys are at most 64 characters: <sweep id>-<unit>-<chunk>
        key = f"{key[:19]}_{hashlib.sha256(symbol.encode()).hexdigest()[:10]}"
    return key


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
