"""The daily live report: a real state store read back, fills compared, P&L added up, files parsed."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from live_bridge.daily_report import (
    attribute,
    build,
    compare,
    daily_bar,
    live_fills,
    write_report,
)
from live_bridge.ids import client_order_id
from live_bridge.ports import Fill, OrderIntent
from live_bridge.state import StateStore
from tests.browser import Chromium

DAY = date(2024, 1, 3)
OPEN = datetime(2024, 1, 3, 14, 30, tzinfo=UTC)  # 09:30 New York
BAR = pd.Timestamp("2024-01-03 05:00", tz="UTC")  # the daily bar of DAY: 00:00 New York
PREV = pd.Timestamp("2024-01-02 05:00", tz="UTC")


def record(store: StateStore, strategy: str, symbol: str, side: str, qty: float, price: float,
           at: datetime = OPEN, kind: str = "entry", execution: str | None = None) -> str:
    """Store an intent and its fill, as the runner does (the fill's strategy comes from the intent)."""
    cid = client_order_id(strategy, symbol, at - timedelta(days=1), kind)
    store.record_intent(OrderIntent(cid, symbol, side, qty, strategy=strategy, reason="test"))
    store.record_fill(Fill(execution or f"x-{cid}", f"o-{cid}", cid, symbol, side, qty, price, at))
    return cid


def expected_rows(*rows: tuple) -> pd.DataFrame:
    """(strategy, symbol, regime, side, price, kind) on DAY's bar."""
    return pd.DataFrame([{"strategy": s, "symbol": y, "regime": r, "bar": BAR, "side": side, "price": p,
                          "kind": k, "reason": "sma cross" if k == "entry" else "stop"}
                         for s, y, r, side, p, k in rows])


def live_rows(*rows: tuple) -> pd.DataFrame:
    """(strategy, symbol, side, qty, price) on DAY's bar, one order each."""
    return pd.DataFrame([{"strategy": s, "symbol": y, "client_order_id": f"c{i}", "bar": BAR, "side": side,
                          "qty": q, "price": p, "ts": pd.Timestamp(OPEN)}
                         for i, (s, y, side, q, p) in enumerate(rows)])


CLOSES = {"AAPL": pd.Series([95.0, 102.0], index=[PREV, BAR]),
          "MSFT": pd.Series([199.0, 210.0], index=[PREV, BAR]),
          "SPY": pd.Series([410.0, 402.0], index=[PREV, BAR])}


@pytest.fixture
def store(tmp_path):
    """Yesterday: AAPL long 10 @ 90 (smacross), SPY short 4 @ 400 (meanrev). Today: three fills."""
    with StateStore(tmp_path / "state.db") as s:
        record(s, "smacross", "AAPL", "buy", 10, 90.0, at=OPEN - timedelta(days=1))
        record(s, "meanrev", "SPY", "sell", 4, 400.0, at=OPEN - timedelta(days=1))
        record(s, "smacross", "AAPL", "sell", 10, 100.0, kind="exit")
        record(s, "smacross", "MSFT", "buy", 5, 200.0)
        record(s, "meanrev", "SPY", "buy", 2, 405.0, kind="exit")
        yield s


EXPECTED = expected_rows(("smacross", "AAPL", "up_low", "sell", 100.0, "exit"),
                         ("smacross", "MSFT", "range_high", "buy", 200.0, "entry"),
                         ("meanrev", "SPY", "down_high", "buy", 405.0, "exit"))
OPENING = {("smacross", "AAPL"): (10.0, 90.0), ("meanrev", "SPY"): (-4.0, 400.0)}


def test_live_fills_reads_only_the_day_from_a_store_that_is_open_for_writing(store):
    fills = live_fills(store.path, DAY)

    assert list(fills.columns) == ["strategy", "symbol", "client_order_id", "bar", "side", "qty", "price",
                                   "ts"]
    assert fills[["strategy", "symbol", "side"]].values.tolist() == [
        ["smacross", "AAPL", "sell"], ["smacross", "MSFT", "buy"], ["meanrev", "SPY", "buy"]]
    assert (fills["bar"] == BAR).all() and (fills["ts"] == pd.Timestamp(OPEN)).all()
    assert store.integrity_check().ok  # the reader left the writer's file alone


def test_daily_bar_is_the_new_york_session_day_at_midnight_in_utc():
    assert daily_bar(pd.Timestamp("2024-01-03 20:59", tz="UTC")) == BAR  # 15:59 New York
    assert daily_bar(pd.Timestamp("2024-07-01 13:30", tz="UTC")) == pd.Timestamp("2024-07-01 04:00", tz="UTC")


def test_all_fills_match_and_the_day_is_ok(store, tmp_path):
    in_new_york = EXPECTED.assign(bar=EXPECTED["bar"].dt.tz_convert("America/New_York"))  # same instants

    report = build(DAY, in_new_york, live_fills(store.path, DAY), CLOSES, opening=OPENING)

    assert report.ok
    assert report.counts == {"match": 3, "missed": 0, "extra": 0, "price": 0}
    assert report.summary[0].startswith("2024-01-03: OK, all 3 live fills")


def test_missed_extra_and_price_divergences_are_named_with_signed_slippage():
    expected = expected_rows(("s", "AAPL", "up_low", "buy", 100.0, "entry"),    # live 5 bps worse
                             ("s", "MSFT", "up_low", "sell", 200.0, "exit"),    # live sells lower: worse
                             ("s", "SPY", "up_low", "sell", 400.0, "exit"),     # live sells higher: better
                             ("s", "QQQ", "up_low", "buy", 300.0, "entry"))     # missed
    live = live_rows(("s", "AAPL", "buy", 10, 100.05), ("s", "MSFT", "sell", 2, 199.0),
                     ("s", "SPY", "sell", 1, 401.0), ("s", "IBM", "buy", 3, 150.0))  # IBM: extra

    rows = compare(expected, live).set_index("symbol")

    assert rows["status"].to_dict() == {"AAPL": "price", "IBM": "extra", "MSFT": "price", "QQQ": "missed",
                                        "SPY": "price"}
    assert rows.loc["AAPL", "slippage_bps"] == pytest.approx(5.0)
    assert rows.loc["AAPL", "slippage_usd"] == pytest.approx(0.5)
    assert rows.loc["MSFT", "slippage_bps"] == pytest.approx(50.0)
    assert rows.loc["SPY", "slippage_bps"] == pytest.approx(-25.0)
    assert pd.isna(rows.loc["QQQ", "slippage_bps"]) and pd.isna(rows.loc["IBM", "expected_price"])
    assert rows.loc["QQQ", "message"] == ("s QQQ 2024-01-03: backtest buy @ 300.0000 vs live - "
                                          "(missed: entry, sma cross)")
    assert rows.loc["IBM", "message"] == ("s IBM 2024-01-03: backtest - vs live buy 3 @ 150.0000 "
                                          "(extra: order c3)")
    assert "+5.0 bps" in rows.loc["AAPL", "message"]


def test_a_fill_on_another_bar_or_side_is_missed_and_extra_and_partial_fills_count_as_one():
    expected = expected_rows(("s", "AAPL", "r", "buy", 100.0, "entry"),
                             ("s", "MSFT", "r", "buy", 200.0, "entry"))
    live = pd.concat([live_rows(("s", "AAPL", "buy", 4, 99.0), ("s", "AAPL", "buy", 6, 100 + 4 / 6)),
                      live_rows(("s", "MSFT", "sell", 5, 200.0))], ignore_index=True)
    live.loc[:1, "client_order_id"] = "one-order"  # two executions of one order: 10 @ 100.0

    rows = compare(expected, live)

    assert rows[["symbol", "side", "status"]].values.tolist() == [
        ["AAPL", "buy", "match"], ["MSFT", "buy", "missed"], ["MSFT", "sell", "extra"]]
    assert rows["qty"].iloc[0] == 10 and rows["live_price"].iloc[0] == pytest.approx(100.0)


def test_pnl_attribution_adds_up_to_the_broker_equity_change(store):
    live = live_fills(store.path, DAY)

    pnl = attribute(live, CLOSES, EXPECTED, opening=OPENING, day=DAY).set_index(["strategy", "symbol"])

    # By hand. AAPL: sold 10 @ 100 from 10 @ 90 (realized 100), 50 of it earned by yesterday's close 95.
    # MSFT: bought 5 @ 200, closes 210 (+50). SPY: short 4 @ 400, bought 2 @ 405 (realized -10), the
    # other 2 marked at 402 (-4), and yesterday it was -40 at 410: today +26.
    assert pnl.loc[("smacross", "AAPL"), ["regime", "realized", "prior_unrealized", "pnl"]].tolist() == \
        ["up_low", 100.0, 50.0, 50.0]
    assert pnl.loc[("smacross", "MSFT"), ["regime", "qty", "unrealized", "pnl"]].tolist() == \
        ["range_high", 5.0, 50.0, 50.0]
    assert pnl.loc[("meanrev", "SPY"), ["regime", "qty", "realized", "unrealized", "pnl"]].tolist() == \
        ["down_high", -2.0, -10.0, -4.0, 26.0]
    # Broker: cash moved by the fills, positions valued at yesterday's and today's closes.
    cash = sum((-q if s == "buy" else q) * p for s, q, p in live[["side", "qty", "price"]].values)
    equity_change = cash + (5 * 210 - 2 * 402) - (10 * 95 - 4 * 410)
    assert pnl["pnl"].sum() == pytest.approx(equity_change) == pytest.approx(126.0)
    # and the realized part is the store's own daily P&L
    assert pnl["realized"].sum() == pytest.approx(sum(store.daily_pnl(DAY).values()))


def test_a_flip_and_a_round_trip_split_the_pnl_between_regimes():
    later = pd.Timestamp(OPEN) + pd.Timedelta(hours=5)
    live = live_rows(("s", "AAPL", "sell", 15, 100.0), ("s", "MSFT", "buy", 1, 200.0),
                     ("s", "MSFT", "sell", 1, 205.0))
    live.loc[2, "ts"] = later

    pnl = attribute(live, CLOSES, {("s", "AAPL"): "down_low", ("s", "MSFT"): "up_high"},
                    opening={("s", "AAPL"): (10.0, 90.0, "up_low")}, day=DAY).set_index("regime")

    assert pnl.loc["up_low", ["realized", "prior_unrealized", "pnl"]].tolist() == [100.0, 50.0, 50.0]
    assert pnl.loc["down_low", ["qty", "avg_price", "pnl"]].tolist() == [-5.0, 100.0, 5 * (100 - 102)]
    assert pnl.loc["up_high", ["fills", "qty", "pnl"]].tolist() == [2, 0.0, 5.0]


def test_report_files_are_self_contained_html_and_strict_json(store, tmp_path):
    live = live_fills(store.path, DAY)
    live.loc[live["symbol"] == "MSFT", "price"] = 200.4  # one divergence
    report = build(DAY, EXPECTED, live, {"AAPL": CLOSES["AAPL"]}, opening=OPENING)  # no MSFT, SPY close

    html_path, json_path = write_report(report, tmp_path / "out")

    page = html_path.read_text(encoding="utf-8")
    assert html_path.name == "live-report.html" and json_path.name == "live-report.json"
    assert page.count(get_plotlyjs()[:300]) == 1
    assert re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE) is None
    assert "http" not in page.replace(get_plotlyjs(), "")
    assert page.count('class="plotly-graph-div"') == 2 and "DIVERGED" in page
    doc = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert doc["schema"] == "tradelab.live_report/1" and doc["day"] == "2024-01-03" and doc["ok"] is False
    assert doc["counts"] == {"match": 2, "missed": 0, "extra": 0, "price": 1}
    bad = [d for d in doc["divergences"] if d["status"] != "match"]
    assert bad[0]["symbol"] == "MSFT" and bad[0]["slippage_bps"] == pytest.approx(20.0)
    assert bad[0]["bar"] == "2024-01-03T05:00:00+00:00"
    assert {p["symbol"]: p["pnl"] for p in doc["pnl"]} == {"AAPL": 50.0, "MSFT": None, "SPY": None}
    assert any("no close for MSFT" in line for line in doc["summary"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["live-report.html", "live-report.json"]


def test_the_plots_render_in_a_browser_without_errors(store, tmp_path):
    live = live_fills(store.path, DAY)
    live.loc[live["symbol"] == "MSFT", "price"] = 200.4
    html_path, _ = write_report(build(DAY, EXPECTED, live, CLOSES, opening=OPENING), tmp_path)

    with Chromium(timeout=60) as browser:
        seen = browser.check(html_path)

    assert seen.errors == [] and seen.plots == seen.rendered == 2
    assert seen.title == "tradelab live report 2024-01-03"


def test_a_day_without_fills_is_ok_and_still_reported(tmp_path):
    empty = expected_rows().reindex(columns=["strategy", "symbol", "regime", "bar", "side", "price", "kind",
                                             "reason"])
    live = live_rows().reindex(columns=["strategy", "symbol", "client_order_id", "bar", "side", "qty",
                                        "price", "ts"])

    report = build(DAY, empty, live, CLOSES)
    _, json_path = write_report(report, tmp_path)

    assert report.ok and json.loads(json_path.read_text())["divergences"] == []
