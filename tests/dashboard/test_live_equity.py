"""The live page's equity curve against a real replay's runner folder: the marks the runner kept equal the
simulator's account at those times, the page's curve is the store's marks, today's P&L is the last mark
minus the last one before the open, and the shadow line is live equity minus the evening reports'
slippage dollars (a report written here by ``daily_report`` from the store's own fills, and one a real
evening run produces), with the missed and extra fills marked; in headless Chromium, without an error."""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard.live_data import snapshot
from data_lake import Lake
from data_lake.calendar import nyse
from live_bridge import daily_report

from .conftest import START, SYMBOLS

NY = "America/New_York"
CASH = 100_000.0  # the replay's starting cash (live_bridge.replay's default)


def _marks(world) -> list[tuple[int, float, float]]:
    db = sqlite3.connect(world.state_dir / "state.db")
    return db.execute("SELECT ts_us, equity, cash FROM equity_marks ORDER BY ts_us").fetchall()


def _fills(world) -> pd.DataFrame:
    db = sqlite3.connect(world.state_dir / "state.db")
    df = pd.read_sql("SELECT strategy, symbol, client_order_id, side, qty, price, timestamp AS ts FROM fills "
                     "ORDER BY rowid", db)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    return df


def _us(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1000)


def _iso(us: int) -> str:
    return pd.Timestamp(us, unit="us", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S+00:00")


def test_the_runners_marks_are_the_simulators_account_at_those_times(replay_world):
    """The simulator's account (simulator/ledger.py): cash moved by every fill, positions marked at each
    symbol's last closed bar. Rebuilt here from the broker's fills (the store's) and the lake's bars."""
    marks, fills = _marks(replay_world), _fills(replay_world)
    cal = nyse()
    lake = Lake(replay_world.lake)
    closes = {}
    for s in SYMBOLS:
        bars = lake.read_bars(s, "1Day", pd.Timestamp(START) - pd.Timedelta(days=10), None)
        idx = cal.dates.get_indexer(pd.DatetimeIndex(bars["ts"]).tz_convert(NY).tz_localize(None).normalize())
        closes[s] = (cal.close_us[idx], bars["close"].to_numpy(float))
    opens = {int(t) for t in cal.open_us}
    at_open = [m for m in marks if m[0] in opens]
    assert len(marks) >= 15 and len(at_open) >= 3, "a mark at the bar closes and after the fills at the opens"
    assert marks[0][0] >= _us(pd.Timestamp(START, tz=NY)) and len({m[0] for m in marks}) == len(marks)
    for ts_us, equity, cash in marks:
        done = fills[fills["ts"].map(_us) <= ts_us]
        signed = np.where(done["side"] == "buy", 1.0, -1.0) * done["qty"]
        want_cash = CASH - float((signed * done["price"]).sum())
        held = {s: float(signed[done["symbol"] == s].sum()) for s in SYMBOLS}
        value = 0.0
        for s, q in held.items():
            if q:
                close_us, close = closes[s]
                value += q * close[np.searchsorted(close_us, ts_us, side="right") - 1]
        when = pd.Timestamp(ts_us, unit="us", tz="UTC").tz_convert(NY)
        assert cash == pytest.approx(want_cash, abs=0.01), f"cash at {when}"  # fill prices as reported: 6 decimals
        assert equity == pytest.approx(want_cash + value, abs=0.01), f"equity at {when}"


def test_the_snapshots_curve_is_the_stores_marks_and_today_is_the_last_mark_minus_the_open(replay_world):
    snap = snapshot(replay_world.config())
    marks, e = _marks(replay_world), snap["equity"]

    assert e["marks"]["t"] == [_iso(t) for t, _, _ in marks]
    assert e["marks"]["equity"] == [q for _, q, _ in marks] and e["marks"]["cash"] == [c for _, _, c in marks]
    opened = _us(pd.Timestamp("2012-11-08 09:30", tz=NY))  # the last bar's session (the page's "today")
    base = [m for m in marks if m[0] < opened][-1]
    assert e["today"]["day"] == snap["pnl"]["day"] == "2012-11-08"
    assert e["today"]["pnl"] == pytest.approx(marks[-1][1] - base[1], abs=1e-9) and e["today"]["pnl"] != 0
    assert (e["today"]["base_at"], e["today"]["now_at"]) == (_iso(base[0]), _iso(marks[-1][0]))
    assert e["shadow_line"] is None and e["events"] == []
    assert "no evening report" in e["shadow_note"]


def _write_report(world, day: date, expected_rows: list[dict]) -> Path:
    """An evening report of ``day`` as ``tradelab evening`` writes it (daily_report.build + write_report),
    the backtest's side given here: the store's live fills against these expected fills."""
    expected = pd.DataFrame(expected_rows, columns=["strategy", "symbol", "regime", "bar", "side", "price", "kind",
                                                    "reason"])
    expected["bar"] = pd.to_datetime(expected["bar"], utc=True)
    live = daily_report.live_fills(world.state_dir / "state.db", day)
    lake = Lake(world.lake)
    closes = {s: (lambda f: pd.Series(f["close"].to_numpy(float), index=pd.DatetimeIndex(f["ts"])))(
        lake.read_bars(s, "1Day", pd.Timestamp(day) - pd.Timedelta(days=10), pd.Timestamp(day) + pd.Timedelta(days=1)))
        for s in SYMBOLS}
    report = daily_report.build(day, expected, live, closes)
    out = world.runs_dir / day.isoformat() / "evening-210000"
    daily_report.write_report(report, out)
    return out / "live-report.json"


def _bar(day: str) -> str:
    return pd.Timestamp(day, tz=NY).tz_convert("UTC").isoformat()


def test_the_shadow_line_is_equity_minus_the_reports_slippage_dollars(copy_world):
    fills = _fills(copy_world)
    by_day = {d: f for d, f in fills.groupby(fills["ts"].dt.tz_convert(NY).dt.date.astype(str))}
    f1 = by_day["2012-10-08"].iloc[0]  # MSFT buy at the open
    f2 = by_day["2012-10-10"].iloc[0]  # MSFT sell at the open
    f3 = by_day["2012-10-17"].iloc[0]  # MSFT buy at the open
    assert (f1.symbol, f1.side, f2.symbol, f2.side, f3.side) == ("MSFT", "buy", "MSFT", "sell", "buy")

    def row(f, day, price, side=None, symbol=None):
        return {"strategy": f.strategy, "symbol": symbol or f.symbol, "regime": "all", "bar": _bar(day),
                "side": side or f.side, "price": price, "kind": "entry", "reason": "signal"}

    # the backtest bought 5 cents lower, sold 2 cents higher (both worse for live), and bought AAPL on
    # 10-10 (missed live); 10-17 matched exactly; 10-18's AAPL buy is not in the backtest (extra)
    _write_report(copy_world, date(2012, 10, 8), [row(f1, "2012-10-08", f1.price - 0.05)])
    _write_report(copy_world, date(2012, 10, 10), [row(f2, "2012-10-10", f2.price + 0.02),
                                                   row(f2, "2012-10-10", 80.0, side="buy", symbol="AAPL")])
    _write_report(copy_world, date(2012, 10, 17), [row(f3, "2012-10-17", f3.price)])
    _write_report(copy_world, date(2012, 10, 18), [])
    snap = snapshot(copy_world.config())
    e, marks = snap["equity"], _marks(copy_world)

    slip = [(_us(f1.ts), 0.05 * f1.qty), (_us(f2.ts), 0.02 * f2.qty), (_us(f3.ts), 0.0)]  # by hand
    lo = [m for m in marks if m[0] < _us(pd.Timestamp("2012-10-08 09:30", tz=NY))][-1][0]
    hi = _us(pd.Timestamp("2012-10-18 16:00", tz=NY))
    inside = [m for m in marks if lo <= m[0] <= hi]
    want = [q - sum(usd for t, usd in slip if t <= ts) for ts, q, _ in inside]
    assert e["shadow_line"]["t"] == [_iso(m[0]) for m in inside]
    assert e["shadow_line"]["equity"] == pytest.approx(want, abs=1e-6)
    assert want[-1] == pytest.approx(inside[-1][1] - 0.05 * f1.qty - 0.02 * f2.qty)
    assert (e["shadow_line"]["from"], e["shadow_line"]["through"]) == ("2012-10-08", "2012-10-18")
    assert e["shadow_note"] == "shadow from the evening reports of 2012-10-08 to 2012-10-18"
    assert e["caption"].startswith("Shadow = live equity minus the cumulative slippage $")

    missed, extra = [v for v in e["events"] if v["status"] == "missed"], [v for v in e["events"] if v["status"] == "extra"]
    assert [v["text"] for v in missed] == ["missed: sma_cross AAPL bar 2012-10-10 buy (backtest @ 80.0)"]
    assert missed[0]["t"] == _iso(_us(pd.Timestamp("2012-10-10 09:30", tz=NY)))
    aapl = by_day["2012-10-18"].iloc[0]
    assert [v["text"] for v in extra] == [f"extra: sma_cross AAPL bar 2012-10-18 buy (live {aapl.qty} @ {aapl.price})"]
    assert extra[0]["t"] == _iso(_us(aapl.ts))
    at = [m for m in marks if m[0] <= _us(aapl.ts)][-1][1]
    assert extra[0]["equity"] == at  # on the live curve

    shutil.rmtree(copy_world.runs_dir / "2012-10-10")  # a day with fills and no report between two reports
    assert "no report for 2012-10-10" in snapshot(copy_world.config())["equity"]["shadow_note"]


def test_a_real_evening_run_gives_a_shadow_line_on_the_live_curve(copy_world):
    from live_bridge.shadow import run_for_day
    from live_bridge.state import StateStore
    from research.params import dumps

    from .conftest import traded_params

    with StateStore(copy_world.state_dir / "state.db") as store:  # what the daemon stores when it starts
        pf = traded_params()
        store.set_anchor(_us(pd.Timestamp("2012-10-01", tz=NY)))
        store.record_epoch(0, pf.sha256(), dumps(pf).decode(), "test")
    report, _, path = run_for_day(Lake(copy_world.lake), copy_world.state_dir, None, date(2012, 10, 8),
                                  copy_world.runs_dir / "2012-10-08" / "evening-210000")
    doc = json.loads(path.read_text())
    assert report.counts["match"] == 1 and len(doc["divergences"]) == 1
    usd = doc["divergences"][0]["slippage_usd"]

    e = snapshot(copy_world.config())["equity"]
    marks = {_iso(t): q for t, q, _ in _marks(copy_world)}
    filled = _iso(_us(pd.Timestamp("2012-10-08 09:30", tz=NY)))
    line = dict(zip(e["shadow_line"]["t"], e["shadow_line"]["equity"]))
    assert line[filled] == pytest.approx(marks[filled] - usd, abs=1e-9)
    assert all(t in marks for t in line) and e["events"] == []


def test_the_page_draws_the_curve_the_shadow_and_the_markers_without_an_error(copy_world, serve_dashboard, browser):
    fills = _fills(copy_world)
    f = fills.iloc[0]
    _write_report(copy_world, f.ts.tz_convert(NY).date(), [
        {"strategy": f.strategy, "symbol": f.symbol, "regime": "all", "bar": _bar(str(f.ts.tz_convert(NY).date())),
         "side": f.side, "price": f.price - 0.1, "kind": "entry", "reason": "signal"},
        {"strategy": "<b>x</b>", "symbol": "AAPL", "regime": "all", "bar": _bar(str(f.ts.tz_convert(NY).date())),
         "side": "buy", "price": 80.0, "kind": "entry", "reason": "signal"}])
    with serve_dashboard(copy_world.config()) as url, browser.open(url + "/") as page:
        page.wait("!!document.querySelector('#equity .main-svg')", what="the equity plot")
        traces = page.evaluate("document.getElementById('equity').data.map(t => [t.name, t.x.length, t.y])")
        caption = page.evaluate("document.getElementById('equity-caption').textContent")
        today = page.evaluate("document.getElementById('pnl-equity').textContent")
        legend = page.evaluate("[...document.querySelectorAll('#equity .legendtext')].map(e => e.textContent)")
        with urllib.request.urlopen(url + "/live/snapshot.json", timeout=10) as r:
            served = json.loads(r.read())
        errors = page.errors

    assert errors == []
    e = served["equity"]
    assert [t[0] for t in traces] == ["live equity (the runner's marks)", "shadow: fills at the backtest's prices",
                                      "missed fills (evening report)"]
    assert traces[0][2] == [q for _, q, _ in _marks(copy_world)] == e["marks"]["equity"]
    assert traces[1][2] == pytest.approx(e["shadow_line"]["equity"]) and traces[2][1] == 1
    assert e["events"][0]["text"].startswith("missed: <b>x</b> AAPL")  # data: escaped for plotly's hover
    assert caption == e["caption"] and len(legend) == 3
    assert float(today.replace(",", "")) == pytest.approx(e["today"]["pnl"], abs=0.005)


def test_a_years_marks_reach_the_page_as_the_newest_in_full_and_each_older_session_by_its_last():
    from dashboard.live_view import FULL_POINTS, MAX_POINTS, build

    cal = nyse()
    first = int(cal.dates.searchsorted(pd.Timestamp("2023-01-03")))
    marks = [(int(cal.open_us[i]) + m * 60_000_000, 1e5 + i + m / 1000, 9e4) for i in range(first, first + 30)
             for m in range(391)]  # 30 sessions, a mark every minute from the open to the close
    store = {"positions": [], "orders": [], "daily_pnl": [], "halts": [], "fills": 0, "marks": marks,
             "executions": []}
    shown = build(store, [], None, None, None, [])["equity"]["marks"]

    old = marks[:-FULL_POINTS]
    day = {m: pd.Timestamp(m[0], unit="us", tz="UTC").tz_convert(NY).date() for m in old}
    last = [m for k, m in enumerate(old) if k + 1 == len(old) or day[old[k + 1]] != day[m]]
    assert sum(m[0] == int(cal.close_us[first + i]) for i, m in enumerate(last)) == len(last) - 1  # at the closes
    assert len(marks) > MAX_POINTS and len(shown["t"]) == len(last) + FULL_POINTS <= MAX_POINTS
    assert shown["equity"] == [m[1] for m in last + marks[-FULL_POINTS:]]
