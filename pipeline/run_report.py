"""The nightly run's report: one self-contained HTML page of plotly figures, tables and notes.

The page must open from an e-mail attachment or an archived folder years later, offline, so
plotly.js is inlined exactly once (in the head) and nothing is loaded from a URL. Figures are
built by pure functions here (or elsewhere, e.g. ``pipeline.sweep_report.heatmap_figure``) and
handed to ``build_report`` inside ``Section``s; the page is rendered in memory and written
atomically, so a figure that fails to render never leaves a half-written report behind.

Only SVG traces (``go.Scatter``), never WebGL ones (``Scattergl``): the page is checked in a
headless browser without a GPU, and ~3000 sessions per curve is well within what SVG handles.
"""

from __future__ import annotations

import html
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from data_lake.atomic import atomic_write_bytes

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
IN_SAMPLE, OUT_OF_SAMPLE = "#1f77b4", "#ff7f0e"  # one curve: its two parts in two colours
# Regime shading: the trend gives the hue, the vol bucket the intensity (alpha).
TREND_RGB = {"up": (44, 160, 44), "down": (214, 39, 40), "range": (70, 110, 170)}
VOL_ALPHA = {"low": 0.12, "normal": 0.22, "high": 0.34, "extreme": 0.48}
OTHER_RGBA = {"warmup": "rgba(150,150,150,0.15)", "unknown": "rgba(90,90,90,0.15)"}
FIGURE_CONFIG = {"displaylogo": False, "responsive": True}



@dataclass(frozen=True)
class Fold:
    """Items folded away under a one-line label (an HTML ``<details>``): there, not in the way."""

    label: str
    items: Sequence[go.Figure | pd.DataFrame | str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))


Item = go.Figure | pd.DataFrame | str | Fold


@dataclass(frozen=True)
class Section:
    """A titled part of the report: an intro, then figures, tables and plain-text notes in order.

    ``items`` may be given as a list; it is stored as a tuple. Text is escaped (it is not HTML),
    and blank lines split it into paragraphs.
    """

    title: str
    intro: str = ""
    items: Sequence[Item] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))


def equity_figure(curves: pd.Series | Mapping[str, pd.Series],
                  oos_start: pd.Timestamp | Mapping[str, pd.Timestamp | None] | None = None,
                  title: str = "Equity") -> go.Figure:
    """Equity curves (top row) and their drawdowns (bottom row), in- and out-of-sample told apart.

    ``curves`` is one Series (drawn as "equity") or {label: Series}, each indexed by timestamp.
    ``oos_start`` is one timestamp for all curves, or {label: timestamp or None} per curve. A
    lone curve is drawn in two colours (in-sample, out-of-sample); several curves keep one colour
    each, their in-sample part faded and their drawdowns unfilled (overlapping fills are mud). Each
    distinct out-of-sample start is shaded to the end.
    """
    curves = {"equity": curves} if isinstance(curves, pd.Series) else dict(curves)
    starts = dict(oos_start) if isinstance(oos_start, Mapping) else {k: oos_start for k in curves}
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    single = len(curves) == 1
    for i, (name, equity) in enumerate(curves.items()):
        equity = equity.dropna().astype(float)
        colour = PALETTE[i % len(PALETTE)]
        start = _same_tz(starts.get(name), equity.index)
        inside = equity if start is None else equity[equity.index < start]
        outside = equity.iloc[:0] if start is None else equity[equity.index >= start]
        if not inside.empty:
            fig.add_trace(go.Scatter(x=inside.index, y=inside.to_numpy(), legendgroup=name,
                                     name=name if outside.empty else f"{name} in-sample",
                                     line={"color": IN_SAMPLE if single else colour},
                                     opacity=1.0 if single or outside.empty else 0.45), row=1, col=1)
        if not outside.empty:
            # The out-of-sample part starts at the last in-sample point so the line has no gap.
            outside = pd.concat([inside.iloc[-1:], outside])
            fig.add_trace(go.Scatter(x=outside.index, y=outside.to_numpy(), name=f"{name} out-of-sample",
                                     legendgroup=name, line={"color": OUT_OF_SAMPLE if single else colour}),
                          row=1, col=1)
        drawdown = equity / equity.cummax() - 1.0
        fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown.to_numpy(), name=f"{name} drawdown",
                                 legendgroup=name, showlegend=False, fill="tozeroy" if single else None,
                                 line={"color": "#d62728" if single else colour, "width": 1}), row=2, col=1)
    end = max((c.index.max() for c in curves.values() if len(c)), default=None)
    if end is not None:
        for start in sorted({_same_tz(s, pd.DatetimeIndex([end])) for s in starts.values() if s is not None}):
            if start > end:
                continue
                fig.add_vrect(x0=start, x1=end, fillcolor="rgba(255,127,14,0.08)", line_width=0)
                fig.add_vline(x=start, line={"color": "#888", "dash": "dash", "width": 1})
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_layout(title=title, height=520, hovermode="x unified", margin={"t": 60, "b": 40})
    return fig


def _same_tz(start: pd.Timestamp | None, index: pd.Index) -> pd.Timestamp | None:
    """``start`` comparable with ``index``: a naive start is read in the index's time zone."""
    if start is None:
        return None
    start, tz = pd.Timestamp(start), getattr(index, "tz", None)
    if tz is not None and start.tz is None:
        return start.tz_localize(tz)
    return start.tz_convert(None) if tz is None and start.tz is not None else start


def regime_colour(label: str) -> str:
    """The shading colour of a regime label: hue from the trend, intensity from the vol bucket."""
    trend, _, vol = label.partition("_")
    if trend in TREND_RGB and vol in VOL_ALPHA:
        r, g, b = TREND_RGB[trend]
        return f"rgba({r},{g},{b},{VOL_ALPHA[vol]})"
    if label in OTHER_RGBA:
        return OTHER_RGBA[label]
    pick = PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]  # crc32, not hash(): stable across runs
    r, g, b = (int(pick[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},0.2)"


def regime_spans(labels: pd.Series) -> pd.DataFrame:
    """Runs of equal consecutive labels as rows (label, start, end, sessions); end = next run's start.

    The last run ends one median session step after its last session, so every run has a width.
    """
    labels = labels.sort_index()
    if labels.empty:
        return pd.DataFrame({"label": [], "start": [], "end": [], "sessions": []})
    values = labels.astype(str).to_numpy()
    index = pd.DatetimeIndex(labels.index)
    first = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    step = pd.Series(index).diff().median() if len(index) > 1 else pd.Timedelta(days=1)
    ends = np.r_[index[first[1:]].to_numpy(), (index[-1] + step).to_datetime64()]
    return pd.DataFrame({"label": values[first], "start": index[first], "end": pd.DatetimeIndex(ends),
                         "sessions": np.diff(np.r_[first, len(values)])})


def regime_timeline_figure(labels: pd.Series, close: pd.Series | None = None,
                           title: str = "Regimes") -> go.Figure:
    """The benchmark close over sessions shaded by their regime label, one legend entry per label.

    ``labels`` is indexed by session date (values like "up_normal", "warmup"). Consecutive equal
    labels are merged into spans, and all spans of one label are ONE filled trace (rectangles
    separated by gaps), so ~3000 sessions cost a few dozen traces, not thousands of shapes.
    """
    spans = regime_spans(labels)
    fig = go.Figure()
    order = {lab: i for i, lab in enumerate(f"{t}_{v}" for t in TREND_RGB for v in VOL_ALPHA)}
    for label in sorted(spans["label"].unique(), key=lambda lab: (order.get(lab, len(order)), lab)):
        rows = spans[spans["label"] == label]
        xs, ys = [], []
        for start, end in zip(rows["start"], rows["end"]):
            xs += [start, start, end, end, start, None]
            ys += [0, 1, 1, 0, 0, None]
        # The bands live on the base y axis (fixed 0..1, hidden); the close sits on an overlaying
        # axis, which plotly draws on top, so the line is never hidden by a band.
        fig.add_trace(go.Scatter(x=xs, y=ys, name=f"{label} ({int(rows['sessions'].sum())})", mode="lines",
                                 fill="toself", fillcolor=regime_colour(label), line={"width": 0},
                                 hoverinfo="name", legendgroup=label))
    fig.update_yaxes(range=[0, 1], visible=False, fixedrange=True)
    if close is not None:
        fig.add_trace(go.Scatter(x=close.index, y=close.to_numpy(dtype=float), name=close.name or "close",
                                 line={"color": "#222", "width": 1.2}, yaxis="y2"))
        fig.update_layout(yaxis2={"overlaying": "y", "side": "left", "title": close.name or "close",
                                  "tickmode": "auto", "showgrid": True})  # not "sync": the base axis is 0..1
    fig.update_layout(title=title, height=420, plot_bgcolor="white", legend={"groupclick": "toggleitem"},
                      margin={"t": 60, "b": 40})
    return fig


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } .generated { color: #666; margin-top: 0; }
section { margin-top: 2.5rem; border-top: 1px solid #ddd; } .intro { color: #444; }
table.report { border-collapse: collapse; font-size: .85rem; margin: 1rem 0; }
table.report th, table.report td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }
table.report th { background: #f4f4f4; } table.report tr:nth-child(even) td { background: #fafafa; }
.figure { margin: 1rem 0; } .table { overflow-x: auto; }
details.fold { margin: 1rem 0; } details.fold > summary { cursor: pointer; color: #444; }
"""


def _text(text: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return "".join(f"<p{cls}>{html.escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def _item(item: Item) -> str:
    if isinstance(item, go.Figure):
        body = item.to_html(full_html=False, include_plotlyjs=False, config=FIGURE_CONFIG)
        return f'<div class="figure">{body}</div>'
    if isinstance(item, pd.DataFrame):
        return f'<div class="table">{item.to_html(escape=True, classes="report", border=0, na_rep="", index=not isinstance(item.index, pd.RangeIndex))}</div>'
    if isinstance(item, str):
        return _text(item)
    if isinstance(item, Fold):
        return (f'<details class="fold"><summary>{html.escape(item.label)}</summary>'
                + "".join(_item(i) for i in item.items) + "</details>")
    raise TypeError(f"a report section holds plotly Figures, DataFrames, str or Folds, not {type(item).__name__}")


def render_report(title: str, sections: Sequence[Section], generated_at: datetime | None = None) -> str:
    """The whole page as one HTML string (plotly.js inlined once; no external resources)."""
    when = (generated_at or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="generated">Generated at {html.escape(when)}</p>']
    for section in sections:
        body.append(f"<section><h2>{html.escape(section.title)}</h2>{_text(section.intro, 'intro')}")
        body.extend(_item(item) for item in section.items)
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n"
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
            + "\n".join(body) + "\n</body>\n</html>\n")


def build_report(path: str | Path, title: str, sections: Sequence[Section],
                 generated_at: datetime | None = None) -> Path:
    """Render the report and write it atomically to ``path`` (all or nothing); return the path."""
    path = Path(path)
    page = render_report(title, sections, generated_at)  # may raise: nothing is written yet
    atomic_write_bytes(page.encode("utf-8"), path)
    return path
