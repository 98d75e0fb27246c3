"""``tradelab regimes``: label every session of a benchmark (trend, volatility or both), store and plot it.

The labels come from research/regimes.py (definition in its docstring); this module reads the
benchmark's daily bars, writes the ``regimes`` lake table, prints the counts and the label of the
next session, and draws the timeline (plotly, one self-contained HTML file).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import pandas as pd
import typer

from data_lake import LakeError
from data_lake.calendar import day_index, nyse
from data_lake.schema import check_symbol
from research.regimes import SCHEMES, VOLS, WARMUP, RegimeParams, labels, params_hash, regimes_from_daily
from research.regimes import save_regimes

from .ui import DEFAULT_LAKE, LakeOpt, open_lake, out, output_path, print_frame, user_errors

if TYPE_CHECKING:
    import plotly.graph_objects as go

# Trend sets the hue (green up, red down, blue range); volatility the depth, light to dark.
_SHADES = {
    "up": ("#c7e9c0", "#74c476", "#31a354", "#006d2c"),
    "down": ("#fcbba1", "#fb6a4a", "#de2d26", "#a50f15"),
    "range": ("#deebf7", "#9ecae1", "#4292c6", "#08519c"),
}
LABEL_COLORS = {f"{t}_{v}": c for t, cs in _SHADES.items() for v, c in zip(VOLS, cs)}
LABEL_COLORS[WARMUP] = "#e5e5e5"
TREND_COLORS = {"up": "#31a354", "down": "#de2d26", "range": "#9ecae1", WARMUP: "#e5e5e5"}
VOL_COLORS = {"low": "#ffffb2", "normal": "#fecc5c", "high": "#fd8d3c", "extreme": "#bd0026",
              WARMUP: "#e5e5e5"}
LABEL_COLORS.update({**TREND_COLORS, **VOL_COLORS})  # the trend and vol schemes' labels

_P = RegimeParams()  # the defaults shown by --help
Opt = typer.Option
BenchOpt = Annotated[str, Opt("--benchmark", help="Symbol whose 1Day bars define the regimes (e.g. SPY).")]
PlotOpt = Annotated[Path | None, Opt(help="Timeline HTML file (default: runs/regimes-<BENCHMARK>.html).")]
TrendWindow = Annotated[int, Opt(help="SMA length of the trend slope, in days.")]
SlopeBars = Annotated[int, Opt(help="Days over which the SMA slope is measured.")]
SlopeMin = Annotated[float, Opt(help="Per-day relative SMA slope beyond which a trend counts.")]
ErWindow = Annotated[int, Opt(help="Efficiency-ratio window, in days.")]
ErMin = Annotated[float, Opt(help="Minimum efficiency ratio of a trend.")]
VolWindow = Annotated[int, Opt(help="Realized-volatility window, in days.")]
VolHistory = Annotated[int, Opt(help="Sessions of volatility history it is ranked against.")]
LowPct = Annotated[float, Opt(help="Volatility percentile below which it is low.")]
HighPct = Annotated[float, Opt(help="Percentile from which it is high.")]
ExtremePct = Annotated[float, Opt(help="Percentile from which it is extreme.")]
SchemeOpt = Annotated[str, Opt(help=f"Labels: {', '.join(SCHEMES)} (up/down/range, low..extreme, or both). "
                                    "The nightly's and the params file's must match to read these.")]

app = typer.Typer(help="Market regimes of a benchmark.", add_completion=False, pretty_exceptions_enable=False)


@app.command("regimes")
@user_errors
def regimes(
    benchmark: BenchOpt,
    plot: PlotOpt = None,
    trend_window: TrendWindow = _P.trend_window,
    slope_bars: SlopeBars = _P.slope_bars,
    slope_min: SlopeMin = _P.slope_min,
    er_window: ErWindow = _P.er_window,
    er_min: ErMin = _P.er_min,
    vol_window: VolWindow = _P.vol_window,
    vol_history: VolHistory = _P.vol_history,
    low_pct: LowPct = _P.low_pct,
    high_pct: HighPct = _P.high_pct,
    extreme_pct: ExtremePct = _P.extreme_pct,
    scheme: SchemeOpt = _P.scheme,
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Label each session by trend and/or volatility of a benchmark, known before the session opens."""
    bench = check_symbol(benchmark)
    _check_options(dict(trend_window=trend_window, slope_bars=slope_bars, er_window=er_window,
                        vol_window=vol_window, vol_history=vol_history),
                   dict(slope_min=slope_min, er_min=er_min, low_pct=low_pct, high_pct=high_pct,
                        extreme_pct=extreme_pct))
    try:
        params = RegimeParams(
            trend_window=trend_window, slope_bars=slope_bars, slope_min=slope_min, er_window=er_window,
            er_min=er_min, vol_window=vol_window, vol_history=vol_history,
            low_pct=low_pct, high_pct=high_pct, extreme_pct=extreme_pct, scheme=scheme,
        )
    except ValueError as exc:
        raise LakeError(str(exc)) from None
    path = plot or Path("runs") / f"regimes-{bench}.html"
    output_path(plot, "--plot")
    store = open_lake(lake)
    bars = store.load_arrays(bench, "1Day")
    if not len(bars["ts"]):
        raise LakeError(f"the lake at {store.root} holds no 1Day bars of {bench} "
                        "(ingest them first, e.g. tradelab ingest sample)")
    try:
        frame = regimes_from_daily(bars["ts"], bars["open"], bars["high"], bars["low"], bars["close"], params)
    except ValueError as exc:
        raise LakeError(f"{bench}: {exc}") from None
    rel = save_regimes(store, bench, frame, params)

    print_frame(label_counts(frame, params.scheme),
                title=f"{bench} regimes ({params.scheme}), params {params_hash(params)}")
    last = frame.iloc[-1]
    last_bar = nyse().dates[day_index(bars["ts"][-1:])[0]].date()
    out.print(
        f"next session {last['session'].date()} (after the last bar, {last_bar}): {last['label']}"
        f"  [slope {last['slope']:.5f}, er {last['er']:.3f}, rv {last['rv']:.3f},"
        f" rv_pct {last['rv_pct']:.3f}]",
        markup=False, highlight=False,
    )
    out.print(f"table regimes/{bench} -> {store.root / rel}", highlight=False)
    try:
        write_plot(frame, bars, bench, path)
    except OSError as exc:
        raise LakeError(f"--plot {path}: {exc.strerror}; the labels are in the lake (table regimes/{bench})") \
            from None
    out.print(f"plot -> {path}", highlight=False)


MAX_WINDOW = 100_000  # sessions: far past any history, far below what the kernels' int64 holds


def _check_options(windows: dict[str, int], figures: dict[str, float]) -> None:
    """Refuse absurd windows (the kernels overflow) and NaN / inf thresholds (every comparison fails)."""
    for name, v in windows.items():
        if v > MAX_WINDOW:
            raise LakeError(f"--{name.replace('_', '-')} {v}: at most {MAX_WINDOW:,} sessions")
    for name, v in figures.items():
        if not math.isfinite(v):
            raise LakeError(f"--{name.replace('_', '-')} {v}: expected a finite number")


def label_counts(frame: pd.DataFrame, scheme: str = "trend_vol") -> pd.DataFrame:
    """Sessions per label (every label of the scheme, canonical order, warm-up last) with their share."""
    counts = frame["label"].value_counts()
    order = [*labels(scheme), WARMUP]
    n = [int(counts.get(lab, 0)) for lab in order]
    total = max(sum(n), 1)
    return pd.DataFrame({"label": order, "sessions": n, "share": [f"{k / total:.1%}" for k in n]})


def write_plot(frame: pd.DataFrame, bars: dict[str, np.ndarray], bench: str, path: Path) -> None:
    """Write the regime timeline of one benchmark as a self-contained HTML file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    regimes_figure(frame, bars, bench).write_html(path, include_plotlyjs=True, full_html=True)


def regimes_figure(frame: pd.DataFrame, bars: dict[str, np.ndarray], bench: str) -> "go.Figure":
    """Close price over regime-coloured bands, with a trend strip and a volatility strip below."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sessions = pd.DatetimeIndex(frame["session"])
    # each band runs from its session to the next one, so weekends and holidays leave no gaps
    width = np.r_[np.diff(sessions.asi8), 86_400 * 10**6] // 1000  # ms, the unit of a date axis
    closes = bars["close"]
    lo, hi = float(np.nanmin(closes)) * 0.95, float(np.nanmax(closes)) * 1.05
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.82, 0.18], vertical_spacing=0.03)
    for lab in LABEL_COLORS:  # every scheme's labels: only those present are drawn
        mask = (frame["label"] == lab).to_numpy()
        if mask.any():  # bars are drawn beneath the price line of the same subplot
            band = go.Bar(x=sessions[mask], y=np.full(mask.sum(), hi - lo), base=lo, width=width[mask], offset=0,
                          marker=dict(color=LABEL_COLORS[lab], line_width=0), opacity=0.45,
                          name=lab, legendgroup=lab, hoverinfo="skip")
            fig.add_trace(band, row=1, col=1)
    bar_dates = nyse().dates[day_index(bars["ts"])]
    fig.add_trace(go.Scatter(x=bar_dates, y=closes, mode="lines", line=dict(color="black", width=1.2),
                             name=f"{bench} close"), row=1, col=1)
    hover = [f"{lab}<br>slope {s:.5f} er {e:.3f}<br>rv {r:.3f} pct {p:.3f}" for lab, s, e, r, p in
             zip(frame["label"], frame["slope"], frame["er"], frame["rv"], frame["rv_pct"])]
    hover = np.array(hover, dtype=object)
    for column, colors, base in (("vol", VOL_COLORS, 0.0), ("trend", TREND_COLORS, 1.0)):
        for name, color in colors.items():
            mask = (frame[column] == name).to_numpy()
            if mask.any():
                strip = go.Bar(x=sessions[mask], y=np.ones(mask.sum()), base=base, width=width[mask], offset=0,
                               marker=dict(color=color, line_width=0), name=f"{column} {name}",
                               hovertext=hover[mask], hoverinfo="x+text", showlegend=False)
                fig.add_trace(strip, row=2, col=1)
    fig.update_yaxes(range=[lo, hi], title_text="close", row=1, col=1)
    fig.update_yaxes(range=[0, 2], tickvals=[0.5, 1.5], ticktext=["vol", "trend"], fixedrange=True,
                     row=2, col=1)
    fig.update_layout(title=f"{bench} regimes (label of each session from the bars before it)",
                      barmode="overlay", bargap=0, template="plotly_white", height=650,
                      legend=dict(title="regime"), hovermode="x")
    return fig
