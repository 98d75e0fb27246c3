"""Which regime scheme leaves enough trades to choose from: the nightly's sweep + choice per scheme.

    python bench/regime_schemes.py [--symbols AAPL,MSFT,IBM] [--strategies sma_cross] [--min-trades 5]

Setup: the real daily sample bars (``tradelab ingest sample``: bokeh_sampledata, 2000-2013) in a
temporary lake; per scheme (trend, vol, trend_vol) the nightly as ``make demo`` runs it (the
notebook's defaults: 10y lookback, walk-forward 2y:6m, sharpe, min_trades 5, each symbol's own
regimes, 1-2% stops) through ``pipeline.nightly.nightly``, gate included. Per scheme one row:
cells (symbol x label, warm-up and "all" excluded), cells with a choice (a combination with
>= min_trades trades in the deploy window), the best combination's trades per cell in that window
(median / min: what decides eligibility), out-of-sample trades of the choices, and the entries the
gate promotes. Sweeps run in this process (numba threads); about a minute per scheme.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere


def scheme_row(lake, symbols: tuple[str, ...], strategies: tuple[str, ...], scheme: str, min_trades: int,
               params_dir: Path) -> dict:
    """One scheme's nightly on the lake, summed up as one table row."""
    from pipeline.nightly import NightlyConfig, nightly
    from research.params import RunInfo
    from research.regimes import RegimeParams, labels

    cfg = NightlyConfig(symbols=symbols, strategies=strategies, min_trades=min_trades,
                        regimes=RegimeParams(scheme=scheme))
    t0 = time.perf_counter()
    result = nightly(lake, cfg, params_dir=params_dir, run=RunInfo(job="manual", notebook="bench", run_dir="-"))
    seconds = time.perf_counter() - t0
    names = set(labels(scheme))
    best, chosen, oos, covered, sessions, everything = [], 0, [], 0, 0, []
    for run in result.runs:
        rows = run.results
        bars = {sym: _deploy_labels(lake, run.spec, sym) for sym in symbols}
        for c in run.choices:
            cell = rows[(rows["symbol"] == c.symbol) & (rows["regime"] == c.regime) & (rows["split"] == c.window)]
            if c.regime == "all":
                everything.append(int(cell["trades"].max()))
            if c.regime not in names:
                continue  # "all" and warm-up: not a regime cell
            best.append(int(cell["trades"].max()) if len(cell) else 0)
            n = int((bars[c.symbol] == c.regime).sum())
            sessions += n
            if c.combo is not None:
                chosen, covered = chosen + 1, covered + n
                oos.append(c.oos_trades)
    cells = len(symbols) * len(strategies) * len(names)
    best += [0] * (cells - len(best))  # a label a symbol never had in the window: no trades at all
    active = sum(e.status == "active" and e.regime in names for e in result.params.entries)
    return {"scheme": scheme, "cells": cells, "with a choice": chosen,
            "sessions covered": f"{covered / max(sessions, 1):.0%}",
            "best trades median": statistics.median(best), "best trades min": min(best),
            "all-regime trades median": statistics.median(everything),
            "oos trades median": statistics.median(oos) if oos else 0, "active after gate": active,
            "seconds": round(seconds, 1)}


def _deploy_labels(lake, spec, symbol: str):
    """The regime label of each bar of the deploy window (the window the choice is made on)."""
    import numpy as np

    from research.sweep.chunks import DEPLOY, load_symbol

    data = load_symbol(lake, spec, symbol)
    a, b = data.windows[data.window_names.index(DEPLOY if DEPLOY in data.window_names else "full")]
    return np.array(data.regime_names, dtype=object)[data.regimes[a:b]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", default="AAPL,MSFT,IBM")
    ap.add_argument("--strategies", default="sma_cross")
    ap.add_argument("--min-trades", type=int, default=5)
    ap.add_argument("--schemes", default="trend,vol,trend_vol")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from data_lake import Lake
    from data_lake.sources.sample import sample_bars, sample_meta
    from data_lake.store import Batch

    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    rows = []
    with tempfile.TemporaryDirectory(prefix="regime-schemes-") as tmp:
        lake = Lake(Path(tmp) / "lake")
        lake.write_many([Batch(s, "1Day", sample_bars(s), sample_meta()) for s in symbols])
        for scheme in args.schemes.split(","):
            rows.append(scheme_row(lake, symbols, strategies, scheme.strip(), args.min_trades, Path(tmp) / scheme))
            print(rows[-1], flush=True)
    table = Table(title=f"1Day, {', '.join(symbols)}, {', '.join(strategies)}, min_trades {args.min_trades}")
    for k in rows[0]:
        table.add_column(k, justify="left" if k == "scheme" else "right")
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
