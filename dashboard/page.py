"""Pages: Jinja2 templates with autoescaping on (broker messages and alert texts are data, never markup).

Every page extends ``templates/base.html`` (the nav, the CSRF token for forms, plotly.js from
``/assets/plotly.js``). Figures go in as ``figure_div(fig)``: the plotly div and its script, the
library itself loaded once by the base page, never from a URL.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(js|css)$")
_TYPES = {"js": "application/javascript", "css": "text/css"}
NAV = (("/", "Live"), ("/runs", "Runs"), ("/params", "Params"), ("/sweeps", "Sweeps"),
       ("/regimes", "Regimes"), ("/lake", "Lake"))

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True, default_for_string=True))
assets = APIRouter()


def render(request: Request, template: str, **context) -> HTMLResponse:
    """``template`` rendered with ``context`` (autoescaped), the nav and the request's CSRF token."""
    body = env.get_template(template).render(request=request, nav=NAV, path=request.url.path,
                                             csrf=getattr(request.state, "csrf", ""), **context)
    return HTMLResponse(body)


def figure_div(fig) -> Markup:
    """A plotly figure as a div and its script (plotly.js itself comes from the base page)."""
    return Markup(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


@functools.cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@assets.get("/assets/plotly.js")
def plotly_js() -> Response:
    """plotly.js from the installed plotly package: the dashboard loads nothing from the internet."""
    return Response(_plotly_js(), media_type="application/javascript",
                    headers={"Cache-Control": "public, max-age=86400"})


@assets.get("/assets/{name}")
def static_file(name: str) -> Response:
    """The dashboard's own scripts and styles (``dashboard/static``): plain names only, nothing else."""
    path = STATIC / name
    if not _STATIC_NAME.match(name) or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(path.read_bytes(), media_type=_TYPES[name.rsplit(".", 1)[1]],
                    headers={"Cache-Control": "no-cache"})
