"""The evening live report: the day's live fills against a shadow backtest, P&L by regime, HTML + JSON.

The shadow backtest runs the same params on the same bars and says which fills should have
happened (``expected``: decided at bar t's close, filled at bar t+1's open, or at a stop/target
level inside the bar). ``compare`` pairs them with the broker's fills the way ``parity`` does:
per (strategy, symbol), in time order, by bar and side; prices equal to ``tol`` relative. Every
fill gets a status: match, missed (the backtest filled, live did not), extra (live filled, the
backtest did not) or price (same bar and side, another price), with its slippage signed so that
positive is worse for us. The executions of one order (partial fills) count as one fill at their
volume-weighted price.

``attribute`` splits the day's P&L per strategy, symbol and regime with the state store's own
average-cost accounting (``avg_cost.apply_fill``), so it adds up to the broker's equity change:
realized + unrealized at the day's last close - the unrealized already earned at the previous
close by a position carried in. No fees (Alpaca charges no commission on equities).

The outputs are read by people (``live-report.html``, offline, plotly inlined) and by scripts
(``live-report.json``, strict JSON: null where a number is missing). Inputs and outputs hold
market data and fills only: no key or webhook ever goes in.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from data_lake.atomic import atomic_write_bytes
from pipeline.run_report import PALETTE, Section, build_report, regime_colour

from .avg_cost import apply_fill
from .ports import NY, sign

SCHEMA = "tradelab.live_report/1"
TOL = 1e-9
STATUSES = ("match", "missed", "extra", "price")
COLUMNS = ["strategy", "symbol", "bar", "side", "kind", "qty", "expected_price", "live_price", "status",
           "slippage_bps", "slippage_usd", "message"]
PNL_COLUMNS = ["strategy", "symbol", "regime", "fills", "qty", "avg_price", "close", "realized",
               "unrealized", "prior_unrealized", "pnl"]
LIVE_COLUMNS = ["strategy", "symbol", "client_order_id", "bar", "side", "qty", "price", "ts"]
Opening = Mapping[tuple[str, str], tuple]  # (strategy, symbol) -> (qty, avg_price[, regime])


def daily_bar(ts: pd.Timestamp) -> pd.Timestamp:
    """The daily bar a fill belongs to: its New York session day at 00:00 New York, in UTC."""
    return pd.Timestamp(ts.tz_convert(NY).date()).tz_localize(NY).tz_convert("UTC")


def live_fills(store_path: Path, day: date,
               bar_of: Callable[[pd.Timestamp], pd.Timestamp] = daily_bar) -> pd.DataFrame:
    """The day's fills from the state store, opened read-only (the runner may be writing it)."""
    uri = f"file:{quote(str(Path(store_path).resolve()))}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT strategy, symbol, client_order_id, side, qty, price, timestamp FROM fills "
                          "WHERE day = ? ORDER BY rowid", (day.isoformat(),)).fetchall()
    df = pd.DataFrame(rows, columns=["strategy", "symbol", "client_order_id", "side", "qty", "price", "ts"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    df["bar"] = pd.to_datetime([bar_of(t) for t in df["ts"]], utc=True)
    return df[LIVE_COLUMNS]


def compare(expected: pd.DataFrame, live: pd.DataFrame, *, tol: float = TOL) -> pd.DataFrame:
    """One row per expected or live fill: its status, prices, signed slippage and a message."""
    expected, live = _utc(expected), _utc(live)  # bars as keys: one spelling of each instant
    queues: dict[tuple, deque] = defaultdict(deque)
    for o in _orders(live).itertuples(index=False):
        queues[(o.strategy, o.symbol, o.bar, o.side)].append(o)
    rows = []
    for e in expected.sort_values(["bar"], kind="stable").itertuples(index=False):
        q = queues.get((e.strategy, e.symbol, e.bar, e.side))
        rows.append(_row(e, q.popleft() if q else None, tol))
    rows += [_row(None, o, tol) for q in queues.values() for o in q]
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out.sort_values(["strategy", "symbol", "bar", "side"], kind="stable", ignore_index=True)


def _utc(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(bar=pd.to_datetime(df["bar"], utc=True))


def _orders(live: pd.DataFrame) -> pd.DataFrame:
    """The executions of one order on one bar as one fill: summed qty at the volume-weighted price."""
    live = live.assign(notional=live["qty"] * live["price"])
    g = live.groupby(["strategy", "symbol", "client_order_id", "bar", "side"], sort=False, as_index=False)
    out = g.agg(qty=("qty", "sum"), notional=("notional", "sum"), ts=("ts", "min"))
    return out.assign(price=out["notional"] / out["qty"]).sort_values("ts", kind="stable")


def _row(e, g, tol: float) -> dict:
    s, y, bar, side = (e or g).strategy, (e or g).symbol, (e or g).bar, (e or g).side
    want, got = (float(e.price) if e else None), (float(g.price) if g else None)
    row = {"strategy": s, "symbol": y, "bar": bar, "side": side, "kind": e.kind if e else None,
           "qty": float(g.qty) if g else None, "expected_price": want, "live_price": got,
           "slippage_bps": None, "slippage_usd": None}
    where = f"{s} {y} {_ny(bar)}: backtest {f'{side} @ {want:.4f}' if e else '-'} vs live " \
            f"{f'{side} {g.qty:g} @ {got:.4f}' if g else '-'}"
    if e is None:
        return {**row, "status": "extra", "message": f"{where} (extra: order {g.client_order_id})"}
    if g is None:
        return {**row, "status": "missed", "message": f"{where} (missed: {e.kind}, {e.reason})"}
    worse = sign(side) * (got - want)  # a buy above, or a sell below, the backtest's price costs us
    row |= {"slippage_bps": 1e4 * worse / want, "slippage_usd": worse * float(g.qty)}
    if abs(got - want) > tol * max(1.0, abs(want)):
        return {**row, "status": "price", "message": f"{where} ({row['slippage_bps']:+.1f} bps, {e.kind})"}
    return {**row, "status": "match", "message": where}


def attribute(live: pd.DataFrame, closes: Mapping[str, pd.Series],
              regimes_of: pd.DataFrame | Mapping[tuple[str, str], str] | None = None, *,
              opening: Opening | None = None, day: date | None = None) -> pd.DataFrame:
    """The day's P&L per strategy, symbol and regime (average cost; see the module docstring).

    ``regimes_of`` names the regime of a fill: the expected rows (the row at the fill's strategy,
    symbol, bar and side) or a {(strategy, symbol): regime} mapping. A position belongs to the
    regime of the fill that opened it: a closing fill's realized P&L goes to the position's
    regime, not the fill's. A carried position's regime is the third element of its ``opening``
    entry, else the regime of the backtest's exit of it today, else "unknown". Marks: the last
    close of ``day`` (default: the last day in ``closes``) and the last close before it (a carried
    position without one is marked from its average price: its P&L then counts since entry).
    """
    opening, by_fill, carried = dict(opening or {}), *_regime_lookup(regimes_of)
    day = day or max(_ny_dates(c.index).max() for c in closes.values() if len(c))
    live = _utc(live).sort_values("ts", kind="stable")
    acc: dict[tuple[str, str, str], dict] = {}
    for s, y in sorted(set(opening) | set(zip(live["strategy"], live["symbol"]))):
        first = tuple(opening.get((s, y), (0.0, 0.0)))
        q, a = float(first[0]), float(first[1])
        regime = first[2] if len(first) > 2 else carried(s, y)
        prev, last = _marks(closes.get(y), day)
        if q:
            _acc(acc, s, y, regime)["prior_unrealized"] += q * ((a if math.isnan(prev) else prev) - a)
        for f in live[(live["strategy"] == s) & (live["symbol"] == y)].itertuples(index=False):
            q2, a2, realized = apply_fill(q, a, f.side, float(f.qty), float(f.price))
            if q == 0:  # opening: the position is the new fill's
                regime = by_fill(s, y, f.bar, f.side)
            row = _acc(acc, s, y, regime)
            row["realized"] += realized
            row["fills"] += 1
            if q2 * q < 0:  # flipped: the rest is a new position, opened by this fill
                regime = by_fill(s, y, f.bar, f.side)
            q, a = q2, a2
        if q:
            _acc(acc, s, y, regime).update(qty=q, avg_price=a, close=last, unrealized=q * (last - a))
    out = pd.DataFrame([{"strategy": s, "symbol": y, "regime": r, **v} for (s, y, r), v in acc.items()],
                       columns=PNL_COLUMNS[:-1])
    return out.assign(pnl=out["realized"] + out["unrealized"] - out["prior_unrealized"])


def _acc(acc: dict, s: str, y: str, regime: str) -> dict:
    return acc.setdefault((s, y, regime), {"fills": 0, "qty": 0.0, "avg_price": 0.0, "close": math.nan,
                                           "realized": 0.0, "unrealized": 0.0, "prior_unrealized": 0.0})


def _regime_lookup(regimes_of) -> tuple[Callable[..., str], Callable[[str, str], str]]:
    """(regime of a fill at (strategy, symbol, bar, side), regime of a carried (strategy, symbol))."""
    if regimes_of is None or isinstance(regimes_of, Mapping):
        names = dict(regimes_of or {})

        def named(s: str, y: str, *_: object) -> str:
            return names.get((s, y), "unknown")
        return named, named
    fills, exits = {}, {}
    for e in _utc(regimes_of).itertuples(index=False):
        fills.setdefault((e.strategy, e.symbol, e.bar, e.side), e.regime)
        if getattr(e, "kind", None) == "exit":
            exits.setdefault((e.strategy, e.symbol), e.regime)
    return ((lambda s, y, bar, side: fills.get((s, y, bar, side), "unknown")),
            (lambda s, y: exits.get((s, y), "unknown")))


def _marks(close: pd.Series | None, day: date) -> tuple[float, float]:
    """(last close before ``day``, last close up to and including it); NaN where there is none."""
    if close is None or close.empty:
        return math.nan, math.nan
    close = close.sort_index()
    days = _ny_dates(close.index)
    before, upto = close[days < day], close[days <= day]
    return tuple(float(c.iloc[-1]) if len(c) else math.nan for c in (before, upto))


def _ny_dates(index: pd.Index) -> np.ndarray:
    return np.array(pd.DatetimeIndex(index).tz_convert(NY).date)


def _ny(t: pd.Timestamp) -> str:
    """A bar's New York date, with its minute for intraday bars (daily bars are stamped 00:00)."""
    t = pd.Timestamp(t).tz_convert(NY)
    return t.strftime("%Y-%m-%d" if t == t.normalize() else "%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class DailyReport:
    """One session's verdict: every fill compared (``divergences``, with a status), P&L, summary."""

    day: date
    divergences: pd.DataFrame  # compare(): one row per fill; a "match" row is not a divergence
    pnl: pd.DataFrame  # attribute()
    ok: bool  # no fill missed, extra or at another price
    summary: tuple[str, ...]

    @property
    def counts(self) -> dict[str, int]:
        """How many fills have each status."""
        n = self.divergences["status"].value_counts()
        return {s: int(n.get(s, 0)) for s in STATUSES}


def build(day: date, expected: pd.DataFrame, live: pd.DataFrame, closes: Mapping[str, pd.Series], *,
          opening: Opening | None = None, regimes: Mapping[tuple[str, str], str] | None = None,
          tol: float = TOL) -> DailyReport:
    """Compare the day's fills, attribute its P&L (regimes from ``expected`` unless given) and sum up."""
    expected, live = (df[_ny_dates(df["bar"]) == day] if len(df) else df for df in (expected, live))
    fills = compare(expected, live, tol=tol)
    pnl = attribute(live, closes, regimes if regimes is not None else expected, opening=opening, day=day)
    return DailyReport(day, fills, pnl, bool((fills["status"] == "match").all()), _summary(day, fills, pnl))


def _summary(day: date, fills: pd.DataFrame, pnl: pd.DataFrame) -> tuple[str, ...]:
    """The verdict, the counts, the slippage and the P&L in a few lines of plain text."""
    bad, n = fills[fills["status"] != "match"], fills["status"].value_counts()
    verdict = (f"{day}: OK, all {len(fills)} live fills at the shadow backtest's bar, side and price"
               if bad.empty else f"{day}: DIVERGED ({len(bad)} of {len(fills)} fills); first: "
               + bad["message"].iloc[0])
    lines = [verdict, "fills: " + ", ".join(f"{int(n.get(s, 0))} {s}" for s in STATUSES)]
    paired = fills.dropna(subset=["slippage_usd"])
    if len(paired):
        lines.append(f"slippage: ${paired['slippage_usd'].sum():,.2f} over {len(paired)} paired fills, "
                     f"mean {paired['slippage_bps'].mean():+.1f} bps (positive = worse than the backtest)")
    per = pnl.groupby("strategy")["pnl"].agg(lambda x: x.sum(skipna=False))  # no close: n/a
    lines.append(f"P&L: ${pnl['pnl'].sum():,.2f}{' without the unmarked' if per.isna().any() else ''} "
                 f"(realized ${pnl['realized'].sum():,.2f}); "
                 + ", ".join(f"{s} " + ("n/a" if math.isnan(v) else f"${v:,.2f}") for s, v in per.items()))
    lines += [f"no close for {y} on {day}: its mark-to-market is missing"
              for y in sorted(set(pnl.loc[pnl["pnl"].isna(), "symbol"]))]
    return tuple(lines)


def write_report(report: DailyReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``live-report.html`` and ``live-report.json`` into ``out_dir``, each atomically."""
    out_dir = Path(out_dir)
    doc = {"schema": SCHEMA, "day": report.day.isoformat(), "ok": report.ok, "counts": report.counts,
           "summary": list(report.summary), "divergences": _records(report.divergences),
           "pnl": _records(report.pnl)}
    data = json.dumps(doc, indent=1, allow_nan=False).encode()  # allow_nan=False: a NaN is a bug here
    fills, bad = report.divergences, report.divergences[report.divergences["status"] != "match"]
    sections = [
        Section("Summary", "\n\n".join(report.summary),
                [pd.DataFrame([report.counts]).assign(slippage_usd=fills["slippage_usd"].sum())]),
        Section("Fills", "Shadow backtest (circles) against live (crosses), per symbol.",
                [_price_figure(fills)]),
        Section("P&L attribution", "Realized + unrealized at the day's last close - unrealized at the "
                "previous close, per strategy and symbol, stacked by regime.",
                [_pnl_figure(report.pnl), report.pnl]),
        Section("Divergences", "", [bad if len(bad) else "No divergence: every fill matched.", fills]),
    ]
    html_path = build_report(out_dir / "live-report.html", f"tradelab live report {report.day}", sections)
    json_path = out_dir / "live-report.json"
    atomic_write_bytes(data, json_path)
    return html_path, json_path


def _records(df: pd.DataFrame) -> list[dict]:
    """Rows as strict-JSON values: ISO times, plain floats, null for NaN/NaT/inf."""
    def value(v):
        if v is None or v is pd.NaT or (isinstance(v, float | np.floating) and not math.isfinite(v)):
            return None
        if isinstance(v, pd.Timestamp):
            return v.isoformat()
        return v.item() if isinstance(v, np.generic) else v
    return [{k: value(v) for k, v in r.items()} for r in df.to_dict("records")]


def _price_figure(fills: pd.DataFrame) -> go.Figure:
    symbols = sorted(fills["symbol"].unique()) or ["-"]
    fig = make_subplots(rows=len(symbols), cols=1, subplot_titles=symbols, vertical_spacing=0.08)
    for i, y in enumerate(symbols, start=1):
        f = fills[fills["symbol"] == y]
        for col, name, marker in (("expected_price", "backtest", {"symbol": "circle-open", "size": 11}),
                                  ("live_price", "live", {"symbol": "x", "size": 8})):
            fig.add_trace(go.Scatter(x=f["bar"], y=f[col], mode="markers", name=name, legendgroup=name,
                                     showlegend=i == 1, text=f["message"], hoverinfo="text+y",
                                     marker={**marker, "color": PALETTE[0 if name == "backtest" else 1]}),
                          row=i, col=1)
    fig.update_layout(title="Fill prices", height=220 + 200 * len(symbols), margin={"t": 60, "b": 40})
    return fig


def _pnl_figure(pnl: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for regime in sorted(pnl["regime"].unique()):
        p = pnl[pnl["regime"] == regime]
        fig.add_trace(go.Bar(x=p["strategy"] + " " + p["symbol"], y=p["pnl"], name=regime,
                             marker={"color": regime_colour(regime), "line": {"color": "#444", "width": 1}}))
    fig.update_layout(title="P&L by strategy, symbol and regime", barmode="relative", height=420,
                      yaxis_title="$", margin={"t": 60, "b": 40})
    return fig
