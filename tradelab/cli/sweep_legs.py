"""What the multi-leg sweeps (pairs, rotation) add to ``tradelab sweep``: their units and options before
the lake job, and after it the screen, the top-N table and the best row's deflated Sharpe over every trial.

The job itself is the single-symbol one (``pipeline.sweep.sweep_job``: chunks in the lake's sweeps
table, --resume, Dask, walk-forward, regimes); a unit is a pair "Y/X" or a basket "A,B,C/BENCH".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_lake import LakeError

from .ui import out, print_frame

EXIT_FLAGS = ("--stop-loss", "--take-profit", "--trailing-stop", "--time-stop")


def leg_spec(strategy: str, symbols: str, short: bool, exits: tuple[str, ...], by_regime: bool,
             benchmark: str | None, max_pvalue: float) -> tuple[tuple[str, ...], tuple, tuple, float | None]:
    """(units, rules, params_fixed, max_pvalue) of a pairs or rotation ``SweepSpec``; LakeError
    naming the first option it does not take."""
    given = {flag: value != "0" for flag, value in zip(EXIT_FLAGS, exits)}
    given["--benchmark"] = benchmark is not None and not by_regime  # the regime benchmark, with --by-regime
    if strategy == "pairs":
        from .sweep_pairs import parse_pairs, refuse_unsupported

        refuse_unsupported(given)
        if not 0.0 < max_pvalue <= 1.0:
            raise LakeError(f"--max-pvalue {max_pvalue}: expected a p-value in (0, 1]")
        return tuple(f"{y}/{x}" for y, x in parse_pairs(symbols)), (), (), max_pvalue
    from .sweep_rotation import parse_baskets, refuse_unsupported

    refuse_unsupported({**given, "--max-pvalue": max_pvalue != 0.05})
    units = tuple(f"{','.join(assets)}/{bench}" for assets, bench in parse_baskets(symbols))
    return units, (), (("short", short),), None


def report(spec, job, names: list[str], objective: str, top_n: int, min_trades: int) -> None:
    """The screen (pairs), the counts, the top rows, the best one's deflated Sharpe (every combination
    swept or screened out counts as a trial), the best per regime and the walk-forward record."""
    from research.sweep.chunks import periods_per_year, unit_equity
    from research.sweep.results import best, top, walk_forward
    from research.sweep.select import deflated_over_trials

    rows, params = job.rows, spec.combos()[0]
    if job.screen is not None:
        print_frame(job.screen, title=f"Engle-Granger screen (p <= {spec.max_pvalue})")
    swept = rows["symbol"].nunique() if len(rows) else 0
    what = "pairs" if spec.strategy == "pairs" else "baskets"
    sid = f" {rows['sweep_id'].iloc[0]}" if len(rows) else ""
    out.print(f"{spec.strategy} sweep{sid}: {swept} of {len(spec.symbols)} {what} swept x {len(params):,} params, "
              f"{len(rows):,} rows in the lake's sweeps table; trials counted: {job.n_trials:,}"
              + (" (screened-out pairs included)" if job.screen is not None else "; a trade is one leg's position"),
              highlight=False)
    if rows.empty:
        return
    shown = ["symbol", *dict.fromkeys([*names, objective, "total_return", "max_drawdown", "trades"])]
    best_rows = top(rows, objective, top_n, min_trades=min_trades)
    print_frame(best_rows[shown], title=f"top {top_n} by {objective} (full period, all regimes, >= {min_trades} trades)")
    if len(best_rows) and job.n_trials > 1:
        row = best_rows.iloc[0]
        eq = unit_equity(spec, job.datas[row["symbol"]], params[int(row["combo"])])
        trials = rows[(rows["split"] == "full") & (rows["regime"] == "all")]["sharpe"].to_numpy(float)
        dsr, notes = deflated_over_trials(np.diff(eq) / eq[:-1], trials, job.n_trials, periods_per_year(spec.timeframe))
        out.print(f"best {row['symbol']} combo {int(row['combo'])}: deflated Sharpe {dsr:.3f} ({job.n_trials:,} trials)"
                  + (f"; {'; '.join(notes)}" if notes else ""), highlight=False)
    if spec.by_regime:
        print_frame(best(rows, objective, min_trades)[["symbol", "regime", *names, objective, "trades"]],
                    title=f"best params per regime by {objective}")
    if spec.walk_forward:
        wf = walk_forward(rows, objective, min_trades)
        if len(wf):
            print_frame(pd.DataFrame(wf)[["symbol", "split", *names, f"train_{objective}", objective, "trades"]],
                        title=f"walk-forward: chosen on each train window by {objective}, scored on its test window")
