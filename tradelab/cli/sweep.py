"""``tradelab sweep``: a parameter sweep from the lake, with progress, a top-N table and a heatmap."""

from __future__ import annotations

import itertools
import math
import re
import typing
from pathlib import Path
from typing import Annotated

import typer

from data_lake import LakeError
from data_lake.schema import check_timeframe, parse_symbols

from .ui import DEFAULT_LAKE, LakeOpt, open_lake, out, output_path, print_frame, progress, user_errors


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:  # none at all would leave no exit rules to sweep
        raise LakeError(f"{name} {text!r}: expected comma-separated numbers (fractions, e.g. 0.02)")
    return values


def _whole(text: str, name: str) -> tuple[int, ...]:
    values = _floats(text, name)
    if not all(math.isfinite(v) and v.is_integer() and abs(v) < 2**31 for v in values):
        raise LakeError(f"{name} {text!r}: expected comma-separated whole numbers of bars, e.g. 0,20")
    return tuple(int(v) for v in values)


def _date(text: str | None, name: str) -> str | None:
    """The date as given (it is part of the sweep's id), once it is known to parse."""
    import pandas as pd

    try:
        if text is not None and pd.isna(pd.Timestamp(text)):
            raise ValueError
    except (ValueError, OverflowError):
        raise LakeError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None
    return text


MAX_GRID_VALUES = 100_000


def _grid(text: str) -> tuple[str, tuple]:
    """``parse_grid_arg``, after refusing a range too long to hold (fast=1:1e12:1 would exhaust memory)."""
    from research.sweep.plan import parse_grid_arg

    parts = text.partition("=")[2].split(":")
    if len(parts) == 3:
        try:
            start, stop, step = (float(v) for v in parts)
            n = (stop - start) / step
        except (ValueError, ZeroDivisionError):
            n = 0.0  # malformed: parse_grid_arg names the problem
        if n > MAX_GRID_VALUES:
            raise LakeError(f"--grid {text!r}: {n:,.0f} values; at most {MAX_GRID_VALUES:,} per param")
    return parse_grid_arg(text)


def _check_grid(strategy: str, grid_items: tuple[tuple[str, tuple], ...], heatmap: str | None) -> None:
    """Refuse, before anything runs, a grid and a --heatmap that would only fail inside or after the sweep."""
    from research.signals import get

    hints = typing.get_type_hints(get(strategy).params)  # ValueError naming the strategies if unknown
    for name, values in grid_items:
        numeric = hints.get(name) in (int, float)
        wrong = [v for v in values if numeric and (isinstance(v, bool) or not isinstance(v, (int, float)))]
        if wrong:
            raise LakeError(f"--grid {name}: expected numbers, got {wrong[0]!r}")
    names = [n for n, _ in grid_items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LakeError(f"--grid {repeated[0]} is given twice: list its values once (name=a,b,c)")
    if "short" in names and _has_short(strategy):
        raise LakeError("--grid short: shorts are set with --short (or --no-short), not swept")
    if heatmap is not None:
        axes = [a.strip() for a in heatmap.split(",")]
        known = [*names, "stop_loss", "take_profit", "trailing_stop", "time_stop"]  # swept exit rules
        if len(axes) != 2 or not set(axes) <= set(known):
            raise LakeError(f"--heatmap {heatmap!r}: expected two swept params, e.g. fast,slow "
                            f"(swept: {', '.join(known)})")


def _memory(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?)?\s*", text, re.I)
    if not m:
        raise LakeError(f"--max-memory {text!r}: expected e.g. 512M or 2G")
    unit = (m.group(2) or "M")[0].upper()
    return int(float(m.group(1)) * {"K": 2**10, "M": 2**20, "G": 2**30}[unit])


@user_errors
def sweep(
    strategy: Annotated[str, typer.Option(help="Strategy name, e.g. sma_cross.")],
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols (pairs: Y/X items, e.g. KO/PEP,XOM/CVX; rotation: A,B,C/BENCH baskets separated by ';').")],
    grid: Annotated[list[str], typer.Option("--grid", help="name=start:stop:step (inclusive) or name=a,b,c; repeat.")],
    timeframe: Annotated[str, typer.Option(help="Bar timeframe.")] = "1Day",
    fees: Annotated[float, typer.Option(help="Fees as a fraction of traded notional.")] = 0.001,
    slippage: Annotated[float, typer.Option(help="Slippage as a fraction of the fill price.")] = 0.0,
    stop_loss: Annotated[str, typer.Option(help="Stop-loss fractions to sweep, e.g. 0,0.02.")] = "0",
    take_profit: Annotated[str, typer.Option(help="Take-profit fractions to sweep.")] = "0",
    trailing_stop: Annotated[str, typer.Option(help="Trailing-stop fractions to sweep.")] = "0",
    time_stop: Annotated[str, typer.Option(help="Time stops in bars to sweep (0 = off).")] = "0",
    short: Annotated[bool, typer.Option(help="Allow shorts (the reference convention is long-only).")] = False,
    by_regime: Annotated[bool, typer.Option("--by-regime", help="Metrics per regime label.")] = False,
    benchmark: Annotated[str | None, typer.Option(help="Regime benchmark (default: each symbol itself; a pair's X, a basket's BENCH).")] = None,
    walk_forward: Annotated[str | None, typer.Option(help="train:test, e.g. 2y:6m.")] = None,
    anchored: Annotated[bool, typer.Option(help="Anchored (expanding) walk-forward training windows.")] = False,
    objective: Annotated[str, typer.Option(help="sharpe, sortino, calmar, total_return or expectancy.")] = "sharpe",
    min_trades: Annotated[int, typer.Option(help="Minimum trades for a row to be eligible as best.")] = 5,
    top_n: Annotated[int, typer.Option("--top", help="Rows in the top table.")] = 10,
    guards: Annotated[bool, typer.Option(help="Choose params per regime with deflated Sharpe, PBO and stability.")] = True,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write all rows to FILE.parquet or FILE.csv.")] = None,
    heatmap: Annotated[str | None, typer.Option(help="Two params for the heatmap, e.g. fast,slow (default: first two).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Heatmap HTML path; -<SYMBOL> is added, '/' and ',' as '_' (default runs/sweep-<id>-<SYMBOL>.html).")] = None,
    max_memory: Annotated[str, typer.Option(help="Memory budget that sizes the chunks, e.g. 2G.")] = "2G",
    chunk: Annotated[int | None, typer.Option(help="Combinations per chunk (default: sized from --max-memory).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a killed sweep (skips finished chunks).")] = False,
    workers: Annotated[int, typer.Option(min=0, help="Run on a local Dask cluster of N workers (0 = in process).")] = 0,
    scheduler: Annotated[str | None, typer.Option(help="Run on a Dask scheduler, e.g. tcp://host:8786.")] = None,
    start: Annotated[str | None, typer.Option(help="First date of the bars used.")] = None,
    end: Annotated[str | None, typer.Option(help="End date (exclusive) of the bars used.")] = None,
    max_pvalue: Annotated[float, typer.Option(help="pairs: Engle-Granger p-value a pair must pass to be swept.")] = 0.05,
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Sweep a strategy's params x exit rules over symbols; results go to the lake's sweeps table.

    Pairs (--strategy pairs --symbols KO/PEP,...: screened by Engle-Granger first) and rotation
    (--strategy rotation --symbols "A,B,C/BENCH;...") are lake jobs too, one unit per pair or basket:
    chunks, --resume, Dask, --walk-forward and --by-regime as for a symbol; they carry their own exits.
    """
    from research.sweep.plan import SweepSpec
    from research.sweep.results import check_objective

    if out_file is not None and out_file.suffix not in (".parquet", ".csv"):
        raise LakeError(f"--out {out_file}: use a .parquet or .csv file")
    multi = strategy in ("pairs", "rotation")
    try:
        check_objective(objective)
        grid_items = tuple(_grid(g) for g in grid)
        _check_grid(strategy, grid_items, heatmap)
        output_path(out_file, "--out")
        output_path(plot, "--plot")
        if chunk is not None and chunk < 1:
            raise ValueError(f"--chunk {chunk}: must be >= 1")
        exits = (stop_loss, take_profit, trailing_stop, time_stop)
        if multi:
            from .sweep_legs import leg_spec

            units, rules, fixed, pvalue = leg_spec(strategy, symbols, short, exits, by_regime, benchmark, max_pvalue)
        else:
            units, rules = tuple(parse_symbols(symbols)), _rules(exits, short)
            fixed, pvalue = (("short", short),) if _has_short(strategy) else (), None
        spec = SweepSpec(strategy=strategy, symbols=units, timeframe=check_timeframe(timeframe),
                         grid=grid_items, rules=rules, fees=fees, slippage=slippage, by_regime=by_regime,
                         benchmark=benchmark.upper() if benchmark else None, walk_forward=walk_forward,
                         anchored=anchored, start=_date(start, "--start"), end=_date(end, "--end"),
                         params_fixed=fixed, max_pvalue=pvalue)
        store = open_lake(lake)
        job = _run(store, spec, _memory(max_memory), resume, chunk, workers, scheduler)
    except ValueError as exc:
        raise LakeError(str(exc)) from None
    names = [n for n, _ in grid_items]
    if multi:
        from .sweep_legs import report

        report(spec, job, names, objective, top_n, min_trades)
        if job.rows.empty:
            return
    else:
        _report(store, spec, job.rows, names, objective, top_n, min_trades, guards)
    sid = job.rows["sweep_id"].iloc[0]
    try:
        _write_outputs(job.rows, spec, names, objective, heatmap, plot, out_file, sid, default_heatmap=not multi)
    except OSError as exc:  # e.g. a disk full or a read-only folder: the rows are safe in the lake
        raise LakeError(f"cannot write {exc.filename}: {exc.strerror}; the rows are in the lake's sweeps table "
                        f"(sweep {sid}; --resume shows them again)") from None


def _rules(exits: tuple[str, str, str, str], short: bool) -> tuple:
    """The exit rules swept: the product of the --stop-loss, --take-profit, --trailing-stop, --time-stop values."""
    from research.exits import ExitRules

    sl, tp, tr, ts = exits
    return tuple(ExitRules(stop_loss=a, take_profit=b, trailing_stop=c, time_stop=int(d), allow_short=short,
                           flat_at_close=False)
                 for a, b, c, d in itertools.product(_floats(sl, "--stop-loss"), _floats(tp, "--take-profit"),
                                                     _floats(tr, "--trailing-stop"), _whole(ts, "--time-stop")))


def _run(store, spec, max_memory: int, resume: bool, chunk: int | None, workers: int, scheduler: str | None):
    """The sweep as a lake job (``pipeline.sweep.sweep_job``) with a progress bar (count, ETA) over its
    chunks, shown from the first chunk count on: an error while loading stays one line."""
    from pipeline.sweep import sweep_job

    bar, task = progress(), []

    def update(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(f"sweep {spec.strategy}", total=total))
        bar.update(task[0], completed=done, total=total)

    client = _dask_client(workers, scheduler)
    try:
        return sweep_job(store, spec, max_memory=max_memory, resume=resume, client=client, chunk=chunk,
                         progress=update)
    finally:
        if task:
            bar.stop()
        if client is not None:
            client.close()


def _report(store, spec, results, names: list[str], objective: str, top_n: int, min_trades: int,
            guards: bool) -> None:
    """A single-symbol sweep's console ending: the top table, the best per regime or the guarded choices."""
    from research.sweep.results import best, top

    sid = results["sweep_id"].iloc[0]
    out.print(f"sweep {sid}: {results['combo'].nunique():,} combinations x {len(spec.symbols)} symbols, "
              f"{len(results):,} rows in the lake's sweeps table", highlight=False)
    shown = [*names, "regime", "split", objective, "total_return", "max_drawdown", "trades"]
    print_frame(top(results, objective, top_n, min_trades=min_trades)[["symbol", *dict.fromkeys(shown)]],
                title=f"top {top_n} by {objective} (full period, all regimes, >= {min_trades} trades)")
    if spec.by_regime and not guards:
        print_frame(best(results, objective, min_trades)[["symbol", "regime", *names, objective, "trades"]],
                    title=f"best params per regime by {objective}")
    if guards:
        _print_choices(store, spec, results, objective, min_trades, names)


def _write_outputs(results, spec, names: list[str], objective: str, heatmap: str | None, plot: Path | None,
                   out_file: Path | None, sid: str, default_heatmap: bool = True) -> None:
    """The heatmap pages (one per symbol, pair or basket) and the --out file.

    Without --heatmap or --plot the pages are written by default (``default_heatmap``) when two or
    more params are swept: single-symbol sweeps do, pairs and rotation (often many units) do not."""
    from pipeline.sweep_report import heatmap_html

    if heatmap or (len(names) >= 2 and (default_heatmap or plot)):
        x, y = heatmap.split(",", 1) if heatmap else names[:2]
        for sym in spec.symbols:  # one page per unit: symbols are not averaged together
            if not (results["symbol"] == sym).any():
                continue  # a pair the screen refused has no rows
            tag = re.sub(r"[^A-Za-z0-9.-]", "_", sym)  # "KO/PEP" -> "KO_PEP": a file name, not a folder
            path = (plot.with_name(f"{plot.stem}-{tag}{plot.suffix}") if plot
                    else Path("runs") / f"sweep-{sid}-{tag}.html")
            path.parent.mkdir(parents=True, exist_ok=True)
            heatmap_html(results[results["symbol"] == sym], x.strip(), y.strip(), objective, str(path),
                         title=f"{sym} {spec.strategy}: {objective} over {x} x {y} (full period, by regime)")
            out.print(f"heatmap -> {path}", highlight=False)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        results.to_parquet(out_file, index=False) if out_file.suffix == ".parquet" else results.to_csv(out_file, index=False)
        out.print(f"rows -> {out_file}", highlight=False)


def _print_choices(store, spec, results, objective: str, min_trades: int, names: list[str]) -> None:
    """The params chosen per (symbol, regime), their out-of-sample record and the overfitting guards."""
    from research.sweep.select import choices_frame, choose

    with progress() as bar:
        bar.add_task("guards: deflated Sharpe, PBO, stability", total=None)
        frame = choices_frame(choose(store, spec, results, objective, min_trades))
    window = "deploy window (the last train-length window)" if spec.walk_forward else "full period"
    cols = ["symbol", "regime", *names, f"is_{objective}", "is_trades"]
    if spec.walk_forward:
        cols += ["oos_sharpe", "oos_total_return", "oos_trades"]
    cols += ["n_trials", "deflated_sharpe", "pbo", "stability"]
    print_frame(frame[[c for c in cols if c in frame]],
                title=f"chosen per regime on the {window} by {objective} (>= {min_trades} trades); "
                      "blank = nothing eligible (flat)")


def _has_short(strategy: str) -> bool:
    from dataclasses import fields

    from research.signals import get

    try:
        return "short" in {f.name for f in fields(get(strategy).params)}
    except ValueError as exc:
        raise LakeError(str(exc)) from None


def _dask_client(workers: int, scheduler: str | None):
    """A Dask client for a scheduler address or a LocalCluster of N workers (None = in process)."""
    if not workers and not scheduler:
        return None
    from distributed import Client

    try:
        if scheduler:
            return Client(scheduler)
        # the client owns this LocalCluster and shuts it down on close()
        return Client(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    except OSError as exc:  # an unreachable scheduler times out with OSError
        raise LakeError(f"Dask: {str(exc).splitlines()[0]}") from None
