"""Alpaca's trading API (the endpoints alpaca-py's ``TradingClient`` calls) over the simulated broker.

Paths, statuses and bodies follow Alpaca: errors are ``{"code", "message"}``; GET /v2/clock is the
legacy US clock and GET /v3/clock the multi-market one (``{"clocks": [...]}``, NYSE only; the JS SDK
4.x's ``trading.clock.clock()`` calls it); DELETE /v2/orders/{id}
answers 204 with no body; DELETE /v2/orders and DELETE /v2/positions answer 207 with one entry per
order / position; the clock and calendar come from the replay clock, never from wall time.

``after_accept`` (``app.state.after_accept``) is a :class:`FaultQueue` consumed *after* a mutating
request (POST/PATCH/DELETE) took effect: ``add("/v2/orders", status=504)`` makes the next order be
accepted and then answered with 504, the case where a client cannot know whether its order
exists. alpaca-py retries 429/504 with the same body, so the retry gets 422 "client_order_id must
be unique"; the client resolves it with GET /v2/orders:by_client_order_id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .broker import SimBroker
from .clock import MARKETS, ReplayClock
from .ledger import BrokerConfig
from .market_data import MAX_LIMIT, market_data_router
from .orders import OrderError
from .server import FaultQueue, SimulatorState, create_app

MAX_ORDERS = 500


class BadParam(OrderError):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(status, 40010001, message)


def _error(err: OrderError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


def _timestamp(text: str) -> pd.Timestamp:
    """A time pandas can hold in nanoseconds (1677..2262), else ValueError: "9999-12-31" and "NaT" too."""
    try:
        t = pd.Timestamp(text).as_unit("ns")
    except OverflowError:
        raise ValueError(text) from None
    if pd.isna(t):
        raise ValueError(text)
    return t


def _time_us(text: str, name: str) -> int:
    try:
        t = _timestamp(text.strip().replace(" ", "+"))
        t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
        return int(t.value // 1000)
    except (ValueError, OverflowError):
        raise BadParam(f"invalid {name}: {text}") from None


async def _json(request: Request) -> Any:
    """The body's JSON, or None if it is not JSON. A lone surrogate ("\\ud800") counts as not JSON:
    no answer echoing it could be encoded (Alpaca's Go decoder never yields one)."""
    try:
        body = await request.json()
        json.dumps(body, ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        return None
    return body


def _flag(text: str | None) -> bool:
    return (text or "").lower() in ("true", "1")


def _uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise BadParam(f"invalid order id: {text}") from None


def trading_router(broker: SimBroker, after_accept: FaultQueue | None = None) -> APIRouter:
    """The /v2 trading routes over ``broker`` (and its clock); ``router.after_accept`` holds the faults."""
    clock: ReplayClock = broker.clock
    after = after_accept or FaultQueue()
    router = APIRouter()
    router.after_accept = after  # type: ignore[attr-defined]

    def answer(request: Request, make: Callable[[], Response]) -> Response:
        try:
            response = make()
        except OrderError as err:
            return _error(err)
        fault = after.take(request.url.path) if request.method != "GET" else None
        if fault is not None:  # the change happened; the client is told otherwise
            return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
        return response

    def ok(body: object, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status)

    # -------------------------------------------------------------------------- account, clock
    @router.get("/v2/account")
    def account(request: Request) -> Response:
        return answer(request, lambda: ok(broker.account_json()))

    @router.get("/v2/clock")
    def market_clock(request: Request) -> Response:
        return answer(request, lambda: ok(clock.clock_json()))

    @router.get("/v3/clock")
    def market_clock_v3(request: Request) -> Response:
        q = request.query_params

        def make() -> Response:
            names = [m.strip().upper() for m in (q.get("markets") or "NYSE").split(",") if m.strip()]
            unknown = [m for m in names if m not in MARKETS]
            if unknown:  # Alpaca knows ~30 markets; the replay has one calendar
                raise BadParam(f"market {unknown[0]} is not supported by the simulator (NYSE, XNYS)", 400)
            at = None
            if q.get("time"):
                try:
                    at = _time_us(q["time"], "time")
                except BadParam:
                    raise BadParam(f"invalid time: {q['time']}", 400) from None
            return ok(clock.clock_v3_json(names or ["NYSE"], at))

        return answer(request, make)

    @router.get("/v2/calendar")
    def calendar(request: Request) -> Response:
        q = request.query_params

        def make() -> Response:
            for name in ("start", "end"):
                if q.get(name):
                    try:
                        _timestamp(q[name][:10])
                    except ValueError:
                        raise BadParam(f"invalid {name}: {q[name]}", 400) from None
            return ok(clock.calendar_json(q.get("start"), q.get("end")))

        return answer(request, make)

    # -------------------------------------------------------------------------- assets
    @router.get("/v2/assets")
    def assets(request: Request) -> Response:
        q = request.query_params
        rows = [a.to_json() for _, a in sorted(broker.assets.items())]
        rows = [r for r in rows if q.get("status", "active") == r["status"]
                and q.get("asset_class", "us_equity") == r["class"]
                and q.get("exchange", r["exchange"]) == r["exchange"]]
        return answer(request, lambda: ok(rows))

    @router.get("/v2/assets/{symbol_or_id}")
    def asset(symbol_or_id: str, request: Request) -> Response:
        def make() -> Response:
            sym = broker.resolve_symbol(symbol_or_id)
            if sym not in broker.assets:
                raise OrderError(404, 40410000, "asset not found")
            return ok(broker.assets[sym].to_json())

        return answer(request, make)

    # -------------------------------------------------------------------------- positions
    @router.get("/v2/positions")
    def positions(request: Request) -> Response:
        return answer(request, lambda: ok(broker.positions_json()))

    @router.get("/v2/positions/{symbol_or_id}")
    def position(symbol_or_id: str, request: Request) -> Response:
        return answer(request, lambda: ok(broker.position_json(symbol_or_id)))

    @router.delete("/v2/positions/{symbol_or_id}")
    def close_position(symbol_or_id: str, request: Request) -> Response:
        q = request.query_params
        return answer(request, lambda: ok(broker.close_position(symbol_or_id, q.get("qty"),
                                                                q.get("percentage")).to_json()))

    @router.delete("/v2/positions")
    def close_all(request: Request) -> Response:
        cancel = _flag(request.query_params.get("cancel_orders"))
        return answer(request, lambda: ok(broker.close_all(cancel), 207))

    # -------------------------------------------------------------------------- orders
    @router.post("/v2/orders")
    async def submit(request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, dict):
            return _error(OrderError(400, 40010000, "request body format is invalid"))
        return await run_in_threadpool(answer, request, lambda: ok(broker.submit(body).to_json()))

    @router.get("/v2/orders")
    def list_orders(request: Request) -> Response:
        q = request.query_params

        def make() -> Response:
            status = q.get("status") or "open"
            if status not in ("open", "closed", "all"):
                raise BadParam(f"invalid status: {status}")
            limit = q.get("limit") or "50"
            if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= MAX_ORDERS:
                raise BadParam(f"invalid limit: must be between 1 and {MAX_ORDERS}")
            direction = q.get("direction") or "desc"
            if direction not in ("asc", "desc"):
                raise BadParam(f"invalid direction: {direction}")
            side = q.get("side") or None
            if side not in (None, "buy", "sell"):
                raise BadParam(f"invalid side: {side}")
            names = [s.strip().upper() for s in (q.get("symbols") or "").split(",") if s.strip()]
            symbols = set(names) or None
            after = _time_us(q["after"], "after") if q.get("after") else None
            until = _time_us(q["until"], "until") if q.get("until") else None
            return ok(broker.list_orders(status, int(limit), after, until, direction, _flag(q.get("nested")),
                                         symbols, side))

        return answer(request, make)

    @router.get("/v2/orders:by_client_order_id")
    def by_client_order_id(request: Request) -> Response:
        cid = request.query_params.get("client_order_id")
        if not cid:
            return _error(BadParam("client_order_id is required"))
        return answer(request, lambda: ok(broker.by_client_order_id(cid).to_json()))

    @router.get("/v2/orders/{order_id}")
    def get_order(order_id: str, request: Request) -> Response:
        nested = _flag(request.query_params.get("nested"))
        return answer(request, lambda: ok(broker.get(_uuid(order_id)).to_json(nested=nested)))

    @router.patch("/v2/orders/{order_id}")
    async def replace(order_id: str, request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, dict):
            return _error(OrderError(400, 40010000, "request body format is invalid"))
        return await run_in_threadpool(answer, request,
                                       lambda: ok(broker.replace(_uuid(order_id), body).to_json()))

    @router.delete("/v2/orders/{order_id}")
    def cancel(order_id: str, request: Request) -> Response:
        def make() -> Response:
            broker.cancel(_uuid(order_id))
            return Response(status_code=204)

        return answer(request, make)

    @router.delete("/v2/orders")
    def cancel_all(request: Request) -> Response:
        return answer(request, lambda: ok([{"id": o.id, "status": 200} for o in broker.cancel_all()], 207))

    return router


def broker_app(
    clock: ReplayClock,
    broker: SimBroker | None = None,
    *,
    config: BrokerConfig | None = None,
    state: SimulatorState | None = None,
    api_key: str = "sim-key",
    secret_key: str = "sim-secret",
    requests_per_minute: int | None = None,
    plan: str = "basic",
    max_page_size: int = MAX_LIMIT,
    routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """One app: the trading API over ``broker`` (made from ``clock`` and ``config`` if not given)
    and GET /v2/stocks/bars over the clock's visible bars, behind server.py's auth, quota, faults
    and request log. Extra ``routers`` (e.g. the websocket streams on ``clock.hub``) share them.

    ``app.state`` holds ``sim`` (SimulatorState), ``clock``, ``broker``, ``hub``, ``bars`` and
    ``after_accept`` (the FaultQueue answered after a change took effect).
    """
    broker = broker or SimBroker(clock, config)
    state = state or SimulatorState(api_key=api_key, secret_key=secret_key,
                                    requests_per_minute=requests_per_minute)
    trading = trading_router(broker)
    bars = market_data_router(clock.store, plan=plan, max_page_size=max_page_size, now=lambda: clock.now)
    app = create_app(state, [trading, bars, *routers])
    app.state.clock, app.state.broker, app.state.hub = clock, broker, broker.hub
    app.state.bars, app.state.after_accept = clock.store, trading.after_accept
    return app
