"""The live page ("/"): what the runner holds and did, kept current by server-sent events.

The page is rendered once with the current snapshot embedded as JSON data (``tojson``: ``<`` and
``&`` escaped, inside a ``type="application/json"`` script, so it is never markup); ``live.js``
then puts every value in the DOM with ``textContent`` and opens ``/live/events``, an event stream
that sends the snapshot again whenever it changes (checked every ``cfg.refresh`` seconds, each read
in a worker thread: the readers never block the event loop, nor the runner). ``/live/snapshot.json``
is the same data for scripts and tests. Ages (of the last bar, of status.json) are computed by the
page from the times in the snapshot, so an unchanged runner sends nothing but a keep-alive.
"""

from __future__ import annotations

import json
import math

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .live_data import snapshot
from .page import render

router = APIRouter()
KEEPALIVE = 15.0  # seconds: a comment line, so proxies and the browser keep the stream open


def _clean(value):
    """Strict JSON: NaN and infinities as null (the browser's JSON.parse refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


async def _snapshot(request: Request) -> dict:
    return _clean(await anyio.to_thread.run_sync(snapshot, request.app.state.cfg))


@router.get("/")
async def live_page(request: Request):
    """The live page, with the snapshot of now (the stream keeps it current)."""
    snap = await _snapshot(request)
    return render(request, "live.html", snap=snap, refresh=request.app.state.cfg.refresh)


@router.get("/live/snapshot.json")
async def live_snapshot(request: Request) -> JSONResponse:
    """The live page's data as JSON."""
    return JSONResponse(await _snapshot(request), headers={"Cache-Control": "no-store"})


@router.get("/live/events")
async def live_events(request: Request) -> StreamingResponse:
    """Server-sent events: ``snapshot`` events (the JSON) when the data changed, keep-alives between."""
    refresh = max(0.05, float(request.app.state.cfg.refresh))

    async def stream():
        last, quiet = None, 0.0
        yield f"retry: {int(max(refresh, 1.0) * 1000)}\n\n"
        while not await request.is_disconnected():
            body = json.dumps(await _snapshot(request), separators=(",", ":"), allow_nan=False)
            if body != last:
                last, quiet = body, 0.0
                yield f"event: snapshot\ndata: {body}\n\n"
            elif quiet >= KEEPALIVE:
                quiet = 0.0
                yield ": keep-alive\n\n"
            await anyio.sleep(refresh)
            quiet += refresh

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
