"""The app factory: one FastAPI app with the live, research and control routers, and local assets only.

Security is ``security.install``'s (one pure-ASGI middleware: the Host check, the CSRF cookie, and
the headers every response carries, among them a Content-Security-Policy that lets a page load
nothing but from the dashboard itself: offline by construction). The CLI refuses an unsafe bind
(``security.check_bind``) before anything listens.
"""

from __future__ import annotations

from fastapi import FastAPI

from .config import DashboardConfig


def create_app(cfg: DashboardConfig) -> FastAPI:
    """The dashboard app for ``cfg`` (each router reads ``request.app.state.cfg``)."""
    from . import control, live, research, security
    from .page import assets

    app = FastAPI(title="tradelab dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.cfg = cfg
    app.include_router(assets)
    app.include_router(live.router)
    app.include_router(research.router)
    app.include_router(control.router)
    security.install(app, cfg)
    return app
