"""Pairs sweep throughput: leg-bar-combos/s of research.sweep.pairs on synthetic minute bars, one table.

    python bench/pairs.py            # ~100k 1Min bars x the default pairs grid (675 combos), best of 5
    python bench/pairs.py --quick    # a smoke run: 30 sessions, best of 2

Data: x = ``synthetic_arrays("BENCH", days, seed)`` minute bars; y = x ** 0.8 times an AR(1) spread
(the same bars, so the pair is aligned and trades). Grid: ``research.signals.pairs.GRID`` (lookback
x entry_z x exit_z x stop_z x max_hold), fees 0.1% and slippage 0.05% of each leg's notional. One
leg-bar-combo = one leg over one bar in one combination (a pair: 2 per bar). Timed rows are warm
(a first call compiled or loaded the numba caches). The check row compares one combination with
a vectorbt cash-sharing portfolio (research.sweep.vbt.pair_portfolio).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

from legs import PPY_MIN, TARGET, caption, parse, sweep_table  # noqa: E402  (bench/legs.py: shared with rotation.py)
from legs import rate as rate_s  # noqa: E402
from sweep import timed  # noqa: E402  (bench/sweep.py, beside this script: one best-of-N timer)



def pair_bars(days: int, seed: int):
    """(y, x) aligned synthetic minute Bars: y tracks x ** 0.8 with a mean-reverting log spread."""
    from data_lake.sources.synthetic import synthetic_arrays
    from research.bars import bars_from_arrays

    a = synthetic_arrays("BENCH", days, seed)
    rng = np.random.default_rng(seed)
    n = len(a["ts"])
    s = np.zeros(n)
    shocks = rng.normal(0, 4e-4, n)
    for t in range(1, n):
        s[t] = 0.995 * s[t - 1] + shocks[t]
    spread = np.exp(s)
    y = {"ts": a["ts"], "volume": a["volume"]}
    for k in ("open", "high", "low", "close"):
        y[k] = a[k] ** 0.8 * spread
    y["high"] = np.maximum.reduce([y["open"], y["high"], y["close"]])
    y["low"] = np.minimum.reduce([y["open"], y["low"], y["close"]])
    return bars_from_arrays(y, "1Min"), bars_from_arrays(a, "1Min")


def main(argv: list[str] | None = None) -> None:
    args = parse(__doc__, argv)

    from rich.console import Console

    from research.metrics import METRICS
    from research.signals.pairs import GRID, Pairs
    from research.sweep import Costs, valid_params
    from research.sweep.pairs import pair_path, run_pairs_grid
    from research.sweep.vbt import pair_portfolio

    load0 = os.getloadavg()[0]
    y, x = pair_bars(args.days, args.seed)
    n = len(y)
    costs = Costs(0.001, 0.0005)
    table = sweep_table("pairs", n, args.days)
    params = valid_params("pairs", GRID)
    small = valid_params("pairs", {"lookback": (60,), "entry_z": (1.0, 1.2, 1.4), "max_hold": (40, 80)})
    for label, grid in (("default grid", params), ("one lookback", small)):
        t, out = timed(lambda g=grid: run_pairs_grid(y, x, g, costs, periods_per_year=PPY_MIN), args.repeat)
        speed = 2 * n * len(grid) / t
        trades = out[:, 0, -1, METRICS.index("trades")]
        verdict = (f"target >= {TARGET / 1e6:.0f} M: {'PASS' if speed >= TARGET else 'FAIL'}" if grid is params else
                   "few combos: the spread (serial, once per lookback) and idle threads weigh")
        table.add_row("ours (numba, prange over params)", f"{label}: {len(grid):,} combos", f"{t:.3f}", rate_s(speed),
                      f"{verdict}; trades per combo {np.median(trades):,.0f} (median)")
    p = Pairs()
    ours = pair_path(y, x, p, costs).equity
    theirs = pair_portfolio(y, x, p, costs, freq="1min").value().to_numpy()
    table.add_section()
    table.add_row("vectorbt from_orders", "defaults, cash sharing, targetpercent", "", "",
                  f"max |equity diff| {np.abs(ours - theirs).max():.1e} (equity ends at {ours[-1]:.6f})")
    table.caption = caption(load0, "fees 0.1%, slippage 0.05% per leg, next-open fills")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
