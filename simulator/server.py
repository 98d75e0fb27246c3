"""The simulator's shell: shared state, the app that wraps every router, and a loopback runner.

Tests (and ``tradelab`` dry runs) talk to the simulator through the real alpaca-py client, so the
simulator must look like Alpaca on the wire: the same headers, status codes and JSON error bodies.
What is common to every Alpaca API lives here, once, so that each router (market data today,
trading and streaming later) only implements its endpoints:

* auth: ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` must match, else 401
  ``{"code": 40110000, "message": "request is not authorized"}`` (Alpaca's body, code included:
  typed clients such as the JS SDK and alpaca-trade-api read ``code``);
* an optional per-minute request quota, answered with 429 and *no* Retry-After (as Alpaca does);
* a fault queue tests fill to make the next matching requests fail;
* a log of every request (method, path, query parameters, status; never the headers/keys);
* an endpoint (or method) the simulator does not model: 404 (405) ``{"code": 40410000 (40510000),
  "message": "GET /v2/watchlists is not supported by the simulator"}``, not FastAPI's ``{"detail"}``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

#: Paths served without keys: the OpenAPI spec (used for fuzzing) and its viewer.
OPEN_PATHS = ("/openapi.json", "/docs", "/redoc")


@dataclass(frozen=True, slots=True)
class Fault:
    """One queued failure: the response a matching request gets instead of the real one."""

    path_prefix: str
    status: int
    body: Any
    headers: dict[str, str]


class FaultQueue:
    """Failures to inject, consumed first-in first-out by the requests whose path matches.

    Thread-safe: tests add faults from their own thread while uvicorn serves from another.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []

    def add(
        self,
        path_prefix: str = "/",
        status: int = 500,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Make the next ``times`` requests under ``path_prefix`` answer ``status`` with ``body``."""
        if body is None:
            body = {"message": _DEFAULT_FAULT_MESSAGES.get(status, f"simulated error {status}")}
        fault = Fault(path_prefix, status, body, dict(headers or {}))
        with self._lock:
            self._queue.extend([fault] * times)

    def take(self, path: str) -> Fault | None:
        """Remove and return the first fault matching ``path``, if any."""
        with self._lock:
            for i, fault in enumerate(self._queue):
                if path.startswith(fault.path_prefix):
                    return self._queue.pop(i)
        return None

    def pending(self) -> int:
        """How many faults are still queued."""
        with self._lock:
            return len(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


_DEFAULT_FAULT_MESSAGES = {429: "too many requests.", 500: "internal server error", 504: "gateway timeout"}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What the simulator saw of one request (headers are left out: they carry the keys)."""

    method: str
    path: str
    params: dict[str, str]
    status: int


class RequestLog:
    """Every request the simulator answered, in arrival order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def all(self, path_prefix: str = "/") -> list[RecordedRequest]:
        """The recorded requests whose path starts with ``path_prefix``."""
        with self._lock:
            return [r for r in self._items if r.path.startswith(path_prefix)]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class RateLimiter:
    """At most ``per_minute`` requests in any trailing 60 seconds (Alpaca: 200 on the free plan)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._stamps: deque[float] = deque()

    def admit(self) -> tuple[bool, int]:
        """Count one request; return (allowed, remaining in the window)."""
        with self._lock:
            now = self._clock()
            while self._stamps and self._stamps[0] <= now - 60.0:
                self._stamps.popleft()
            if len(self._stamps) >= self.per_minute:
                return False, 0
            self._stamps.append(now)
            return True, self.per_minute - len(self._stamps)


@dataclass
class SimulatorState:
    """What every router shares: the accepted keys, the quota, the faults and the request log."""

    api_key: str = "sim-key"
    secret_key: str = "sim-secret"
    requests_per_minute: int | None = None
    faults: FaultQueue = field(default_factory=FaultQueue)
    requests: RequestLog = field(default_factory=RequestLog)
    limiter: RateLimiter | None = None

    def __post_init__(self) -> None:
        if self.limiter is None and self.requests_per_minute:
            self.limiter = RateLimiter(self.requests_per_minute)


#: Alpaca's 401 body for missing or wrong keys (trading API; seen verbatim in alpaca-py issue 519).
UNAUTHORIZED = {"code": 40110000, "message": "request is not authorized"}


def alpaca_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error response shaped like Alpaca's: ``{"message": ...}`` with the status code."""
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def create_app(
    state: SimulatorState, routers: Iterable[APIRouter], title: str = "alpaca-simulator"
) -> FastAPI:
    """A FastAPI app serving ``routers`` behind the shared auth, quota, fault and logging layer.

    The state is reachable as ``app.state.sim`` so a test holding only the app can queue faults.
    """
    app = FastAPI(title=title)
    app.state.sim = state
    for router in routers:
        app.include_router(router)

    @app.middleware("http")
    async def alpaca_edge(request: Request, call_next) -> Response:
        response = await _gate(state, request)
        if response is None:
            response = await call_next(request)
        remaining = getattr(request.state, "rate_remaining", None)
        if remaining is not None and state.limiter is not None:  # Alpaca sends these on every answer
            response.headers["X-RateLimit-Limit"] = str(state.limiter.per_minute)
            response.headers["X-RateLimit-Remaining"] = str(remaining)
        params = dict(request.query_params)
        state.requests.append(RecordedRequest(request.method, request.url.path, params, response.status_code))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def not_modelled(request: Request, exc: StarletteHTTPException) -> Response:
        # Starlette raises these only when no route matches the path (404) or the method (405): an
        # endpoint the simulator does not model. The routers answer their own errors themselves.
        path = request.scope.get("raw_path", b"").decode("ascii", "replace")  # as sent: never unencodable
        code = exc.status_code * 100_000 + 10_000  # Alpaca's pattern: 404 -> 40410000, 422 -> 42210000
        message = f"{request.method} {path} is not supported by the simulator"
        return JSONResponse({"code": code, "message": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    return app


async def _gate(state: SimulatorState, request: Request) -> Response | None:
    """The answer to give instead of routing the request (a fault, 401 or 429), or None."""
    path = request.url.path
    fault = state.faults.take(path)
    if fault is not None:
        if isinstance(fault.body, (dict, list)):
            return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
        return Response(str(fault.body), status_code=fault.status, headers=fault.headers)
    if path in OPEN_PATHS:
        return None
    key = request.headers.get("APCA-API-KEY-ID")
    secret = request.headers.get("APCA-API-SECRET-KEY")
    if key != state.api_key or secret != state.secret_key:
        return JSONResponse(UNAUTHORIZED, status_code=401)
    if state.limiter is not None:
        allowed, request.state.rate_remaining = state.limiter.admit()
        if not allowed:
            # Alpaca sends no Retry-After; clients (alpaca-py included) wait a fixed time.
            return alpaca_error(429, "too many requests.")
    return None


class LoopbackServer:
    """An app served by uvicorn in a daemon thread; ``url`` is ``http://host:port``.

    The socket is bound before uvicorn starts, so the ephemeral port is known without a race.
    Use as a context manager, or call ``stop()``.
    """

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 10.0
    ) -> None:
        self.app = app
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP, and without it every keep-alive response stalls ~40 ms on delayed ACKs.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator did not start on {self.host}:{self.port}")
            time.sleep(0.005)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> SimulatorState:
        """The shared state of the served app (faults, request log)."""
        return self.app.state.sim

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for its thread, release the socket. Safe to call twice."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> "LoopbackServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> LoopbackServer:
    """Start serving ``app`` on loopback (port 0 = any free port); returns the running server."""
    return LoopbackServer(app, host, port)
