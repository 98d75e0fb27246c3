"""Alerts: tell a human, right away, when the live bridge halts, rejects, diverges or loses its data.

The runner and daemon build an ``Alert`` and hand it to a ``Notifier`` (the port). ``LogNotifier``
writes it to the ``tradelab.alerts`` logger; ``WebhookNotifier`` POSTs it to a Slack or Discord
incoming webhook from a background thread; ``Notifiers`` fans out to several; ``from_env`` builds
the usual pair from ``TRADELAB_ALERT_WEBHOOK``. ``notify`` never raises and never waits on the
network: a broken alert sink must never break trading.

Secrecy rule: a webhook URL carries its token in the path (Slack ``/services/T../B../<secret>``,
Discord ``/api/webhooks/<id>/<token>``); whoever reads it can post to the channel. It never appears
in a log line, an exception message, ``repr`` or ``str``. Delivery failures name only the HTTP
status or the exception class, never the exception's message (urllib and http.client put the URL
or its path in some of theirs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)  # the notifiers' own troubles; the alerts go to "tradelab.alerts"
ALERT_LOG = logging.getLogger("tradelab.alerts")
ENV_WEBHOOK = "TRADELAB_ALERT_WEBHOOK"
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}

# One body for both (from their docs and issue trackers, not tried against live hooks):
# * Slack reads `text` (400 no_text without it) and truncates past 40,000 chars with a warning
#   (api.slack.com/changelog/2018-04-truncating-really-long-messages); an extra `meta` object next to
#   `text` posts fine (github.com/hastic-zzz/hastic-server/issues/708): unknown keys are ignored.
# * Discord reads `content`, at most 2000 chars, else 400 BASE_TYPE_MAX_LENGTH (birdie0.github.io/
#   discord-webhooks-guide, github.com/3ventic/discord-rss/issues/4). Unknown keys are ignored too: a
#   body of only `text` or GitHub's event keys gets 400 50006 "Cannot send an empty message", not a
#   schema error (github.com/nwnxee/unified/issues/348, github.com/discord/discord-api-docs/issues/5424).
# So the structured `alert` rides along; `allowed_mentions` keeps an "@everyone" from pinging Discord.
SLACK_MAX, DISCORD_MAX = 40_000, 2000


@dataclass(frozen=True)
class Alert:
    """Something a human should see now; ``extra`` holds JSON-able details for machines."""

    kind: str
    message: str
    symbol: str | None = None
    severity: str = "warning"
    at: datetime | None = None
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.severity not in LEVELS:
            raise ValueError(f"Alert severity must be one of {', '.join(LEVELS)}, not {self.severity!r}")
        at = self.at or datetime.now(UTC)  # naive times are taken as UTC, like every bar timestamp
        object.__setattr__(self, "at", at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))  # frozen means frozen

    def text(self) -> str:
        """One human line: ``[warning] halt AAPL: day loss 2.1% ...``."""
        where = f" {self.symbol}" if self.symbol else ""
        return f"[{self.severity}] {self.kind}{where}: {self.message}"


@runtime_checkable
class Notifier(Protocol):
    def notify(self, alert: Alert) -> None: ...  # never raises, never blocks on network I/O
    def close(self, timeout: float = 5.0) -> None: ...  # flush what is queued (bounded), then stop


@dataclass(frozen=True, slots=True)
class Stats:
    """Delivery counts of a ``WebhookNotifier`` since it started."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0


def payload(alert: Alert) -> dict[str, object]:
    """The JSON body for Slack (`text`) and Discord (`content`), plus the structured alert."""
    line = alert.text()
    return {
        "text": _clip(line, SLACK_MAX),
        "content": _clip(line, DISCORD_MAX),
        "allowed_mentions": {"parse": []},
        "alert": {"kind": alert.kind, "severity": alert.severity, "symbol": alert.symbol,
                  "message": alert.message, "at": alert.at.isoformat() if alert.at else None,
                  "extra": dict(alert.extra)},
    }


def _clip(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "\u2026"


class LogNotifier:
    """Alerts as log records on ``tradelab.alerts``, at the level of their severity."""

    def notify(self, alert: Alert) -> None:
        with contextlib.suppress(Exception):  # an alert sink must never break trading
            ALERT_LOG.log(LEVELS.get(alert.severity, logging.WARNING), "%s", alert.text())

    def close(self, timeout: float = 5.0) -> None:
        """Nothing to flush: logging is synchronous."""

    def __repr__(self) -> str:
        return "LogNotifier()"


def _is_http_url(url: object) -> bool:
    """http(s) with a host and a valid port, and no whitespace (http.client's error would show the path)."""
    if not isinstance(url, str) or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _seconds(value: str | None) -> float | None:
    """A Retry-After in seconds; None for an HTTP date or garbage (then the normal backoff applies)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx is a misconfigured hook: fail it rather than re-send the alert elsewhere


class WebhookNotifier:
    """JSON POST per alert from one daemon thread; bounded queue that drops the oldest when full."""

    def __init__(self, url: str, *, timeout: float = 5.0, tries: int = 3, backoff: float = 0.5,
                 max_retry_after: float = 5.0, max_queue: int = 1000) -> None:
        if not _is_http_url(url):  # never echo the URL: its path and query hold the token
            raise ValueError(f"{ENV_WEBHOOK} must be an http(s) URL with a host") from None
        self._url, self._timeout, self._tries = url, timeout, max(1, tries)
        self._backoff, self._max_retry_after = backoff, max_retry_after
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._queue: deque[Alert] = deque(maxlen=max(1, max_queue))
        self._cv, self._closed = threading.Condition(), False
        self._sent = self._failed = self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="tradelab-alerts-webhook", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return "WebhookNotifier(url=<redacted>)"

    def notify(self, alert: Alert) -> None:
        """Queue the alert and return at once; a full queue drops its oldest alert."""
        with contextlib.suppress(Exception), self._cv:  # an alert sink must never break trading
            if self._closed or len(self._queue) == self._queue.maxlen:
                self._dropped += 1
            if not self._closed:
                self._queue.append(alert)
                self._cv.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued for up to ``timeout`` seconds, then drop the rest and stop."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)
        with self._cv:
            left, self._dropped = len(self._queue), self._dropped + len(self._queue)
            self._queue.clear()
        if left:
            log.warning("alert webhook closed with %d alert(s) unsent", left)

    def stats(self) -> Stats:
        """How many alerts were sent, failed after their retries, or dropped unsent."""
        with self._cv:
            return Stats(self._sent, self._failed, self._dropped)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                alert = self._queue.popleft()
            try:
                ok, why = self._deliver(json.dumps(payload(alert), default=str).encode())
            except Exception as e:  # noqa: BLE001 - the worker must outlive any one alert
                ok, why = False, type(e).__name__
            with self._cv:
                self._sent, self._failed = self._sent + ok, self._failed + (not ok)
            if not ok:
                log.warning("alert %r not delivered to the webhook: %s", alert.kind, why)

    def _deliver(self, body: bytes) -> tuple[bool, str]:
        """POST with retries on network errors, 429 and 5xx; other statuses are final."""
        why = ""
        for attempt in range(self._tries):
            status, retry_after, why = self._post(body)
            if status is not None and 200 <= status < 300:
                return True, why
            if status is not None and status < 500 and status != 429:
                return False, why  # a bad payload or a revoked hook does not heal by retrying
            if attempt + 1 < self._tries:
                wait = self._backoff * 2**attempt
                if retry_after is not None and 0 <= retry_after <= self._max_retry_after:
                    wait = retry_after
                time.sleep(wait)
        return False, f"{why} after {self._tries} tries"

    def _post(self, body: bytes) -> tuple[int | None, float | None, str]:
        """One POST: (status or None, Retry-After seconds or None, a reason free of the URL)."""
        req = urllib.request.Request(self._url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                resp.read()
                return resp.status, None, f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            e.close()
            return e.code, _seconds(e.headers.get("Retry-After") if e.headers else None), f"HTTP {e.code}"
        except Exception as e:  # noqa: BLE001 - name the class only: messages can embed the URL
            cause = e.reason if isinstance(e, urllib.error.URLError) else e
            return None, None, type(cause if isinstance(cause, BaseException) else e).__name__


class Notifiers:
    """Fan-out: every alert to every notifier; one failing sink does not starve the others."""

    def __init__(self, *notifiers: Notifier) -> None:
        self.notifiers = tuple(notifiers)

    def __repr__(self) -> str:
        return f"Notifiers({', '.join(map(repr, self.notifiers))})"

    def notify(self, alert: Alert) -> None:
        for n in self.notifiers:
            with contextlib.suppress(Exception):  # a sink that breaks its promise must not starve the rest
                n.notify(alert)

    def close(self, timeout: float = 5.0) -> None:
        """Close each notifier within one shared ``timeout``."""
        deadline = time.monotonic() + timeout
        for n in self.notifiers:
            with contextlib.suppress(Exception):
                n.close(max(0.0, deadline - time.monotonic()))


def from_env(environ: Mapping[str, str]) -> Notifier:
    """Log always; also the webhook when ``TRADELAB_ALERT_WEBHOOK`` is set (ValueError if malformed)."""
    url = environ.get(ENV_WEBHOOK, "").strip()
    return Notifiers(LogNotifier(), WebhookNotifier(url)) if url else Notifiers(LogNotifier())
