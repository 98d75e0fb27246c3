"""Official Alpaca clients other than alpaca-py (the JS SDK, the legacy alpaca-trade-api) on the simulator.

The simulator stands in for Alpaca for any client, so each client must parse what it serves: the
account, the clocks and calendar, assets, orders through their life by client_order_id, positions,
paged bars (multi- and single-symbol), both websocket streams and the error bodies. Each test runs
one client (see harness.py) against a fresh simulator serving one session of minute bars.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

from tests.kit import minute_bars

from .harness import Driver, Refusal, Sim, lake_frames, simulator, start_driver

CLIENTS = ["js", "alpaca-trade-api"]
NY = "America/New_York"
DAY = "2024-01-02"
WARMUP = 30  # bars replayed before the client acts: it is 10:00 New York


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return lake_frames(minute_bars([DAY], seed=7))


@pytest.fixture(params=CLIENTS)
def session(request, frames) -> Iterator[tuple[Sim, Driver]]:
    with simulator(frames) as sim:
        for _ in range(WARMUP):
            sim.clock.step()
        client = start_driver(request.param, sim.url)
        try:
            yield sim, client
        finally:
            client.close()


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def instant(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def ok(result):
    assert not isinstance(result, Refusal), result
    return result


# ------------------------------------------------------------------------------------ account, clock
def test_account_clocks_calendar_and_asset_parse(session):
    sim, client = session
    account = ok(client.call("account"))
    clock = ok(client.call("clock"))
    calendar = ok(client.call("calendar", start="2024-01-01", end="2024-01-05"))
    asset = ok(client.call("asset", symbol="AAPL"))
    v3 = client.call("clock_v3")  # the JS SDK 4.x's default clock; alpaca-trade-api has none
    assert account["status"] == "ACTIVE" and float(account["cash"]) == 100_000
    assert clock["is_open"] and instant(clock["timestamp"]) == sim.clock.now
    assert instant(clock["next_close"]) == pd.Timestamp(f"{DAY} 16:00", tz=NY)
    assert [d["date"] for d in calendar] == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    assert (calendar[0]["open"], calendar[0]["close"]) == ("09:30", "16:00")
    assert asset["symbol"] == "AAPL" and asset["tradable"] and str(uuid.UUID(asset["id"])) == asset["id"]
    if isinstance(v3, Refusal):
        assert v3.name == "NotImplementedError"  # alpaca-trade-api only knows GET /v2/clock
    else:
        assert [(c["market"], c["mic"], c["phase"], c["is_market_day"]) for c in v3] == [
            ("NYSE", "XNYS", "core", True)]
        assert instant(v3[0]["timestamp"]) == sim.clock.now
        assert instant(v3[0]["phase_until"]) == pd.Timestamp(f"{DAY} 16:00", tz=NY)


# ------------------------------------------------------------------------------------ orders
def test_orders_by_client_order_id_positions_and_trade_updates(session, frames):
    sim, client = session
    assert ok(client.call("trade_stream"))
    eventually(lambda: sim.clock.hub.subscribers("trade_update") == 1)

    market = ok(client.call("submit", symbol="AAPL", qty="10", side="buy", type="market", time_in_force="day",
                            client_order_id="conf-m1"))
    sim.clock.step()
    filled = ok(client.call("get_by_cid", client_order_id="conf-m1"))

    limit = ok(client.call("submit", symbol="AAPL", qty="5", side="buy", type="limit", time_in_force="gtc",
                           limit_price="50", client_order_id="conf-l1"))
    got = ok(client.call("get", id=limit["id"]))
    open_orders = ok(client.call("list", status="open"))
    replaced = ok(client.call("replace", id=limit["id"], limit_price="51", client_order_id="conf-l2"))
    assert ok(client.call("cancel", id=replaced["id"])) is None
    canceled, old = ok(client.call("get", id=replaced["id"])), ok(client.call("get", id=limit["id"]))

    stop = ok(client.call("submit", symbol="AAPL", qty="10", side="sell", type="stop", time_in_force="gtc",
                          stop_price="50", client_order_id="conf-s1"))
    held = ok(client.call("positions"))
    ok(client.call("cancel", id=stop["id"]))
    close = ok(client.call("close_position", symbol="AAPL"))
    sim.clock.step()
    closed = ok(client.call("get", id=close["id"]))
    after = ok(client.call("positions"))
    everything = ok(client.call("list", status="all"))

    aapl = frames["AAPL"]
    assert (market["status"], market["client_order_id"], market["qty"]) == ("new", "conf-m1", "10")
    assert filled["status"] == "filled" and float(filled["filled_avg_price"]) == aapl["open"][WARMUP]
    assert got == limit and [o["client_order_id"] for o in open_orders] == ["conf-l1"]
    assert (replaced["replaces"], replaced["status"]) == (limit["id"], "new")
    assert float(replaced["limit_price"]) == 51
    assert (canceled["status"], old["status"], old["replaced_by"]) == ("canceled", "replaced", replaced["id"])
    assert (stop["type"], stop["status"], float(stop["stop_price"])) == ("stop", "new", 50)
    assert [(p["symbol"], p["qty"]) for p in held] == [("AAPL", "10")]
    assert (close["side"], close["type"]) == ("sell", "market") and closed["status"] == "filled"
    assert after == [] and len(everything) == 5

    published = [(e["event"], e["order"]["client_order_id"])
                 for kind, e in sim.published if kind == "trade_update"]
    eventually(lambda: len(client.call("events", kind="trade_updates")) == len(published))
    received = client.call("events", kind="trade_updates")
    assert [(u["event"], u["client_order_id"]) for u in received] == published
    assert published[:5] == [("new", "conf-m1"), ("fill", "conf-m1"), ("new", "conf-l1"),
                             ("replaced", "conf-l1"), ("new", "conf-l2")]
    fill = received[1]
    assert (fill["status"], float(fill["price"]), float(fill["qty"])) == ("filled", aapl["open"][WARMUP], 10)


# ------------------------------------------------------------------------------------ bars
def test_paged_bars_multi_and_single_symbol_and_the_bar_stream(session, frames):
    sim, client = session
    window = {"start": f"{DAY}T14:30:00Z", "end": f"{DAY}T21:00:00Z", "timeframe": "1Min"}
    multi = ok(client.call("bars", symbols=["AAPL", "MSFT"], **window))
    single = ok(client.call("bars_single", symbol="MSFT", **window))
    assert ok(client.call("bar_stream", symbols=["MSFT"]))
    eventually(lambda: sim.clock.hub.subscribers("bar") == 1)
    for _ in range(3):
        sim.clock.step()
    eventually(lambda: len(client.call("events", kind="bars")) == 3)
    streamed = client.call("events", kind="bars")
    pages = [r for r in sim.app.state.sim.requests.all("/v2/stocks") if r.status == 200]

    msft = frames["MSFT"].iloc[:WARMUP]  # no bar that has not closed yet
    assert {s: len(b) for s, b in multi["bars"].items()} == {"AAPL": WARMUP, "MSFT": WARMUP}
    assert single["symbol"] == "MSFT" and single["bars"] == multi["bars"]["MSFT"]
    assert len([p for p in pages if p.path == "/v2/stocks/bars"]) == 1  # 60 bars, 100 a page
    for bars in (multi["bars"]["MSFT"], single["bars"]):
        assert all(b["v_int"] and b["n_int"] and b["vw_number"] for b in bars)
        assert [b["v"] for b in bars] == np.rint(msft["volume"]).astype(int).tolist()  # split-adjusted
        assert {b["n"] for b in bars} == {0}  # the lake has no trade count
        np.testing.assert_allclose([b["vw"] for b in bars], (msft["high"] + msft["low"] + msft["close"]) / 3)
    more = frames["MSFT"].iloc[WARMUP:WARMUP + 3]
    assert [(b["symbol"], instant(b["t"])) for b in streamed] == [("MSFT", t) for t in more["ts"]]
    assert all(b["v_int"] and b["n_int"] and b["vw_number"] for b in streamed)
    assert [b["v"] for b in streamed] == np.rint(more["volume"]).astype(int).tolist()


@pytest.mark.parametrize("name", CLIENTS)
def test_single_symbol_bars_follow_next_page_token(frames, name):
    with simulator(frames, max_page_size=7) as sim:
        for _ in range(WARMUP):
            sim.clock.step()
        client = start_driver(name, sim.url)
        try:
            got = ok(client.call("bars_single", symbol="AAPL", start=f"{DAY}T14:30:00Z",
                                 end=f"{DAY}T21:00:00Z", timeframe="1Min"))
        finally:
            client.close()
        pages = [r for r in sim.app.state.sim.requests.all("/v2/stocks/AAPL/bars") if r.status == 200]
    assert len(pages) == -(-WARMUP // 7) and "page_token" in pages[1].params
    assert [b["c"] for b in got["bars"]] == frames["AAPL"]["close"].iloc[:WARMUP].tolist()


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("fields, status, code", [
    ({"notional": "500", "qty": None}, 422, 42210000),
    ({"time_in_force": "ioc"}, 422, 40010001),
    ({"type": "trailing_stop", "trail_percent": "1"}, 422, 40010001),
    ({"type": "limit", "limit_price": "90", "extended_hours": True}, 422, 40010001),
    ({"qty": "100000"}, 403, 40310000),
])
def test_refusals_reach_the_client_with_status_code_and_message(session, fields, status, code):
    sim, client = session
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day", **fields}
    err = client.call("submit", **{k: v for k, v in body.items() if v is not None})
    assert isinstance(err, Refusal) and (err.status, err.code) == (status, code) and err.message
    assert sim.broker.orders() == []


def test_bad_keys_and_unknown_orders_are_refused_as_alpaca_does(session):
    sim, client = session
    unauthorized = client.call("bad_keys_account")
    missing = client.call("get", id=str(uuid.uuid4()))
    missing_cid = client.call("get_by_cid", client_order_id="nope")
    assert isinstance(unauthorized, Refusal)
    assert (unauthorized.status, unauthorized.code, unauthorized.message) == (401, 40110000,
                                                                               "request is not authorized")
    assert (missing.status, missing.code) == (404, 40410000) and missing.message.startswith("order not found")
    assert (missing_cid.status, missing_cid.code) == (404, 40410000)
