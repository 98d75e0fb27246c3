"""Run a sweep as a resumable job: chunks sized to memory, results streamed to the lake.

Each chunk's rows are written to the lake's ``sweeps`` table as one immutable file (key
``<sweep id>-<symbol>-<chunk>``), committed atomically, so a sweep killed at any point keeps every
finished chunk; ``resume=True`` skips them and the sweep ends with the same rows as an
uninterrupted run. Chunks run in this process (numba threads) or on a Dask cluster; only this
process writes to the lake. What a chunk computes is ``research.sweep.chunks``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd

from data_lake import Lake
from data_lake.tables import read_table, table_files, write_table
from research.sweep.chunks import SymbolData, compute_chunk, load_symbol
from research.sweep.plan import SweepSpec, chunk_size, sweep_id

TABLE = "sweeps"


def run_sweep(lake: Lake, spec: SweepSpec, *, max_memory: int = 2 * 2**30, resume: bool = False,
              client: object | None = None, progress: Callable[[int, int], None] | None = None,
              chunk: int | None = None) -> pd.DataFrame:
    """Run (or resume) a sweep and return all its rows, as stored in the lake's sweeps table.

    ``chunk`` fixes the combinations per chunk (otherwise sized from ``max_memory``).
    """
    params, rules, _ = spec.combos()
    lake = lake.snapshot()  # every symbol from one lake state: the sweep id names a state that existed
    datas = {sym: load_symbol(lake, spec, sym) for sym in spec.symbols}
    sid = sweep_id(spec, {s: d.data_hash for s, d in datas.items()},
                   {s: d.regime_hash for s, d in datas.items() if d.regime_hash})
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
