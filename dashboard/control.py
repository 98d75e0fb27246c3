"""The control API: status, halt, resume at the next session, reload params, flatten one symbol.

JSON over REST under ``/api/``, for the live page's buttons (``templates/controls.html``) and for
``tradelab live control``. The actions are ``live_bridge.control``'s, the ones the CLI's files go
through: this module only authorizes (``security.authorize``: token, CSRF, origin), says who asked,
and writes that to the decision log before anything is done (a refused action too, with why).
A request that fails authorization leaves no trace but its HTTP answer: nothing is written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from live_bridge import control as ctl
from live_bridge.runner_halts import read_halt

from .config import DashboardConfig
from .security import authorize

router = APIRouter(prefix="/api")


def _cfg(request: Request) -> DashboardConfig:
    return request.app.state.cfg


def _who(request: Request, kind: str) -> dict:
    """Who asked: the client's address, dashboard or CLI, its user agent (never a credential)."""
    agent = request.headers.get("user-agent", "")[:160]
    via = "cli" if agent.startswith("tradelab-cli") else "dashboard"
    return {"via": via, "client": request.client.host if request.client else None, "agent": agent, "kind": kind}


def _by(who: dict) -> str:
    return f"tradelab dashboard API ({who['via']} from {who['client']})"


async def _fields(request: Request) -> dict:
    """The request's fields: the form's (``security.authorize`` read it) or a JSON object body."""
    form = getattr(request.state, "form", None)
    if form:
        return form
    body = await request.body()
    if not body:
        return {}
    try:
        doc = json.loads(body)
    except ValueError:
        raise HTTPException(422, "the body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise HTTPException(422, "the body must be a JSON object")
    return doc


def _wait(fields: dict) -> float:
    try:
        wait = float(fields.get("wait", 10.0))
    except (TypeError, ValueError):
        raise HTTPException(422, "wait must be a number of seconds from 0 to 60") from None
    if not (math.isfinite(wait) and 0 <= wait <= 60):
        raise HTTPException(422, "wait must be a number of seconds from 0 to 60")
    return wait


async def _act(request: Request, kind: str, action: str, check, do, **detail) -> JSONResponse:
    """Check, log (accepted or refused, with who), then act: the action's JSON answer. The caller has
    authorized the request (``kind``: how it came)."""
    state_dir = _cfg(request).state_dir
    who = _who(request, kind)
    try:
        checked = await run_in_threadpool(check)
    except ctl.ControlError as exc:
        ctl.log_action(state_dir, action, who, outcome="refused", reason=str(exc), **detail)
        raise HTTPException(exc.status, str(exc)) from None
    ctl.log_action(state_dir, action, who, outcome="accepted", **detail)
    try:
        out = await run_in_threadpool(do, checked, who)
    except ctl.ControlError as exc:  # (changed since the check)
        ctl.log_action(state_dir, action, who, outcome="refused", reason=str(exc), **detail)
        raise HTTPException(exc.status, str(exc)) from None
    return JSONResponse({"action": action, **out})


@router.get("/status")
def status(request: Request) -> JSONResponse:
    """What the runner is doing (status.json, HALT, held symbols) and whether control is on."""
    cfg = _cfg(request)
    try:
        body = json.loads((cfg.state_dir / "status.json").read_text())
    except (OSError, ValueError):
        body = {}
    halt = read_halt(cfg.state_dir)
    running = ctl.runner_running(cfg.state_dir)
    out = {"runner_running": running, "updated_at": body.get("updated_at"),
           "pid": body.get("pid"), "paper": body.get("paper"), "params": body.get("params"),
           "broker": {k: (body.get("broker") or {}).get(k) for k in ("ok", "since", "error")},
           "halting": body.get("halting"), "last_bar": body.get("last_bar"),
           "halt": None if halt is None else {**ctl.halt_report(halt, running),
                                              "resume": halt.body.get("resume")},
           "held": _held(cfg.state_dir),
           "control": {"enabled": cfg.token is not None, "reason": None if cfg.token is not None else
                       "no control token is configured (TRADELAB_DASHBOARD_TOKEN): control is refused"}}
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


def _held(state_dir: Path) -> dict:
    try:
        return ctl.held_symbols(state_dir)
    except Exception as exc:  # a store being migrated, damaged: the status still answers
        return {"error": f"{type(exc).__name__}: {exc}"}


@router.post("/halt")
async def halt(request: Request) -> JSONResponse:
    """HALT like `tradelab live halt` (a running runner flattens with its own orders); waits ``wait`` s."""
    kind = await authorize(request)
    wait = _wait(await _fields(request))
    d = _cfg(request).state_dir

    def do(_, who):
        return ctl.ask_halt(d, _by(who), wait)

    return await _act(request, kind, "halt", lambda: None, do)


@router.post("/resume")
async def resume(request: Request) -> JSONResponse:
    """Resume at the next session: only on a HALT whose flatten is done."""
    kind = await authorize(request)
    d = _cfg(request).state_dir
    return await _act(request, kind, "resume", lambda: ctl.check_resume(d),
                      lambda _, who: ctl.ask_resume(d, _by(who)))


@router.post("/reload")
async def reload(request: Request) -> JSONResponse:
    """Check the params file as the runner's reload does, then ask the runner to read it (RELOAD)."""
    kind = await authorize(request)
    cfg = _cfg(request)
    path = cfg.params_dir / "current.json"
    return await _act(request, kind, "reload", lambda: ctl.check_params(path, cfg.state_dir, cfg.lake),
                      lambda pf, who: ctl.ask_reload(cfg.state_dir, path, cfg.lake), params=str(path))


@router.post("/flatten")
async def flatten(request: Request) -> JSONResponse:
    """Flatten one symbol with the runner's own orders; no entry on it for the rest of the session."""
    kind = await authorize(request)
    fields = await _fields(request)
    symbol, wait = fields.get("symbol"), _wait(fields)
    symbol = symbol.strip().upper() if isinstance(symbol, str) else symbol
    d = _cfg(request).state_dir
    return await _act(request, kind, "flatten", lambda: ctl.check_flatten(d, symbol),
                      lambda _, who: ctl.ask_flatten(d, symbol, who, wait), symbol=str(symbol)[:20])
