"""The app factory: one FastAPI app with the live, research and control routers, and local assets only."""

from __future__ import annotations

from fastapi import FastAPI

from .config import DashboardConfig


def create_app(cfg: DashboardConfig) -> FastAPI:
    """The dashboard app for ``cfg`` (each router reads ``request.app.state.cfg``)."""
    from . import control, live, research
    from .page import assets

    app = FastAPI(title="tradelab dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.cfg = cfg
    app.include_router(assets)
    app.include_router(live.router)
    app.include_router(research.router)
    app.include_router(control.router)
    return app
