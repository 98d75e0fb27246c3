"""The research pages: runs and their reports, params history and diffs, sweep heatmaps, regimes, the lake.

Each handler reads through ``research_data`` (the numbers) and renders a ``research_*.html``
template (autoescaped: every value from a file or the lake is text, never markup). Nothing here
writes: the pages only look at ``runs/``, ``params/`` and the lake, so they can stay open while a
nightly or an ingest runs. A missing or empty folder renders as a page saying so; a bad query value
is a 400 and a well-formed name that is not there a 404, each page naming the problem.

Run files are served from the runs folder by name only (``research_data.run_file``: the run
layout's names, then the resolved path must stay inside the folder), with a sandboxing CSP on
HTML, so a report's scripts run in an origin of their own, never the dashboard's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from datetime import date, datetime

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from data_lake import Lake, LakeError

from . import research_data as data
from .page import figure_div, render

router = APIRouter()
MEDIA = {".html": "text/html; charset=utf-8", ".json": "application/json", ".csv": "text/csv; charset=utf-8"}
#: A report page runs in a sandbox: its scripts (plotly) work, but as an opaque origin that cannot
#: read the dashboard's pages or call its API.
REPORT_CSP = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data:")


def _cfg(request: Request):
    return request.app.state.cfg


def _lake(request: Request) -> Lake:
    return Lake(_cfg(request).lake)


def pages(handler: Callable) -> Callable:
    """Turn ``research_data``'s BadRequest / NotFound, and a lake that cannot be read, into an error page."""
    @functools.wraps(handler)
    def wrapped(request: Request, *args, **kwargs):
        try:
            return handler(request, *args, **kwargs)
        except data.BadRequest as exc:
            return _error(request, 400, str(exc))
        except data.NotFound as exc:
            return _error(request, 404, str(exc))
        except (LakeError, OSError) as exc:
            return _error(request, 500, f"the lake or a folder could not be read: {str(exc).splitlines()[0]}")
    return wrapped


def _error(request: Request, status: int, message: str) -> HTMLResponse:
    response = render(request, "research_error.html", status=status, message=message)
    response.status_code = status
    return response


def cell(value: object) -> str:
    """A value as table text: floats to 4 significant digits, dates and times ISO, missing as blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp | datetime):
        midnight = not (value.hour or value.minute or value.second)
        return value.date().isoformat() if midnight else value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def table(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> dict:
    """A frame as the ``table`` macro's input: column names, rows of text, which columns are numbers."""
    cols = list(columns or frame.columns)
    numeric = [c for c in cols
               if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    return {"columns": cols, "numeric": numeric,
            "rows": [[cell(v) for v in row] for row in frame[cols].itertuples(index=False, name=None)]}


# -- runs ----------------------------------------------------------------------------------------


@router.get("/runs", response_class=HTMLResponse)
@pages
def runs_page(request: Request) -> HTMLResponse:
    """The latest nightly and weekend runs, newest first, with their verdicts and reports."""
    folder = _cfg(request).runs_dir
    runs = data.list_runs(folder)
    latest = {job: next((r for r in runs if r.job == job), None) for job in ("nightly", "weekend")}
    return render(request, "research_runs.html", runs=runs, latest=latest, folder=str(folder),
                  exists=folder.is_dir())


@router.get("/runs/{rel:path}")
@pages
def run_file(request: Request, rel: str):
    """One report or result file of a run: ``/runs/<day>/<run>/<file>``, nothing else."""
    parts = rel.split("/")
    if len(parts) != 3:
        raise data.BadRequest(f"not a run file: {rel!r} (expected <YYYY-MM-DD>/<nightly|weekend>-<HHMMSS>/<file>)")
    path = data.run_file(_cfg(request).runs_dir, *parts)
    headers = {"X-Content-Type-Options": "nosniff"}
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = REPORT_CSP
    return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"), headers=headers)


# -- params --------------------------------------------------------------------------------------


@router.get("/params", response_class=HTMLResponse)
@pages
def params_page(request: Request) -> HTMLResponse:
    """current.json and the history, newest first, with a form to diff any two."""
    folder = _cfg(request).params_dir
    history = data.params_history(folder)
    return render(request, "research_params.html", history=history, folder=str(folder), exists=folder.is_dir())


@router.get("/params/diff", response_class=HTMLResponse)
@pages
def params_diff_page(request: Request, a: str | None = Query(None), b: str | None = Query(None)) -> HTMLResponse:
    """What changed from params file ``a`` to ``b`` (names as on /params)."""
    folder = _cfg(request).params_dir
    if not a or not b:
        raise data.BadRequest("a diff needs two params files: /params/diff?a=<name>&b=<name> "
                              "(names as on /params)")
    pa, pb = data.load_named(folder, a), data.load_named(folder, b)
    rows = data.params_diff(pa, pb)
    entries = rows[rows["change"] != "provenance"]
    return render(request, "research_diff.html", a=a, b=b, sha_a=pa.sha256(), sha_b=pb.sha256(),
                  provenance=table(rows[rows["change"] == "provenance"], ["fields", "detail"]),
                  entries=table(entries, ["change", "strategy", "symbol", "regime", "fields", "detail", "a", "b"]),
                  counts=entries["change"].value_counts().to_dict())


# -- sweeps --------------------------------------------------------------------------------------


@router.get("/sweeps", response_class=HTMLResponse)
@pages
def sweeps_page(request: Request, strategy: str | None = Query(None), sweep: str | None = Query(None),
                symbol: str | None = Query(None), x: str | None = Query(None), y: str | None = Query(None),
                objective: str | None = Query(None), split: str | None = Query(None)) -> HTMLResponse:
    """The objective over two params, one heatmap panel per regime, for one sweep and symbol."""
    from pipeline.sweep_report import heatmap_figure

    lake = _lake(request)
    index = data.sweeps(lake)
    if index.empty:
        return render(request, "research_sweeps.html", empty=True, lake=str(lake.root))
    strategy, sid, symbol = data.pick_sweep(index, strategy, sweep, symbol)
    rows = data.sweep_rows(lake, sid, symbol)
    params = data.swept_params(rows, strategy)
    if len(params) < 2 and x is None and y is None:  # nothing to draw, which is no fault of the request
        x, y, figure = (params or ["-"])[0], "-", None
        objective, split = objective or "sharpe", split or "full"
    else:
        x, y, objective, split = data.heatmap_choice(rows, strategy, x, y, objective, split)
        figure = figure_div(heatmap_figure(rows, x, y, objective, split=split,
                                           title=f"{symbol} {strategy} (sweep {sid}): {objective} over {x} x {y}, "
                                                 f"{split} window, best over the other dimensions"))
    this = index[(index["sweep_id"] == sid) & (index["symbol"] == symbol)].iloc[0]
    pick = data.SweepPick(strategy, sid, symbol, x, y, objective, split)
    return render(request, "research_sweeps.html", empty=False, lake=str(lake.root), pick=pick,
                  index=table(index, ["strategy", "sweep_id", "symbol", "rows", "combos", "regimes", "first",
                                      "last"]),
                  strategies=list(dict.fromkeys(index["strategy"])),
                  sweep_ids=list(dict.fromkeys(index.loc[index["strategy"] == strategy, "sweep_id"])),
                  symbols=list(index.loc[index["sweep_id"] == sid, "symbol"]),
                  params=params, objectives=data.OBJECTIVES, splits=data.sweep_splits(rows), rows=int(this["rows"]),
                  figure=figure)


# -- regimes -------------------------------------------------------------------------------------


@router.get("/regimes", response_class=HTMLResponse)
@pages
def regimes_page(request: Request, benchmark: str | None = Query(None)) -> HTMLResponse:
    """One benchmark's regime label per session, shaded under its close, and the labels' counts."""
    from pipeline.run_report import regime_timeline_figure

    lake = _lake(request)
    benchmarks = data.regime_benchmarks(lake)
    if not benchmarks:
        return render(request, "research_regimes.html", empty=True, lake=str(lake.root))
    benchmark = benchmark or benchmarks[0]
    frame, close = data.regime_timeline(lake, benchmark)
    labels = pd.Series(frame["label"].astype(str).to_numpy(), index=pd.DatetimeIndex(frame["session"]),
                       name="label")
    fig = regime_timeline_figure(labels, close, title=f"{benchmark}: regime per session (known before the open)")
    last = frame.iloc[-1] if len(frame) else None
    return render(request, "research_regimes.html", empty=False, lake=str(lake.root), benchmark=benchmark,
                  benchmarks=benchmarks, figure=figure_div(fig), counts=table(data.regime_counts(frame)),
                  sessions=len(frame), first=cell(frame["session"].min()) if len(frame) else "",
                  next_session=cell(last["session"]) if last is not None else "",
                  next_label=str(last["label"]) if last is not None else "",
                  params_hash=", ".join(sorted(set(frame.get("params_hash", pd.Series(dtype=str)).astype(str)))))


# -- the lake ------------------------------------------------------------------------------------


@router.get("/lake", response_class=HTMLResponse)
@pages
def lake_page(request: Request) -> HTMLResponse:
    """Symbols, timeframes, bar counts, first and last bar, and the sessions missing against NYSE's calendar."""
    lake = _lake(request)
    contents = data.lake_contents(lake)
    if contents.empty:
        return render(request, "research_lake.html", empty=True, lake=str(lake.root), exists=lake.root.is_dir())
    per_series, gaps = data.lake_gaps(lake)
    return render(request, "research_lake.html", empty=False, lake=str(lake.root),
                  contents=table(contents), per_series=table(per_series), gaps=table(gaps.head(500)),
                  gap_rows=len(gaps), bars=int(contents["rows"].sum()))
