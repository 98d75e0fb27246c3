"""What every module of the Alpaca adapter shares: tuned alpaca-py REST clients, one error type, and
the translation of alpaca-py's order model into ``ports.OrderAck``.

Alpaca quirks handled here, because a runner trips on each of them:

* **Retries.** alpaca-py retries the statuses in ``_retry_codes`` ``_retry`` times (3), sleeping
  ``_retry_wait`` seconds (3) in between; its defaults are 429 and 504 only, so a lone 500 or 503
  failed a read and lost the runner's decisions on that bar. We retry :data:`RETRY_STATUSES`;
  that is safe for orders because every order carries a client_order_id (``broker.py``). Its
  constructor ignores a wait of 0, so we set the attributes directly (``retry_attempts`` /
  ``retry_wait``). Alpaca sends no Retry-After on 429. Every such answer is logged (a warning
  naming the status and the path), retried or not.
* **Timeouts.** alpaca-py's ``requests.Session`` has no timeout at all: a half-open socket would
  hang the runner forever. We mount an adapter that applies ``timeout`` to every request and
  retries a GET or DELETE that got no answer (``retry_attempts`` times: both are idempotent; a
  DELETE of an order already cancelled answers 422, which ``AlpacaBroker.cancel`` resolves).
* **Errors.** Every alpaca-py error leaves the adapter as one :class:`BrokerError` carrying the
  broker's status, code and message (status 0 when no answer came), never alpaca-py's own error
  with the request (and its key headers) attached.
* **Keys.** alpaca-py keeps the keys on its clients, and the ``websockets`` library logs every
  frame at DEBUG, the auth frame (with the keys) included. Nothing here logs a client, reprs
  show no key, and stream sockets get a logger that never logs frames (:func:`ws_params`).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from alpaca.common.exceptions import APIError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import ports
from ..ports import OrderAck

log = logging.getLogger(__name__)

MAX_ORDERS = 500  # Alpaca's largest page of GET /v2/orders
#: Answers alpaca-py retries (its default is 429 and 504): rate limits and transient server errors.
RETRY_STATUSES = (429, 500, 502, 503, 504)


class BrokerError(ports.BrokerError):
    """A refusal or failure from Alpaca: ``status`` (0 when no HTTP answer came), code, message."""


def broker_error(err: APIError) -> BrokerError:
    """The BrokerError for an alpaca-py APIError (its text is the JSON body Alpaca sent)."""
    text = str(err)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):  # not Alpaca's JSON (a proxy's HTML 502, say)
        body = {"message": text[:200] or "no message"}
    return BrokerError(err.status_code or 0, body.get("code"), str(body.get("message", text[:200])))


def network_error(err: requests.RequestException) -> BrokerError:
    """A BrokerError for a request that got no answer (its text names the URL, never a header)."""
    return BrokerError(0, None, f"no answer from Alpaca: {type(err).__name__}: {err}")


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout (alpaca-py sends none) and retries idempotent ones left unanswered."""

    def __init__(self, timeout: float, retries: int = 0) -> None:
        # Only answer-less failures: statuses are alpaca-py's to retry (RETRY_STATUSES). urllib3
        # retries a refused connection for any method (nothing was sent) and a read timeout or a
        # reset only for GET and DELETE; a POST without an answer goes to AlpacaBroker._submit.
        super().__init__(max_retries=Retry(total=retries, connect=retries, read=retries, status=0, other=0,
                                           redirect=False, allowed_methods=frozenset({"GET", "DELETE"}),
                                           respect_retry_after_header=False, raise_on_status=False))
        self.timeout = timeout

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 - requests' signature
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def _log_retryable(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A requests response hook: every answer in RETRY_STATUSES is a fault worth a line in the log."""
    if response.status_code in RETRY_STATUSES:
        log.warning("Alpaca answered %s to %s %s", response.status_code, response.request.method,
                    urlsplit(response.url).path)  # the path only: no query, and headers never


def tune_rest_client(client: Any, *, retry_attempts: int, retry_wait: float, timeout: float) -> None:
    """Set the retry policy (RETRY_STATUSES, unanswered GET/DELETE), a request timeout and the fault log
    on an alpaca-py REST client (see module doc)."""
    client._retry = max(0, int(retry_attempts))
    client._retry_wait = max(0.0, float(retry_wait))
    client._retry_codes = list(RETRY_STATUSES)
    adapter = _TimeoutAdapter(timeout, client._retry)
    client._session.mount("http://", adapter)
    client._session.mount("https://", adapter)
    if _log_retryable not in client._session.hooks["response"]:
        client._session.hooks["response"].append(_log_retryable)


def rest_url_for(ws_url: str | None) -> str | None:
    """The REST base of a websocket endpoint on the same host (ws://h:p/stream -> http://h:p).

    Trading's stream lives on its REST host (wss://paper-api.alpaca.markets/stream), and so does
    every simulator endpoint; market data does not, so the bar feed never guesses.
    """
    if ws_url is None:
        return None
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class _NoFrameLogger(logging.LoggerAdapter):
    """A logger for ``websockets`` that never logs at DEBUG (where it dumps frames: the auth frame
    carries the keys) and blanks the keys out of anything it does log."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__(logging.getLogger("live_bridge.alpaca.websocket"), {})
        self._secrets = tuple(s for s in secrets if s)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        kwargs.pop("extra", None)
        self.logger.log(level, text, **kwargs)


def ws_params(*secrets: str) -> dict[str, Any]:
    """alpaca-py's default websocket parameters plus the key-safe logger (they replace, not merge)."""
    return {"ping_interval": 10, "ping_timeout": 180, "max_queue": 1024, "logger": _NoFrameLogger(secrets)}


def to_float(x: object) -> float | None:
    """A number alpaca-py hands over as a string (or None, or "") as a float or None."""
    return None if x is None or x == "" else float(x)


def to_utc(t: datetime) -> datetime:
    """An alpaca-py time as timezone-aware UTC (a naive one is UTC already)."""
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def enum_str(x: Any) -> str:
    """An alpaca-py enum (or a plain string) as its string value."""
    return str(getattr(x, "value", x))


def order_ack(o: Any, parent: str | None = None) -> OrderAck:
    """The port's view of an alpaca-py ``Order`` (numbers arrive as strings), with its legs if any."""
    return OrderAck(
        id=str(o.id), client_order_id=o.client_order_id, symbol=o.symbol, side=enum_str(o.side),
        qty=to_float(o.qty) or 0.0, filled_qty=to_float(o.filled_qty) or 0.0,
        filled_avg_price=to_float(o.filled_avg_price) or None, status=enum_str(o.status),
        type=enum_str(o.type or o.order_type), stop_price=to_float(o.stop_price), limit_price=to_float(o.limit_price),
        submitted_at=to_utc(o.submitted_at or o.created_at),
        legs=tuple(order_ack(leg, o.client_order_id) for leg in getattr(o, "legs", None) or ()), parent=parent)

