"""What the multi-leg sweeps (``sweep_pairs``, ``sweep_rotation``) print and write after their rows: the
top-N table, the best row's deflated Sharpe over every trial, the rows to a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .ui import out, print_frame


def finish(frame: pd.DataFrame, names: list[str], objective: str, top_n: int, min_trades: int, n_trials: int,
           equity_of: Callable[[pd.Series], np.ndarray], ppy: float, out_file: Path | None) -> pd.DataFrame:
    """Print the top rows and the best one's deflated Sharpe (``equity_of(row)``: its equity curve;
    every combination swept or screened out counts as a trial), then write the rows if asked."""
    from research.sweep.results import top
    from research.sweep.select import deflated_over_trials

    best = top(frame, objective, top_n, min_trades=min_trades)
    print_frame(best[["symbol", *dict.fromkeys([*names, objective, "total_return", "max_drawdown", "trades"])]],
                title=f"top {top_n} by {objective} (full period, >= {min_trades} trades)")
    if len(best) and n_trials > 1:
        row = best.iloc[0]
        eq = equity_of(row)
        dsr, notes = deflated_over_trials(np.diff(eq) / eq[:-1], frame["sharpe"].to_numpy(float), n_trials, ppy)
        out.print(f"best {row['symbol']} combo {int(row['combo'])}: deflated Sharpe {dsr:.3f} ({n_trials:,} trials)"
                  + (f"; {'; '.join(notes)}" if notes else ""), highlight=False)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out_file, index=False) if out_file.suffix == ".parquet" else frame.to_csv(out_file, index=False)
        out.print(f"rows -> {out_file}", highlight=False)
    return frame
