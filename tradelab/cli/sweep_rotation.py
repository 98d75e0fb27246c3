"""``tradelab sweep --strategy rotation``: sweep rotation params over one or more baskets, print the top N.

``--symbols`` names baskets as a rotation entry of a params file names its legs: ``A,B,C/BENCH``
(the assets ranked and traded, then the benchmark, data only); several baskets are separated by
``;`` (quote it in a shell): ``--symbols "AAPL,MSFT,GOOG/IBM;AAPL,MSFT/FB"``. Each basket's legs
are aligned on the bars all of them have. Shorts are set with ``--short`` as for any strategy.

It runs in process (research.sweep.rotation), not as a resumable job in the lake's sweeps table:
no --resume, Dask, walk-forward, regimes, exit rules or heatmap yet (each is refused by name).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_lake import LakeError
from data_lake.schema import check_symbol

from .sweep_legs import finish
from .ui import out, progress

FORM = "a basket is A,B,.../BENCH, e.g. AAPL,MSFT,GOOG/IBM (baskets: separated by ';')"


def parse_baskets(text: str) -> list[tuple[tuple[str, ...], str]]:
    """``"A,B,C/BENCH;D,E/BENCH"`` as [(assets, bench), ...]; LakeError naming the first bad basket."""
    out: list[tuple[tuple[str, ...], str]] = []
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        head, sep, bench = item.partition("/")
        names = [s.strip() for s in head.split(",")]
        if not sep or "/" in bench or not bench.strip() or any(not s for s in names):
            raise LakeError(f"--symbols {item!r}: {FORM}")
        try:
            assets, bench = tuple(check_symbol(s) for s in names), check_symbol(bench)
        except LakeError as exc:
            raise LakeError(f"--symbols {item!r}: {exc}") from None
        if len(set(assets)) != len(assets) or bench in assets:
            raise LakeError(f"--symbols {item!r}: the assets must be distinct and the benchmark not among them")
        if (assets, bench) not in out:
            out.append((assets, bench))
    if not out:
        raise LakeError(f"--symbols: no baskets given ({FORM})")
    return out


def refuse_unsupported(given: dict[str, bool]) -> None:
    """One line naming the first option a rotation sweep does not take yet."""
    for flag, used in given.items():
        if used:
            why = {"--benchmark": " (the benchmark is in the basket: A,B,C/BENCH)",
                   "--max-pvalue": " (it screens pairs)"}.get(flag, "")
            if flag in ("--stop-loss", "--take-profit", "--trailing-stop", "--time-stop"):
                why = " (rotation rebalances on its schedule: --grid rebalance)"
            raise LakeError(f"{flag} is not supported for --strategy rotation yet{why}")


def run_rotation_sweep(store, symbols: str, grid_items: tuple, short: bool, timeframe: str, fees: float,
                       slippage: float, start: str | None, end: str | None, objective: str, min_trades: int,
                       top_n: int, out_file: Path | None) -> pd.DataFrame:
    """Load each basket from one lake snapshot, sweep it, print the top-N table (and write every row)."""
    from research import baskets as bk
    from research.bars import bars_from_arrays
    from research.metrics import METRICS
    from research.sweep.chunks import periods_per_year
    from research.sweep.engine import Costs, valid_params
    from research.sweep.rotation import sweep_rotation

    parsed = parse_baskets(symbols)
    params = valid_params("rotation", {**dict(grid_items), "short": (short,)})
    if not params:
        raise LakeError("--grid: every combination is invalid for rotation (lookback, rebalance, top_k >= 1)")
    snap = store.snapshot()  # every leg from one lake state
    baskets = {}
    for assets, bench in parsed:
        legs = (*assets, bench)
        arrays = {s: snap.load_arrays(s, timeframe, start, end) for s in legs}
        _, aligned = bk.align(arrays, legs)
        name = f"{','.join(assets)}/{bench}"
        if len(aligned[bench]["ts"]) < 20:
            raise LakeError(f"basket {name}: {len(aligned[bench]['ts'])} common {timeframe} bars in the window; "
                            f"need >= 20")
        bars = [bars_from_arrays(dict(aligned[s]), timeframe) for s in legs]
        baskets[name] = (bars[:-1], bars[-1])
    ppy = periods_per_year(timeframe)
    costs = Costs(fees, slippage)
    with progress() as bar:
        bar.add_task(f"sweep rotation: {len(baskets)} baskets x {len(params)} params", total=None)
        result = sweep_rotation(baskets, params, costs, periods_per_year=ppy)
    names = [n for n, _ in grid_items]
    rows = []
    for name, metrics in zip(result.names, result.metrics):
        for c, p in enumerate(result.params):
            rows.append({"symbol": name, "combo": c, **{k: getattr(p, k) for k in names}, "short": p.short,
                         "split": "full", "regime": "all", **dict(zip(METRICS, metrics[c, 0, -1].tolist()))})
    frame = pd.DataFrame(rows, columns=["symbol", "combo", *names, "short", "split", "regime", *METRICS])
    out.print(f"rotation sweep: {len(baskets)} baskets x {len(params):,} params = {len(frame):,} rows; "
              f"trials counted: {result.n_trials:,}; a trade is one leg's position", highlight=False)
    from research.sweep.rotation import rotation_path

    def equity(row: pd.Series):
        return rotation_path(*baskets[row["symbol"]], result.params[int(row["combo"])], costs).equity

    return finish(frame, names, objective, top_n, min_trades, result.n_trials, equity, ppy, out_file)

