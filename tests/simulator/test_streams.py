"""The simulator's websocket streams, read by the real alpaca-py stream clients and by raw websockets."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import msgpack
import numpy as np
import pytest
from alpaca.data.enums import DataFeed
from alpaca.data.live import StockDataStream
from alpaca.data.models import Bar
from alpaca.trading.models import TradeUpdate
from alpaca.trading.stream import TradingStream
from websockets.sync.client import connect

from simulator import (
    BarStore, Hub, SimulatorState, StreamControl, create_app, market_data_router, serve, streams,
    streams_app, streams_router,
)

KEY, SECRET = "sim-test-key", "sim-test-secret"
MSGPACK = {"Content-Type": "application/msgpack"}  # what alpaca-py sends on the upgrade


@pytest.fixture
def sim() -> Iterator:
    """A served streams app; on exit the server thread and every client thread must be gone."""
    before = set(threading.enumerate())
    hub = Hub()
    server = serve(streams_app(SimulatorState(api_key=KEY, secret_key=SECRET), hub))
    try:
        yield server
    finally:
        server.stop()
    leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert leaked == []


def ws_url(sim, path: str) -> str:
    return sim.url.replace("http://", "ws://") + path


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@contextmanager
def running(stream, control: StreamControl) -> Iterator[threading.Thread]:
    """Run an alpaca-py stream in a thread; stop it and wait for its thread on exit.

    alpaca-py polls its stop flag only between 5 s ``recv`` timeouts, so after ``stop()`` the
    simulator drops the sockets to wake the client at once.
    """
    thread = threading.Thread(target=stream.run, name="alpaca-stream", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        eventually(lambda: getattr(stream, "_loop", None) is not None)  # stop() needs the loop
        stream.stop()
        control.drop_all()
        thread.join(timeout=5)
        assert not thread.is_alive()


def bar(symbol: str, minute: int, close: float = 100.0) -> dict:
    ts = datetime(2024, 1, 2, 14, 30 + minute, tzinfo=timezone.utc)
    return {"T": "b", "S": symbol, "t": ts.isoformat().replace("+00:00", "Z"), "o": close - 0.5,
            "h": close + 1, "l": close - 1, "c": close, "v": 1200 + minute, "n": 7 + minute,
            "vw": close - 0.1}


def trade_update(coid: str, event: str = "fill", price: float = 185.5, qty: float = 10) -> dict:
    now = "2024-01-02T14:31:00.123456Z"
    order = {
        "id": str(uuid.uuid4()), "client_order_id": coid, "created_at": now, "updated_at": now,
        "submitted_at": now, "filled_at": now if event == "fill" else None, "asset_id": str(uuid.uuid4()),
        "symbol": "AAPL", "asset_class": "us_equity", "qty": str(qty), "filled_qty": str(qty),
        "filled_avg_price": str(price), "order_class": "simple", "order_type": "market", "type": "market",
        "side": "buy", "time_in_force": "day", "status": "filled" if event == "fill" else event,
        "extended_hours": False, "legs": None,
    }
    return {"event": event, "timestamp": now, "order": order, "price": str(price), "qty": str(qty),
            "position_qty": str(qty), "execution_id": str(uuid.uuid4())}


def data_stream(sim, received: list, *symbols: str, key: str = KEY) -> StockDataStream:
    stream = StockDataStream(key, SECRET, feed=DataFeed.IEX, url_override=ws_url(sim, "/v2/iex"))

    async def on_bar(b: Bar) -> None:
        received.append(b)

    stream.subscribe_bars(on_bar, *(symbols or ("AAPL",)))
    return stream


def trading_stream(sim, received: list, key: str = KEY) -> TradingStream:
    stream = TradingStream(key, SECRET, paper=True, url_override=ws_url(sim, "/stream"))

    async def on_update(u: TradeUpdate) -> None:
        received.append(u)

    stream.subscribe_trade_updates(on_update)
    return stream


def recv_msgpack(ws) -> list[dict]:
    frame = ws.recv(timeout=5)
    assert isinstance(frame, bytes)  # alpaca-py msgpack.unpackb()s every frame: text would break it
    return msgpack.unpackb(frame)


def test_market_data_wire_protocol_with_msgpack(sim):
    hub = sim.app.state.hub
    with connect(ws_url(sim, "/v2/iex"), additional_headers=MSGPACK, proxy=None) as ws:
        assert recv_msgpack(ws) == [{"T": "success", "msg": "connected"}]
        ws.send(msgpack.packb({"action": "auth", "key": KEY, "secret": SECRET}))
        assert recv_msgpack(ws) == [{"T": "success", "msg": "authenticated"}]
        ws.send(msgpack.packb({"action": "subscribe", "bars": ["AAPL"]}))
        ack = recv_msgpack(ws)[0]
        assert ack["T"] == "subscription" and ack["bars"] == ["AAPL"] and ack["trades"] == []

        hub.publish_bar(bar("MSFT", 0))
        hub.publish_bar({**bar("AAPL", 0), "v": np.int64(1200), "c": np.float64(100.0)})  # as the clock may
        (got,) = recv_msgpack(ws)

    assert got["S"] == "AAPL" and (got["c"], got["v"]) == (100.0, 1200)
    assert got["t"] == msgpack.Timestamp.from_datetime(datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc))


def test_market_data_speaks_json_text_without_the_msgpack_header(sim):
    with connect(ws_url(sim, "/v2/sip"), proxy=None) as ws:
        assert json.loads(ws.recv(timeout=5)) == [{"T": "success", "msg": "connected"}]
        ws.send(json.dumps({"action": "subscribe", "bars": ["AAPL"]}))
        assert json.loads(ws.recv(timeout=5)) == [{"T": "error", "code": 401, "msg": "not authenticated"}]
        ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        frame = ws.recv(timeout=5)
    assert isinstance(frame, str) and json.loads(frame) == [{"T": "success", "msg": "authenticated"}]


def test_stock_data_stream_receives_published_bars_in_order(sim):
    hub, control, received = sim.app.state.hub, sim.app.state.streams, []
    stream = data_stream(sim, received, "AAPL", "MSFT")
    with running(stream, control):
        eventually(lambda: hub.subscribers("bar") == 1)
        published = [bar("AAPL", 0, 101), bar("TSLA", 0), bar("MSFT", 0, 55), bar("AAPL", 1, 102)]
        for b in published:
            hub.publish_bar(b)
        eventually(lambda: len(received) == 3)

    assert [(b.symbol, b.close) for b in received] == [("AAPL", 101), ("MSFT", 55), ("AAPL", 102)]
    first = received[0]
    assert first.timestamp == datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc)
    assert first.timestamp.tzinfo is not None
    assert (first.open, first.high, first.low, first.volume) == (100.5, 102, 100, 1200)
    assert (first.vwap, first.trade_count) == (100.9, 7)
    assert control.stats().bars_sent == 3


def test_bad_keys_are_refused_and_alpaca_py_only_logs_it(sim, caplog):
    with connect(ws_url(sim, "/v2/iex"), additional_headers=MSGPACK, proxy=None) as ws:
        recv_msgpack(ws)
        ws.send(msgpack.packb({"action": "auth", "key": "wrong", "secret": SECRET}))
        assert recv_msgpack(ws) == [{"T": "error", "code": 402, "msg": "auth failed"}]
    with connect(ws_url(sim, "/stream"), proxy=None) as ws:
        ws.send(json.dumps({"action": "authenticate", "data": {"key_id": KEY, "secret_key": "wrong"}}))
        reply = json.loads(ws.recv(timeout=5))
    assert reply["stream"] == "authorization" and reply["data"]["status"] == "unauthorized"

    control, bars, updates = sim.app.state.streams, [], []
    with caplog.at_level(logging.ERROR, logger="alpaca"), \
            running(data_stream(sim, bars, key="wrong"), control), \
            running(trading_stream(sim, updates, key="wrong"), control):
        eventually(lambda: control.stats().rejected >= 4)
        logged = lambda: {str(r.exc_info[1]) for r in caplog.records if r.exc_info}  # noqa: E731
        eventually(lambda: {"auth failed", "failed to authenticate"} <= logged())
    # nothing reaches the caller: alpaca-py logs the ValueError and reconnects with backoff, forever
    assert bars == [] and updates == []


def test_auth_must_come_in_time(sim, monkeypatch):
    monkeypatch.setattr(streams, "AUTH_TIMEOUT", 0.05)
    with connect(ws_url(sim, "/v2/iex"), additional_headers=MSGPACK, proxy=None) as ws:
        recv_msgpack(ws)
        assert recv_msgpack(ws) == [{"T": "error", "code": 404, "msg": "auth timeout"}]
    eventually(lambda: sim.app.state.streams.stats().rejected == 1)  # counted once the session ends


def test_a_second_market_data_connection_gets_406(sim, caplog):
    hub, control = sim.app.state.hub, sim.app.state.streams
    with running(data_stream(sim, []), control):
        eventually(lambda: hub.subscribers("bar") == 1)
        with connect(ws_url(sim, "/v2/iex"), additional_headers=MSGPACK, proxy=None) as ws:
            recv_msgpack(ws)
            ws.send(msgpack.packb({"action": "auth", "key": KEY, "secret": SECRET}))
            assert recv_msgpack(ws) == [{"T": "error", "code": 406, "msg": "connection limit exceeded"}]
        with caplog.at_level(logging.ERROR, logger="alpaca"), running(data_stream(sim, []), control):
            eventually(lambda: any("connection limit exceeded" in r.getMessage() for r in caplog.records))
    eventually(lambda: control.stats().rejected >= 2)


def test_trading_stream_receives_trade_updates_in_order(sim):
    hub, control, received = sim.app.state.hub, sim.app.state.streams, []
    with running(trading_stream(sim, received), control):
        eventually(lambda: hub.subscribers("trade_update") == 1)
        hub.publish_trade_update(trade_update("c-1", "new", qty=0))
        hub.publish_trade_update(trade_update("c-1", "fill", price=185.5, qty=10))
        eventually(lambda: len(received) == 2)

    assert [(u.event, u.order.client_order_id) for u in received] == [("new", "c-1"), ("fill", "c-1")]
    assert (received[1].price, received[1].qty) == (185.5, 10)
    assert received[1].timestamp.tzinfo is not None


@pytest.mark.parametrize("path", ["/stream", "/stream/"])  # the legacy alpaca-trade-api SDK uses "/stream/"
def test_trade_updates_come_in_binary_frames_after_listen(sim, path):
    hub = sim.app.state.hub
    with connect(ws_url(sim, path), proxy=None) as ws:
        ws.send(json.dumps({"action": "auth", "key": KEY, "secret": SECRET}))
        auth = ws.recv(timeout=5)
        ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates", "nope"]}}))
        listening = json.loads(ws.recv(timeout=5))
        hub.publish_trade_update(trade_update("c-9"))
        update = ws.recv(timeout=5)
    assert isinstance(auth, bytes)  # as paper Alpaca: JSON in binary frames
    assert json.loads(auth)["data"] == {"action": "authenticate", "status": "authorized"}
    assert listening == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    assert json.loads(update)["data"]["order"]["client_order_id"] == "c-9"


def test_drop_all_makes_both_clients_reconnect(sim):
    hub, control = sim.app.state.hub, sim.app.state.streams
    bars, updates = [], []
    with running(data_stream(sim, bars), control), running(trading_stream(sim, updates), control):
        eventually(lambda: hub.subscribers("bar") == 1 and hub.subscribers("trade_update") == 1)
        hub.publish_bar(bar("AAPL", 0))
        eventually(lambda: len(bars) == 1)

        control.pause()  # events held at the drop are lost: the client sees a gap
        hub.publish_bar(bar("AAPL", 1))
        hub.publish_trade_update(trade_update("lost"))
        dropped_at = time.monotonic()
        assert control.drop_all() == 2
        eventually(lambda: hub.subscribers("bar") == 0 and hub.subscribers("trade_update") == 0)
        control.resume()
        eventually(lambda: hub.subscribers("bar") == 1 and hub.subscribers("trade_update") == 1)
        delay = time.monotonic() - dropped_at
        hub.publish_bar(bar("AAPL", 2))
        hub.publish_trade_update(trade_update("after-drop"))
        eventually(lambda: len(bars) == 2 and len(updates) == 1)
        stats = control.stats()

    assert 0.4 < delay < 1.5  # alpaca-py's first retry waits uniform(0.5, 1.0) s
    assert [b.timestamp.minute for b in bars] == [30, 32]
    assert [u.order.client_order_id for u in updates] == ["after-drop"]
    assert (stats.market_data_connections, stats.trading_connections, stats.dropped) == (2, 2, 2)


def test_duplicate_reorder_and_pause(sim):
    hub, control, received = sim.app.state.hub, sim.app.state.streams, []
    with running(trading_stream(sim, received), control):
        eventually(lambda: hub.subscribers("trade_update") == 1)
        control.duplicate_next(2)
        for coid in ("a", "b", "c"):
            hub.publish_trade_update(trade_update(coid))
        eventually(lambda: len(received) == 5)
        control.reorder_next()
        for coid in ("d", "e"):
            hub.publish_trade_update(trade_update(coid))
        eventually(lambda: len(received) == 7)
        control.pause()
        hub.publish_trade_update(trade_update("f"))
        time.sleep(0.1)
        held = len(received)
        control.resume()
        eventually(lambda: len(received) == 8)

    assert [u.order.client_order_id for u in received] == ["a", "a", "b", "b", "c", "e", "d", "f"]
    assert held == 7 and control.stats().trade_updates_sent == 8


def test_streams_share_one_app_with_the_rest_api():
    state, hub = SimulatorState(api_key=KEY, secret_key=SECRET), Hub()
    control = StreamControl()
    app = create_app(state, [market_data_router(BarStore()), streams_router(state, hub, control)])
    with serve(app) as server:
        with connect(ws_url(server, "/v2/iex"), additional_headers=MSGPACK, proxy=None) as ws:
            assert recv_msgpack(ws) == [{"T": "success", "msg": "connected"}]
        assert control.stats().market_data_connections == 1
        assert state.requests.all("/v2/iex") == []  # the HTTP middleware never sees websockets
