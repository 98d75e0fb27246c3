"""What bench/pairs.py and bench/rotation.py share: their options, the table and its caption."""

from __future__ import annotations

import argparse
import os

PPY_MIN = 252.0 * 390
TARGET = 50e6  # leg-bar-combos/s


def parse(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """--days, --seed, --repeat and --quick (30 sessions, best of 2)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--days", type=int, default=257)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.days, args.repeat = 30, 2
    return args


def rate(v: float) -> str:
    """A throughput, in M or k."""
    return f"{v / 1e6:,.1f} M" if v >= 1e6 else f"{v / 1e3:,.1f} k"


def sweep_table(kind: str, bars: int, days: int):
    """The rich table both benches fill: row, setup, seconds, leg-bar-combos/s, check."""
    import numba
    from rich.table import Table

    table = Table(title=f"{kind} sweeps on {bars:,} synthetic 1Min bars per leg ({days} sessions), "
                        f"{os.cpu_count()} cores, {numba.get_num_threads()} numba threads")
    for col in ("row", "setup", "seconds", "leg-bar-combos/s", "check"):
        table.add_column(col)
    return table


def caption(load0: float, extra: str) -> str:
    """The load at start and end (the cores are shared), then ``extra``."""
    return f"load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end (2 cores shared with other work); {extra}"
