"""``tradelab ingest ...``: fill the lake from the sample data, the synthetic generator, files or Alpaca."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from data_lake import Adjustment, LakeError, WriteResult
from data_lake.store import Batch
from data_lake.schema import check_timeframe, parse_symbols

from .ui import DEFAULT_LAKE, LakeOpt, open_lake, out, progress, secret_env, user_errors

app = typer.Typer(help="Ingest bars into the lake.", no_args_is_help=True)

Quarantine = Annotated[bool, typer.Option("--quarantine", help="Keep bad rows aside in the lake and write the good ones.")]


def _report(result: WriteResult, what: str) -> None:
    out.print(
        f"{what}: {result.rows_in} rows in, {result.rows_written} written, {result.rows_replaced} replaced, "
        f"{len(result.partitions_written)} partitions written, {len(result.partitions_unchanged)} unchanged"
        + (f", {result.rows_quarantined} quarantined" if result.rows_quarantined else ""),
        highlight=False,
    )
    if result.report is not None and not result.report.ok:
        out.print(result.report.summary(limit=10), highlight=False)


def _adjustment(text: str) -> Adjustment:
    try:
        return Adjustment(text)
    except ValueError:
        raise LakeError(f"unknown adjustment {text!r}: use {', '.join(a.value for a in Adjustment)}") from None


@app.command("sample")
@user_errors
def sample(
    symbols: Annotated[str, typer.Option(help="Comma-separated subset of AAPL,IBM,MSFT,GOOG,FB.")] = "AAPL,IBM,MSFT,GOOG,FB",
    adjustment: Annotated[str, typer.Option(help="all (split+dividend adjusted, default) or raw.")] = "all",
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Ingest the real daily bars shipped by bokeh_sampledata (2000-2013, public domain)."""
    from data_lake.sources.sample import sample_bars, sample_meta

    store, adj = open_lake(lake), _adjustment(adjustment)
    batches = [Batch(sym, "1Day", sample_bars(sym, adj), sample_meta(adj)) for sym in parse_symbols(symbols)]
    total = store.write_many(batches)  # one commit: all symbols land together or none
    _report(total, f"sample -> {store.root}")


@app.command("synthetic")
@user_errors
def synthetic(
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols to generate.")],
    days: Annotated[int, typer.Option(min=1, max=10_000, help="Number of NYSE sessions.")] = 250,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bars).")] = 7,
    timeframe: Annotated[str, typer.Option(help="Bar timeframe.")] = "1Min",
    end: Annotated[str, typer.Option(help="Last session date (fixed default keeps runs reproducible).")] = "2025-12-31",
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Ingest seeded synthetic minute bars on real NYSE sessions (labelled synthetic)."""
    from data_lake.sources.synthetic import synthetic_bars, synthetic_meta

    store, syms = open_lake(lake), parse_symbols(symbols)
    check_timeframe(timeframe)
    end = _date(end, "--end").isoformat()
    batches = []
    with progress() as bar:
        task = bar.add_task("generate", total=len(syms))
        for sym in syms:
            batches.append(Batch(sym, timeframe, synthetic_bars(sym, days, seed, end=end, timeframe=timeframe), synthetic_meta()))
            bar.advance(task)
    total = store.write_many(batches)  # one commit: all symbols land together or none
    _report(total, f"synthetic -> {store.root}")


@app.command("csv")
@user_errors
def csv(
    path: Annotated[Path, typer.Argument(help="A .csv or .parquet file of bars.")],
    symbol: Annotated[str, typer.Option(help="The symbol these bars belong to.")],
    timeframe: Annotated[str, typer.Option(help="1Min, 5Min, 15Min, 1Hour or 1Day.")],
    tz: Annotated[str | None, typer.Option(help="Time zone of naive timestamps, e.g. America/New_York.")] = None,
    adjustment: Annotated[str, typer.Option(help="raw (default) or all (scale by Adj Close / Close).")] = "raw",
    date_format: Annotated[str | None, typer.Option(
        help="strptime format of the timestamps, e.g. '%d/%m/%Y': needed when dates read either day- or "
             "month-first.")] = None,
    quarantine: Quarantine = False,
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Ingest a CSV or Parquet file (Date/Datetime, Open, High, Low, Close, Adj Close, Volume; any case).

    Rows are numbered from 1 (row 1 is the first line after the header). One bad row refuses the
    whole file unless --quarantine is given.
    """
    from data_lake.sources.files import file_bars, file_meta

    sym, tf, adj = parse_symbols(symbol)[0], check_timeframe(timeframe), _adjustment(adjustment)
    frame = file_bars(path, tf, tz=tz, adjustment=adj, date_format=date_format)
    result = open_lake(lake).write_bars(sym, tf, frame, file_meta(path, adj), quarantine=quarantine, what=path.name)
    _report(result, f"{path.name} -> {sym} {tf}")


@app.command("alpaca")
@user_errors
def alpaca(
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols.")],
    timeframe: Annotated[str, typer.Option(help="1Min, 5Min, 15Min, 1Hour or 1Day.")],
    start: Annotated[str, typer.Option(help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last date, YYYY-MM-DD.")],
    feed: Annotated[str, typer.Option(help="iex (free) or sip.")] = "iex",
    adjustment: Annotated[str, typer.Option(help="raw, split, dividend or all.")] = "raw",
    quarantine: Quarantine = False,
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Ingest bars from Alpaca (keys: APCA_API_KEY_ID / APCA_API_SECRET_KEY; URL: TRADELAB_ALPACA_DATA_URL).

    Incremental: only the sessions the lake lacks are fetched.
    """
    key, secret = secret_env("APCA_API_KEY_ID"), secret_env("APCA_API_SECRET_KEY")
    if not key or not secret:
        raise LakeError("set APCA_API_KEY_ID and APCA_API_SECRET_KEY (in the environment or a .env file)")
    if feed not in ("iex", "sip"):
        raise LakeError(f"unknown feed {feed!r}: use iex or sip")
    syms, tf = parse_symbols(symbols), check_timeframe(timeframe)
    d0, d1 = _date(start, "--start"), _date(end, "--end")
    from data_lake.sources.alpaca import ingest_alpaca

    with progress() as bar:
        task = bar.add_task("alpaca", total=None)

        def tick(sym: str, n: int) -> None:
            bar.update(task, advance=n, description=f"alpaca {sym}")

        result = ingest_alpaca(
            open_lake(lake), syms, tf, d0, d1, feed=feed, adjustment=_adjustment(adjustment).value,
            api_key=key, secret_key=secret, url=os.environ.get("TRADELAB_ALPACA_DATA_URL") or None,
            progress=tick, quarantine=quarantine,
        )
    _report(result, f"alpaca {','.join(syms)} {tf}")


def _date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise LakeError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None
