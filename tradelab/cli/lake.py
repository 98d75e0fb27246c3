"""``tradelab lake ...``: look into the lake (info, query, check) and maintain it (resample, drop)."""

from __future__ import annotations

from typing import Annotated

import typer

from data_lake import LakeError, info as lake_info, query as lake_query
from data_lake.gaps import find_gaps
from data_lake.resample import resample_lake
from data_lake.schema import check_timeframe, parse_symbols

from .ui import DEFAULT_LAKE, LakeOpt, open_lake, out, print_frame, progress, user_errors

app = typer.Typer(help="Inspect and maintain the lake.", no_args_is_help=True)


@app.command("info")
@user_errors
def info(lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Symbols, timeframes, ranges, rows and sources held in the lake."""
    frame = lake_info(open_lake(lake))
    if frame.empty:
        out.print(f"the lake at {open_lake(lake).root} holds no bars yet (try: tradelab ingest sample)")
        return
    print_frame(frame, title=f"lake {open_lake(lake).root}")


@app.command("query")
@user_errors
def query(
    sql: Annotated[str, typer.Argument(help="SQL over the views bars and quarantine.")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Run SQL against the lake through DuckDB."""
    if fmt not in ("table", "csv", "json"):
        raise LakeError(f"unknown --format {fmt!r}: use table, csv or json")
    print_frame(lake_query(open_lake(lake), sql), fmt=fmt)


@app.command("check")
@user_errors
def check(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many gap rows.")] = 50,
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """List gaps against the NYSE calendar (missing sessions, short sessions)."""
    sym = parse_symbols(symbol)[0] if symbol else None
    tf = check_timeframe(timeframe) if timeframe else None
    gaps = find_gaps(open_lake(lake), sym, tf)
    if gaps.empty:
        out.print("no gaps: every session between each series' first and last bar is complete")
        return
    summary = gaps.groupby(["symbol", "timeframe"]).agg(sessions=("session", "size"), bars_missing=("missing", "sum")).reset_index()
    print_frame(summary, title="gaps per series")
    print_frame(gaps.head(limit), title=f"first {min(limit, len(gaps))} of {len(gaps)} short sessions")


@app.command("resample")
@user_errors
def resample(
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols.")],
    to: Annotated[str, typer.Option("--to", help="Target timeframes, comma-separated (5Min,15Min,1Hour,1Day).")] = "5Min,15Min,1Hour,1Day",
    source: Annotated[str, typer.Option("--from", help="Source timeframe.")] = "1Min",
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Resample intraday bars to coarser session-aligned bars (half days right) and store them."""
    store, syms = open_lake(lake), parse_symbols(symbols)
    targets = [check_timeframe(t.strip()) for t in to.split(",") if t.strip()]
    with progress() as bar:
        task = bar.add_task("resample", total=len(syms) * len(targets))
        for sym in syms:
            for tf in targets:
                r = resample_lake(store, sym, tf, source_tf=check_timeframe(source))
                out.print(f"{sym} {source}->{tf}: {r.rows_in} bars, {len(r.partitions_written)} partitions written", highlight=False)
                bar.advance(task)


@app.command("drop")
@user_errors
def drop(
    symbol: Annotated[str, typer.Argument(help="The symbol to delete.")],
    timeframe: Annotated[str, typer.Option(help="The timeframe to delete.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion.")] = False,
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Delete every bar of one symbol and timeframe (asks for --yes)."""
    if not yes:
        raise LakeError(f"this deletes all {symbol} {timeframe} bars; add --yes to confirm")
    n = open_lake(lake).drop(symbol, timeframe)
    out.print(f"dropped {n} partition files of {symbol.upper()} {timeframe}")
