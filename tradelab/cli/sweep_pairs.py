"""``tradelab sweep --strategy pairs``: screen pairs by Engle-Granger, sweep the survivors, print the top N.

It runs in process (research.sweep.pairs), not as a resumable job in the lake's sweeps table: no
--resume, Dask, walk-forward, regimes, exit rules or heatmap yet (each is refused by name).
The screen and the sweep use the same bars (--start/--end), so the screen is in-sample.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_lake import LakeError
from data_lake.schema import check_symbol

from .sweep_legs import finish
from .ui import out, print_frame, progress


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``"KO/PEP,XOM/CVX"`` as [(y, x), ...]; LakeError naming the first bad item."""
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        y, sep, x = item.partition("/")
        if not sep or "/" in x or not y.strip() or not x.strip():
            raise LakeError(f"--symbols {item.strip()!r}: a pair is Y/X, e.g. KO/PEP (pairs: KO/PEP,XOM/CVX)")
        try:
            y, x = check_symbol(y), check_symbol(x)
        except LakeError as exc:
            raise LakeError(f"--symbols {item.strip()!r}: {exc}") from None
        if y == x:
            raise LakeError(f"--symbols {item.strip()!r}: a pair needs two different symbols")
        if (y, x) not in pairs:
            pairs.append((y, x))
    if not pairs:
        raise LakeError("--symbols: no pairs given (e.g. KO/PEP,XOM/CVX)")
    return pairs


def refuse_unsupported(given: dict[str, bool]) -> None:
    """One line naming the first option a pairs sweep does not take yet."""
    for flag, used in given.items():
        if used:
            why = (" (pairs carry their own exits: --grid exit_z, stop_z, max_hold)"
                   if flag in ("--stop-loss", "--take-profit", "--trailing-stop", "--time-stop") else "")
            raise LakeError(f"{flag} is not supported for --strategy pairs yet{why}")


def run_pairs_sweep(store, symbols: str, grid_items: tuple, timeframe: str, fees: float, slippage: float,
                    start: str | None, end: str | None, objective: str, min_trades: int, top_n: int,
                    max_pvalue: float, out_file: Path | None) -> pd.DataFrame:
    """Load each pair from one lake snapshot, screen, sweep, print the screen and the top-N table."""
    from research import baskets
    from research.bars import bars_from_arrays
    from research.metrics import METRICS
    from research.sweep.chunks import periods_per_year
    from research.sweep.engine import Costs, valid_params
    from research.sweep.pairs import sweep_pairs

    pairs = parse_pairs(symbols)
    if not 0.0 < max_pvalue <= 1.0:
        raise LakeError(f"--max-pvalue {max_pvalue}: expected a p-value in (0, 1]")
    params = valid_params("pairs", dict(grid_items))
    if not params:
        raise LakeError("--grid: every combination is invalid for pairs (0 <= exit_z < entry_z < stop_z)")
    snap = store.snapshot()  # every leg from one lake state
    candidates = {}
    for y, x in pairs:
        arrays = {s: snap.load_arrays(s, timeframe, start, end) for s in (y, x)}
        _, aligned = baskets.align(arrays, (y, x))
        if len(aligned[y]["ts"]) < 20:
            raise LakeError(f"pair {y}/{x}: {len(aligned[y]['ts'])} common {timeframe} bars in the window; need >= 20")
        candidates[f"{y}/{x}"] = tuple(bars_from_arrays(dict(aligned[s]), timeframe) for s in (y, x))
    ppy = periods_per_year(timeframe)
    costs = Costs(fees, slippage)
    with progress() as bar:
        bar.add_task(f"sweep pairs: {len(pairs)} pairs x {len(params)} params", total=None)
        result = sweep_pairs(candidates, params, costs, max_pvalue=max_pvalue, periods_per_year=ppy)
    names = [n for n, _ in grid_items]
    print_frame(pd.DataFrame([{"pair": r.name, "pvalue": r.coint.pvalue, "beta": r.coint.beta,
                               "half_life": r.coint.half_life, "swept": r.passed} for r in result.results]),
                title=f"Engle-Granger screen (p <= {max_pvalue})")
    rows = []
    for r in result.swept:
        for c, p in enumerate(result.params):
            rows.append({"symbol": r.name, "combo": c, **{k: getattr(p, k) for k in names}, "split": "full",
                         "regime": "all", **dict(zip(METRICS, r.metrics[c, 0, -1].tolist()))})
    frame = pd.DataFrame(rows, columns=["symbol", "combo", *names, "split", "regime", *METRICS])
    out.print(f"pairs sweep: {len(result.swept)} of {len(pairs)} pairs swept x {len(params):,} params = "
              f"{len(frame):,} rows; trials counted: {result.n_trials:,} (screened-out pairs included)",
              highlight=False)
    from research.sweep.pairs import pair_path

    def equity(row: pd.Series):
        return pair_path(*candidates[row["symbol"]], result.params[int(row["combo"])], costs).equity

    return finish(frame, names, objective, top_n, min_trades, result.n_trials, equity, ppy, out_file)

