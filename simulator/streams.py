"""Alpaca's two websocket streams on the simulator, fed by the Hub, with faults for chaos tests.

alpaca-py takes ``url_override`` as the *whole* endpoint (no path appended), so point it at
``ws://host:port/v2/iex`` (or ``/v2/sip``) for ``StockDataStream`` and ``ws://host:port/stream``
for ``TradingStream`` (``/stream/`` too: the legacy alpaca-trade-api SDK appends the slash, and
Alpaca accepts it). Quirks reproduced because alpaca-py 0.44 depends on them:

* market data: every server message is a *list* of ``{"T": ...}`` objects. alpaca-py sends
  ``Content-Type: application/msgpack`` on the upgrade and msgpack-decodes every frame, so
  that header selects binary msgpack (without it: JSON text, as Alpaca does). In msgpack a
  bar's ``t`` must be a msgpack Timestamp: alpaca-py calls ``t.to_datetime()`` on it.
* ``[{"T":"success","msg":"connected"}]`` comes first; auth within 10 s (else 404); bad keys 402
  ``auth failed``; a second session of one key on one endpoint 406 ``connection limit exceeded``;
  a message that cannot be read, or a subscribe whose channels are not lists of symbols, 400
  ``invalid syntax`` (and changes nothing).
* trade updates: no welcome; alpaca-py authenticates with ``{"action":"authenticate","data":
  {"key_id","secret_key"}}`` (current docs: ``{"action":"auth","key","secret"}``; both work) and
  checks only ``data.status == "authorized"``. Paper Alpaca sends this JSON in *binary* frames.
* alpaca-py never raises an auth error to the caller: it logs it and reconnects. After any close
  it waits uniform(0.5, 1) s, doubling per consecutive failure up to 30 s; a connection that
  delivered data resets that. It then re-authenticates and re-sends subscribe/listen. Its
  ``stop()`` is seen only between 5 s ``recv`` polls: ``drop_all()`` after it ends the client at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgpack
from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect

from .hub import Hub
from .server import SimulatorState, create_app

MARKET_DATA_FEEDS = ("iex", "sip")
TRADING_PATH = "/stream"
TRADING_PATHS = (TRADING_PATH, TRADING_PATH + "/")  # alpaca-trade-api (legacy SDK) connects to "/stream/"
AUTH_TIMEOUT = 10.0  # seconds Alpaca waits for the auth message
DROP_CODE = 1011  # ASGI cannot reset TCP; alpaca-py treats any close like a dropped socket
_MD_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds",
                "corrections", "cancelErrors")


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters since the control was made; connections count every accepted websocket."""

    market_data_connections: int
    trading_connections: int
    open_connections: int
    rejected: int  # auth failures, auth timeouts and 406s
    dropped: int  # connections closed by drop_all()
    bars_sent: int
    trade_updates_sent: int  # duplicates included


class StreamControl:
    """Thread-safe fault switches and counters for the streams (tests call it from their thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}  # open sockets' drop switches
        self._sessions: set[tuple[str, str]] = set()  # (api key, endpoint) holding the md slot
        self._counts = dict.fromkeys(("market_data", "trading", "rejected", "dropped", "bars",
                                      "trade_updates"), 0)
        self._paused = False
        self._faults = {"duplicate": 0, "reorder": 0}  # trade updates still to tamper with

    def drop_all(self) -> int:
        """Close every open websocket now (code 1011); returns how many were dropped."""
        with self._lock:
            conns = list(self._conns.items())
            self._counts["dropped"] += len(conns)
        for dropped, loop in conns:
            with contextlib.suppress(RuntimeError):  # its loop is gone: already closed
                loop.call_soon_threadsafe(dropped.set)
        return len(conns)

    def duplicate_next(self, n: int = 1) -> None:
        """Send each of the next ``n`` trade updates twice (an at-least-once redelivery)."""
        with self._lock:
            self._faults["duplicate"] += n

    def reorder_next(self) -> None:
        """Swap the next two trade updates (the first waits for the second; a drop loses it)."""
        with self._lock:
            self._faults["reorder"] += 1

    def pause(self) -> None:
        """Hold outgoing events (they queue per connection; a drop while paused loses them)."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Release held events, in order."""
        with self._lock:
            self._paused = False

    def stats(self) -> StreamStats:
        """A snapshot of the counters."""
        with self._lock:
            c = self._counts
            return StreamStats(c["market_data"], c["trading"], len(self._conns), c["rejected"],
                               c["dropped"], c["bars"], c["trade_updates"])

    # -- used by the handlers, on the server's loop --
    def _open(self, kind: str) -> asyncio.Event:
        dropped = asyncio.Event()
        with self._lock:
            self._conns[dropped] = asyncio.get_running_loop()
            self._counts[kind] += 1
        return dropped

    def _close(self, dropped: asyncio.Event) -> None:
        with self._lock:
            del self._conns[dropped]

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n

    def _claim(self, session: tuple[str, str]) -> bool:
        with self._lock:
            if session in self._sessions:
                return False
            self._sessions.add(session)
            return True

    def _release(self, session: tuple[str, str]) -> None:
        with self._lock:
            self._sessions.discard(session)

    def _take(self, fault: str) -> bool:
        with self._lock:
            if self._faults[fault] == 0:
                return False
            self._faults[fault] -= 1
            return True

    async def _hold(self) -> None:
        while self._paused:  # a plain read: the flag is only ever swapped whole
            await asyncio.sleep(0.005)


class _Rejected(Exception):
    """The session ends after an error message (the error was already sent)."""


def streams_router(state: SimulatorState, hub: Hub, control: StreamControl | None = None) -> APIRouter:
    """Websocket routes for ``/v2/{iex,sip}`` and ``/stream`` (also ``/stream/``); ``router.control`` holds
    the faults.

    Auth happens inside the websocket protocol: the HTTP middleware of ``create_app`` never sees
    websocket scopes (Starlette's ``BaseHTTPMiddleware`` passes them through untouched).
    """
    control = control or StreamControl()
    router = APIRouter()
    router.control = control  # type: ignore[attr-defined]

    async def market_data(ws: WebSocket) -> None:
        await _session(ws, control, "market_data", lambda: _market_data(ws, state, hub, control))

    async def trading(ws: WebSocket) -> None:
        await _session(ws, control, "trading", lambda: _trading(ws, state, hub, control))

    for feed in MARKET_DATA_FEEDS:
        router.add_api_websocket_route(f"/v2/{feed}", market_data)
    for path in TRADING_PATHS:  # Starlette's slash redirect is HTTP-only: a websocket needs both routes
        router.add_api_websocket_route(path, trading)
    return router


async def _market_data(ws: WebSocket, state: SimulatorState, hub: Hub, control: StreamControl) -> None:
    """One market-data session: welcome, auth, the connection slot, then subscribe/bars."""
    msgpack_codec = "msgpack" in ws.headers.get("content-type", "")
    chans: dict[str, set[str]] = {c: set() for c in _MD_CHANNELS}

    async def send(*msgs: dict[str, Any]) -> None:
        if msgpack_codec:
            await ws.send_bytes(msgpack.packb([_msgpack_ready(m) for m in msgs], default=_plain))
        else:
            await ws.send_text(json.dumps(list(msgs), default=_plain))

    async def error(code: int, msg: str) -> None:
        await send({"T": "error", "code": code, "msg": msg})

    async def reader(subscribe: Callable[[], None]) -> None:
        while True:
            msg = await _receive(ws)
            action = msg.get("action")
            if action == "auth":
                await error(403, "already authenticated")
                continue
            lists = {name: [] if msg.get(name) is None else msg.get(name) for name in _MD_CHANNELS}
            if action not in ("subscribe", "unsubscribe") or not all(
                    isinstance(v, list) and all(isinstance(s, str) for s in v) for v in lists.values()):
                await error(400, "invalid syntax")  # the whole message is refused: nothing changes
                continue
            for name, symbols in lists.items():
                symbols = set(symbols)
                chans[name] = chans[name] | symbols if action == "subscribe" else chans[name] - symbols
            subscribe()  # before the ack: a bar published after the ack is never missed
            await send({"T": "subscription", **{c: sorted(s) for c, s in chans.items()}})

    async def writer(queue: asyncio.Queue) -> None:
        while True:
            batch = [(await queue.get())[1]]
            while not queue.empty():  # like Alpaca, send what is ready as one array
                batch.append(queue.get_nowait()[1])
            await control._hold()
            bars = chans["bars"]
            out = [b for b in batch if b.get("S") in bars or "*" in bars]
            if out:
                await send(*out)
                control._count("bars", len(out))

    await send({"T": "success", "msg": "connected"})
    msg = await _first_message(ws, lambda: error(404, "auth timeout"))
    while msg.get("action") != "auth":  # Alpaca answers 401 (400 if unreadable) and keeps waiting
        await (error(400, "invalid syntax") if not msg else error(401, "not authenticated"))
        msg = await _first_message(ws, lambda: error(404, "auth timeout"))
    if (msg.get("key"), msg.get("secret")) != (state.api_key, state.secret_key):
        await error(402, "auth failed")
        raise _Rejected
    session = (state.api_key, ws.url.path)  # Alpaca: one connection per endpoint and account
    if not control._claim(session):
        await error(406, "connection limit exceeded")
        raise _Rejected
    try:
        await send({"T": "success", "msg": "authenticated"})
        await _pump(hub, "bar", reader, writer)
    finally:
        control._release(session)


async def _trading(ws: WebSocket, state: SimulatorState, hub: Hub, control: StreamControl) -> None:
    """One trade-updates session: auth, listen, then updates with the queued faults applied."""
    listening: set[str] = set()

    async def send(stream: str, data: dict[str, Any]) -> None:
        await ws.send_bytes(json.dumps({"stream": stream, "data": data}, default=_plain).encode())

    async def reader(subscribe: Callable[[], None]) -> None:
        while True:
            msg = await _receive(ws)
            if msg.get("action") == "listen":
                streams = _object(msg.get("data")).get("streams")
                listening.clear()
                if isinstance(streams, list):  # unknown (or malformed) streams are left out, as Alpaca does
                    listening.update(s for s in streams if s == "trade_updates")
                subscribe()
                await send("listening", {"streams": sorted(listening)})

    async def writer(queue: asyncio.Queue) -> None:
        held = None
        while True:
            update = (await queue.get())[1]
            await control._hold()
            if "trade_updates" not in listening:
                continue
            if held is None and control._take("reorder"):
                held = update
                continue
            for item in (update, held) if held is not None else (update,):
                for _ in range(1 + control._take("duplicate")):
                    await send("trade_updates", item)
                    control._count("trade_updates")
            held = None

    msg = await _first_message(ws, None)
    data = _object(msg.get("data"))
    keys = (data.get("key_id"), data.get("secret_key"))
    if "data" not in msg:  # the newer {"action": "auth", "key", "secret"} form
        keys = (msg.get("key"), msg.get("secret"))
    if msg.get("action") not in ("authenticate", "auth") or keys != (state.api_key, state.secret_key):
        await send("authorization", {"action": "authenticate", "status": "unauthorized",
                                     "message": "access key verification failed"})
        raise _Rejected
    await send("authorization", {"action": "authenticate", "status": "authorized"})
    await _pump(hub, "trade_update", reader, writer)


async def _session(
    ws: WebSocket, control: StreamControl, kind: str, run: Callable[[], Awaitable[None]]
) -> None:
    """Accept, run the protocol until the client leaves, an error ends it, or drop_all() fires."""
    await ws.accept()
    dropped = control._open(kind)
    try:
        work = asyncio.ensure_future(run())
        drop = asyncio.ensure_future(dropped.wait())
        try:
            await asyncio.wait({work, drop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            work.cancel()
            drop.cancel()
            await asyncio.gather(work, drop, return_exceptions=True)
    finally:
        control._close(dropped)
    exc = None if work.cancelled() else work.exception()
    if isinstance(exc, WebSocketDisconnect):
        return  # the client left: nothing to close
    if isinstance(exc, _Rejected):
        control._count("rejected")
        exc = None
    with contextlib.suppress(Exception):  # the peer may be gone already
        await ws.close(code=DROP_CODE if dropped.is_set() or exc is not None else 1000)
    if exc is not None:
        raise exc  # a simulator bug: let uvicorn log it


async def _pump(hub: Hub, kind: str, reader, writer) -> None:
    """Run ``reader`` and, from its first ``subscribe()``, ``writer`` on a hub queue of ``kind``.

    The first of the two to end (a disconnect, an error) ends both and the hub subscription.
    """
    subs = []
    ready = asyncio.Event()

    def subscribe() -> None:  # idempotent; called by the reader, on the loop
        if not subs:
            subs.append(hub.subscribe({kind}))
            ready.set()

    async def write() -> None:
        await ready.wait()
        await writer(subs[0].queue)

    tasks = [asyncio.ensure_future(reader(subscribe)), asyncio.ensure_future(write())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # re-raise the disconnect or error that ended it
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in subs:
            hub.unsubscribe(sub)


async def _receive(ws: WebSocket) -> dict[str, Any]:
    """The next client message, msgpack (binary) or JSON (text), ``{}`` if it is not an object or
    cannot be read; a disconnect raises."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    raw = message.get("bytes")
    try:
        if raw is None:
            decoded = json.loads(message["text"])
        else:  # alpaca-py's data stream sends msgpack, its trading stream JSON text
            decoded = json.loads(raw) if raw.lstrip()[:1] in (b"{", b"[") else msgpack.unpackb(raw)
        json.dumps(decoded, ensure_ascii=False, default=repr).encode()  # no lone surrogate (unencodable)
    except (ValueError, RecursionError, msgpack.UnpackException):
        return {}  # unreadable: answered like any message that is not an object
    return _object(decoded)


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``{}`` (a malformed message has no fields)."""
    return value if isinstance(value, dict) else {}


async def _first_message(ws: WebSocket, on_timeout: Callable[[], Awaitable[None]] | None) -> dict[str, Any]:
    """The next message within AUTH_TIMEOUT, else ``on_timeout()`` and the session ends."""
    try:
        return await asyncio.wait_for(_receive(ws), AUTH_TIMEOUT)
    except asyncio.TimeoutError:
        if on_timeout is not None:
            await on_timeout()
        raise _Rejected from None


def _msgpack_ready(msg: dict[str, Any]) -> dict[str, Any]:
    """A copy whose ``t`` is a msgpack Timestamp, as Alpaca's msgpack feed sends (naive = UTC)."""
    t = msg.get("t")
    if isinstance(t, str):
        t = datetime.fromisoformat(t)  # 3.11 reads "Z" and truncates nanoseconds to microseconds
    if not isinstance(t, datetime):
        return msg
    return {**msg, "t": msgpack.Timestamp.from_datetime(t if t.tzinfo else t.replace(tzinfo=timezone.utc))}


def _plain(value: Any) -> Any:
    """What the encoders cannot take as is: numpy scalars (publishers hand them over), datetimes."""
    if hasattr(value, "item"):
        return value.item()
    return value.isoformat() if isinstance(value, datetime) else str(value)


def streams_app(state: SimulatorState, hub: Hub) -> FastAPI:
    """A ready app serving only the streams; ``app.state.streams`` is its StreamControl."""
    router = streams_router(state, hub)
    app = create_app(state, [router])
    app.state.streams = router.control
    app.state.hub = hub
    return app
