"""Benchmark of the lake's hot paths on synthetic minute bars; prints one table.

    python bench/lake.py                  # ~10M rows: 26 symbols x 987 sessions
    python bench/lake.py --rows 200000    # a quick check
    python bench/lake.py --profile write.prof   # also cProfile the lake write
    python bench/lake.py --check          # exit 1 when a row misses its target

Rows: generating the bars, writing them through ``Lake.write_bars`` (validation + Parquet), loading
one symbol-year into numpy, and a DuckDB aggregate over everything. Each has peers (plain pandas /
pyarrow / DuckDB doing the same work without the lake's checks) so its overhead is visible. Reads
run on a warm page cache (the files were just written): timings are the median of ``--repeat``.
Targets: the project's (generate, ingest, load); the aggregate's "< 1 s per 10M rows" is ours.
"""

from __future__ import annotations

import argparse
import cProfile
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from anywhere

from data_lake.calendar import nyse  # noqa: E402
from data_lake.catalog import connect  # noqa: E402
from data_lake.sources.synthetic import synthetic_arrays, synthetic_meta  # noqa: E402
from data_lake.store import Batch, Lake  # noqa: E402

N_SYMBOLS = 26
BARS_PER_DAY = 389.6  # 390 minutes, 210 on the few half days
COLUMNS = ["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]
DAILY_SQL = """
    SELECT symbol, ts::DATE AS day, arg_min(open, ts) AS open, max(high) AS high, min(low) AS low,
           arg_max(close, ts) AS close, sum(volume) AS volume,
           sum(vwap * volume) / sum(volume) AS vwap, sum(trade_count) AS trades
    FROM bars WHERE timeframe = '1Min' GROUP BY ALL
"""  # sessions lie inside one UTC day, so the UTC date is the session date


@dataclass
class Row:
    what: str
    rows: int
    seconds: float
    target: str = "peer"
    ok: bool | None = None


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls (after one warm-up call when repeating) and the last result."""
    if repeat > 1:
        fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def generate(symbols: list[str], days: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    return {s: synthetic_arrays(s, days, seed) for s in symbols}


def to_frame(a: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = pd.DataFrame({k: a[k] for k in COLUMNS[1:]})
    frame.insert(0, "ts", pd.DatetimeIndex(a["ts"].view("datetime64[us]"), tz="UTC"))
    return frame


def write_lake(lake: Lake, frames: dict[str, pd.DataFrame]) -> int:
    """What `tradelab ingest` does: every symbol in one checked, atomic commit."""
    meta = synthetic_meta()
    return lake.write_many([Batch(s, "1Min", f, meta) for s, f in frames.items()]).rows_written


def write_lake_each(lake: Lake, frames: dict[str, pd.DataFrame]) -> int:
    """One commit per symbol (Lake.write_bars), as an incremental source does."""
    meta = synthetic_meta()
    return sum(lake.write_bars(s, "1Min", f, meta).rows_written for s, f in frames.items())


def write_plain(root: Path, frames: dict[str, pd.DataFrame]) -> int:
    """The peer: one to_parquet per symbol-year, same codec as the lake, no checks, no fsync."""
    n = 0
    for s, f in frames.items():
        years = f["ts"].dt.year.to_numpy()
        for y in np.unique(years):
            a, b = np.searchsorted(years, y), np.searchsorted(years, y, side="right")
            path = root / f"symbol={s}" / f"year={y}" / "data.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            f.iloc[a:b].to_parquet(path, index=False, compression="zstd", compression_level=1)
            n += b - a
    return n


def pandas_daily(lake: Lake) -> pd.DataFrame:
    """The peer of DAILY_SQL: read every current 1Min file with pandas and group by symbol and day."""
    files = lake.files(timeframe="1Min")
    df = pd.concat([pd.read_parquet(p, columns=COLUMNS).assign(symbol=s) for _, s, _, p in files])
    df["day"] = df["ts"].dt.floor("D")
    df["pv"] = df["vwap"] * df["volume"]
    g = df.groupby(["symbol", "day"], sort=False)
    out = g.agg(open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
                volume=("volume", "sum"), pv=("pv", "sum"), trades=("trade_count", "sum"))
    out["vwap"] = out.pop("pv") / out["volume"]
    return out


def bench_generate(symbols: list[str], days: int, seed: int) -> tuple[list[Row], dict[str, pd.DataFrame]]:
    sec, arrays = timed(lambda: generate(symbols, days, seed))
    n = sum(len(a["ts"]) for a in arrays.values())
    rows = [Row(f"generate: synthetic_arrays, {len(symbols)} symbols x {days} sessions (kept)", n, sec,
                ">= 5M rows/s", n / sec >= 5e6)]
    sec, _ = timed(lambda: sum(len(synthetic_arrays(s, days, seed)["ts"]) for s in symbols))
    rows.append(Row("  peer: the same, each symbol's arrays dropped at once (memory reused)", n, sec))
    return rows, {s: to_frame(a) for s, a in arrays.items()}


def bench_ingest(lake: Lake, plain: Path, frames: dict[str, pd.DataFrame], profile: str | None) -> list[Row]:
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    sec, written = timed(lambda: write_lake(lake, frames))
    if prof:
        prof.disable()
        prof.dump_stats(profile)
    rows = [Row("ingest: Lake.write_many (normalize + check + Parquet + fsync, one commit)", written, sec,
                ">= 2M rows/s", written / sec >= 2e6)]
    each = lake.root.parent / "lake-each"
    sec, n = timed(lambda: write_lake_each(Lake(each), frames))
    rows.append(Row("  ours: Lake.write_bars, one commit per symbol", n, sec))
    sec, n = timed(lambda: write_plain(plain, frames))
    rows.append(Row("  peer: DataFrame.to_parquet per symbol-year (zstd-1, no checks)", n, sec))
    return rows


def bench_load(lake: Lake, symbol: str, year: int, repeat: int) -> list[Row]:
    start, end = f"{year}-01-01", f"{year + 1}-01-01"
    sec, arr = timed(lambda: lake.load_arrays(symbol, "1Min", start, end), repeat)
    n = len(arr["ts"])
    rows = [Row(f"load: Lake.load_arrays({symbol}, 1Min, {year}) -> numpy", n, sec, "< 50 ms", sec < 0.05)]
    path = next(p for _, _, y, p in lake.files(symbol, "1Min") if y == year)
    sec, _ = timed(lambda: pd.read_parquet(path, columns=COLUMNS), repeat)
    rows.append(Row("  peer: pandas.read_parquet of the same file", n, sec))
    con = connect(lake)
    sql = (f"SELECT {', '.join(COLUMNS)} FROM bars WHERE timeframe = '1Min' AND symbol = '{symbol}' "
           f"AND year = {year} ORDER BY ts")
    sec, got = timed(lambda: con.execute(sql).fetchnumpy(), repeat)
    rows.append(Row("  peer: DuckDB (catalog.connect) ... .fetchnumpy()", len(got["ts"]), sec))
    con.close()
    return rows


def bench_aggregate(lake: Lake, n: int, repeat: int) -> list[Row]:
    con = connect(lake)
    sec, daily = timed(lambda: con.execute(DAILY_SQL).fetchnumpy(), repeat)
    con.close()
    # no target in the issue: the number to read is the ratio against the pandas peer
    rows = [Row(f"aggregate: DuckDB daily OHLCV+vwap per symbol ({len(daily['day']):,} groups)", n, sec, "report")]
    sec_pd, _ = timed(lambda: pandas_daily(lake), max(1, repeat // 2))
    rows.append(Row(f"  peer: pandas read_parquet + groupby ({sec_pd / sec:.1f}x slower)", n, sec_pd))
    return rows


def bench_commit(lake: Lake, repeat: int) -> list[Row]:
    """What every write pays to find a killed writer's stray files: a walk of the lake's files."""
    from data_lake.manifest import Manifest
    from data_lake.store import remove_orphans
    from data_lake.tables import write_table

    # a lake of a weekend's size: the bars plus 2,000 sweep chunks
    for k in range(2000):
        write_table(lake, "sweeps", f"bench-{k:04d}", pd.DataFrame({"a": [k]}))
    files = sum(1 for p in lake.root.rglob("*.parquet"))
    manifest = Manifest.load(lake.root)
    sec, _ = timed(lambda: remove_orphans(lake.root, manifest), repeat)
    rows = [Row(f"commit: the stray-file walk of every write ({files:,} files)", files, sec, "< 0.1 s", sec < 0.1)]
    sec_w, _ = timed(lambda: write_table(lake, "sweeps", "bench-x", pd.DataFrame({"a": [1]})), repeat)
    rows.append(Row("  ours: a whole 1-row table write (lock, walk, Parquet, fsync, manifest)", files, sec_w))
    return rows


def run(rows: int, seed: int, repeat: int, profile: str | None) -> tuple[list[Row], list[str]]:
    """Every measurement, in order; returns the table rows and the notes for its caption."""
    days = max(1, round(rows / (N_SYMBOLS * BARS_PER_DAY)))
    symbols = [f"S{i:02d}" for i in range(N_SYMBOLS)]
    t0 = time.perf_counter()
    nyse(), synthetic_arrays("WARM", 2, 0)  # calendar load and numba (cached) compile, not timed
    notes = [f"warm-up (calendar + numba kernels): {time.perf_counter() - t0:.2f} s"]

    out, frames = bench_generate(symbols, days, seed)
    n = sum(len(f) for f in frames.values())
    with tempfile.TemporaryDirectory(prefix="tradelab-bench-") as tmp:
        lake = Lake(Path(tmp) / "lake")
        out += bench_ingest(lake, Path(tmp) / "plain", frames, profile)
        del frames
        notes.append(f"{N_SYMBOLS} symbols, {len(lake.files(timeframe='1Min'))} partitions, {n:,} rows")
        if profile:
            notes.append(f"cProfile of the lake write: {profile}")
        year = int(nyse().slice(None, "2025-12-31").dates[-1].year)
        out += bench_load(lake, symbols[0], year, repeat)
        out += bench_aggregate(lake, n, repeat)
        out += bench_commit(lake, repeat)
    return out, notes


def render(rows: list[Row], notes: list[str]) -> None:
    table = Table(title="tradelab lake benchmark", title_justify="left")
    for name, justify in [("what", "left"), ("rows", "right"), ("seconds", "right"), ("rows/s", "right"),
                          ("target", "left"), ("result", "left")]:
        table.add_column(name, justify=justify)
    for r in rows:
        result = "-" if r.ok is None else ("[green]pass[/]" if r.ok else "[red]FAIL[/]")
        rate = f"{r.rows / r.seconds / 1e6:.2f}M"
        table.add_row(r.what, f"{r.rows:,}", f"{r.seconds:.4f}", rate, r.target, result)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    table.caption = " | ".join([*notes, f"peak RSS {peak_mb:,.0f} MiB"])
    console = Console()
    if not console.is_terminal:  # a pipe or a log: do not wrap the table at 80 columns
        console = Console(width=160)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="total minute bars (default 10M)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5, help="runs per read measurement (median)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the lake write to FILE")
    parser.add_argument("--check", action="store_true", help="exit 1 when a row misses its target")
    args = parser.parse_args(argv)
    rows, notes = run(args.rows, args.seed, args.repeat, args.profile)
    render(rows, notes)
    return 1 if args.check and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
