"""Rotation sweep throughput: leg-bar-combos/s of research.sweep.rotation on synthetic minute bars, one table.

    python bench/rotation.py            # ~100k 1Min bars x 5, 8, 11 legs x the default grid, best of 5
    python bench/rotation.py --quick    # a smoke run: 30 sessions, best of 2

Data (synthetic): each leg is ``synthetic_arrays("LEG<i>", days, seed + i)`` minute bars, the
benchmark ``synthetic_arrays("BENCH", days, seed)``; the same calendar, so the basket is aligned.
Grid: ``research.signals.rotation.GRID`` (lookback x rebalance x top_k, 125 combos) long-only and
long/short (250 combos), fees 0.1% and slippage 0.05% of each leg's traded notional. One
leg-bar-combo = one traded leg over one bar in one combination (the benchmark is not counted).
Timed rows are warm (a first call compiled or loaded the numba caches). The peer rows run one
combination through vectorbt's cash-sharing ``from_orders`` (research.sweep.rotation.rotation_portfolio),
timed the same way, and compare its equity with ours (no costs, top_k 1 long/short: where vectorbt's
cap of a buy at the cash, research/sweep/rotation.py's named difference, cannot bind).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

from legs import PPY_MIN, TARGET, caption, parse, sweep_table  # noqa: E402  (bench/legs.py: shared with pairs.py)
from legs import rate as rate_s  # noqa: E402
from sweep import timed  # noqa: E402  (bench/sweep.py, beside this script: one best-of-N timer)

LEGS = (5, 8, 11)


def basket_bars(n_legs: int, days: int, seed: int):
    """(assets, bench): ``n_legs`` aligned synthetic minute Bars and a synthetic benchmark."""
    from data_lake.sources.synthetic import synthetic_arrays
    from research.bars import bars_from_arrays

    bench = bars_from_arrays(synthetic_arrays("BENCH", days, seed), "1Min")
    assets = [bars_from_arrays(synthetic_arrays(f"LEG{i}", days, seed + 1 + i), "1Min") for i in range(n_legs)]
    return assets, bench


def main(argv: list[str] | None = None) -> None:
    args = parse(__doc__, argv)

    from rich.console import Console

    from research.metrics import METRICS
    from research.signals.rotation import GRID, Rotation
    from research.sweep import Costs, valid_params
    from research.sweep.rotation import rotation_path, rotation_portfolio, run_rotation_grid

    load0 = os.getloadavg()[0]
    costs = Costs(0.001, 0.0005)
    params = valid_params("rotation", {**GRID, "short": (False, True)})
    table = None
    for m in LEGS:
        assets, bench = basket_bars(m, args.days, args.seed)
        n = len(bench)
        table = table or sweep_table("rotation", n, args.days)
        t, out = timed(lambda: run_rotation_grid(assets, bench, params, costs, periods_per_year=PPY_MIN),
                       args.repeat)
        rate = n * m * len(params) / t
        cpu0 = time.process_time()  # the CPU the sweep used (both threads): the cores are shared with other work
        run_rotation_grid(assets, bench, params, costs, periods_per_year=PPY_MIN)
        cpu = time.process_time() - cpu0
        trades = out[:, 0, -1, METRICS.index("trades")]
        table.add_row("ours (numba, prange over params)", f"{m} legs + bench: {len(params):,} combos", f"{t:.3f}",
                      rate_s(rate), f"target >= {TARGET / 1e6:.0f} M: {'PASS' if rate >= TARGET else 'FAIL'}; "
                                 f"trades per combo {np.median(trades):,.0f} (median); "
                                 f"{rate_s(n * m * len(params) / cpu)} per CPU-second")
        p, free = Rotation(top_k=1, short=True), Costs(0.0, 0.0)  # where vectorbt's cash cap cannot bind
        tv, pf = timed(lambda: rotation_portfolio(assets, bench, p, free, freq="1min"), max(1, args.repeat // 2))
        diff = np.abs(rotation_path(assets, bench, p, free).equity - pf.value().to_numpy()).max()
        table.add_row("  vectorbt from_orders, one combo", f"{m} legs: top_k 1 long/short, no costs, targetpercent, "
                      "cash sharing", f"{tv:.3f}", rate_s(n * m / tv), f"max |equity diff| {diff:.1e}")
        table.add_section()
    table.caption = caption(load0, "fees 0.1%, slippage 0.05% per leg, next-open fills; synthetic data")
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
