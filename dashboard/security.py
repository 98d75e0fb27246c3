"""The dashboard's security: who may steer the runner, and what every response says about itself.

A control action flattens an account, so:

* **The bind.** 127.0.0.1 by default; any other address needs a control token (``check_bind``, called
  by the CLI before it listens), so a dashboard reachable from the network is never open.
* **The token.** Every control action needs it (``Authorization: Bearer <token>``, or a form's
  ``token`` field), compared in constant time; with no token configured control is refused (the
  status says so). It is never echoed: not on a page, in a response, nor in the decision log.
* **CSRF.** A per-browser random token in a ``SameSite=Strict`` HttpOnly cookie, given to the page in
  ``request.state.csrf`` (base.html's ``<meta name="csrf-token">``); a control request carrying a cookie
  or a form must send it back (``X-CSRF-Token`` header or ``csrf`` field): double submit. A script
  with the bearer token and no cookie (``tradelab live control``) needs none: a browser cannot set
  that header cross-origin without a preflight this app never answers.
* **DNS rebinding and cross-origin posts.** On a loopback bind the Host header must name loopback
  (a rebound name is refused); a control request whose ``Origin`` (or ``Referer``) is another site is
  refused, and so is one a browser marks ``Sec-Fetch-Site: cross-site``.
* **Headers.** Content-Security-Policy ``default-src 'self'`` (plotly's inline figures need inline
  scripts and, in the full bundle, eval; nothing is ever loaded from another origin),
  ``X-Frame-Options: DENY``, ``nosniff``, ``no-referrer``, ``no-store`` on the API.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from fastapi import HTTPException, Request

from .config import LOOPBACK, DashboardConfig

COOKIE = "tradelab_csrf"
MIN_TOKEN = 16
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"content-security-policy": CSP, "x-frame-options": "DENY", "x-content-type-options": "nosniff",
           "referrer-policy": "no-referrer"}


def check_bind(cfg: DashboardConfig) -> None:
    """Refuse a configuration that would expose control (ValueError, one line): a bind beyond this
    machine without a token, or a token too short to resist guessing. The CLI calls it first."""
    if cfg.token is not None and (len(cfg.token) < MIN_TOKEN or cfg.token != cfg.token.strip()):
        raise ValueError(f"TRADELAB_DASHBOARD_TOKEN must be at least {MIN_TOKEN} characters without surrounding "
                         "spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    if not cfg.loopback and cfg.token is None:
        raise ValueError(f"--host {cfg.host} listens beyond this machine: set TRADELAB_DASHBOARD_TOKEN "
                         "(the control token), or keep the default 127.0.0.1")


def install(app, cfg: DashboardConfig) -> None:
    """Add the security middleware (Host check, CSRF cookie, headers) to ``app`` (once: again is a no-op)."""
    if getattr(app.state, "security", False):
        return
    app.state.security = True
    app.add_middleware(Guard, cfg=cfg)


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _loopback_host(host: str) -> bool:
    """A Host header naming this machine (any port): a DNS-rebound name is not one."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.strip("[]").lower() in LOOPBACK


class Guard:
    """Pure ASGI (the live page's event stream passes through untouched): refuses a rebound Host,
    gives each browser its CSRF token (``scope["state"]["csrf"]``), adds the security headers."""

    def __init__(self, app, cfg: DashboardConfig) -> None:
        self.app, self.cfg = app, cfg

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        if self.cfg.loopback and not _loopback_host(headers.get("host", "")):
            return await _plain(send, 421, "this dashboard answers to 127.0.0.1/localhost only (Host refused)")
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header: a fresh token
            jar = SimpleCookie()
        token = jar[COOKIE].value if COOKIE in jar and len(jar[COOKIE].value) == 43 else None
        fresh = token is None
        token = token or secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = token
        scope["state"]["csrf_cookie"] = None if fresh else token
        api = scope.get("path", "").startswith("/api/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in have]
                if api:
                    extra.append((b"cache-control", b"no-store"))
                if fresh:
                    extra.append((b"set-cookie", f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            *((k.encode(), v.encode()) for k, v in HEADERS.items())]})
    await send({"type": "http.response.body", "body": body})


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin, Referer, Sec-Fetch-Site)."""
    h = request.headers
    if h.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    source = h.get("origin") or h.get("referer")
    if not source or source == "null" and "origin" not in h:
        return True  # a script (curl, the CLI): no browser origin to check
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}".lower() == f"{request.url.scheme}://{h.get('host', '')}".lower()


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (first value each; at most 16 KiB), or {} for any other body."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    if len(body) > 16384:
        raise HTTPException(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace"), max_num_fields=20).items()}


def _equal(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def authorize(request: Request) -> str:
    """A control request's checks, in order (HTTPException with a one-line reason): same origin; the
    token (401 missing, 403 wrong, 403 control off); the CSRF token for a browser's request. Returns
    how it came ("browser" or "script")."""
    cfg: DashboardConfig = request.app.state.cfg
    if not same_origin(request):
        raise HTTPException(403, "cross-origin control request refused")
    form = await _form(request)
    if cfg.token is None:
        raise HTTPException(403, "control is off: no control token is configured (TRADELAB_DASHBOARD_TOKEN)")
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else form.get("token") or None
    if not given:
        raise HTTPException(401, "control needs the token: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    if not _equal(given, cfg.token):
        raise HTTPException(403, "wrong control token")
    browser = bool(form) or "cookie" in request.headers or "origin" in request.headers
    if browser:
        cookie = request.state.csrf_cookie
        sent = request.headers.get("x-csrf-token") or form.get("csrf")
        if cookie is None or not _equal(sent, cookie):
            raise HTTPException(403, "missing or wrong CSRF token (reload the page)")
    request.state.form = form
    return "browser" if browser else "script"
