"""Alerts against a real HTTP receiver on 127.0.0.1: payload shape, retries, secrecy, never blocking."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from live_bridge.alerts import (
    Alert,
    LogNotifier,
    Notifier,
    Notifiers,
    Stats,
    WebhookNotifier,
    from_env,
    payload,
)

TOKEN_PATH = "/services/T000/B000/SECRET123"
FAST = {"backoff": 0.01, "timeout": 2.0}  # retries in ms, so the file stays fast


class Receiver:
    """A webhook endpoint that records each POST and answers from a script of statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict]] = []
        self.script: list[tuple[int, dict[str, str]]] = []  # popped per request; then 200
        self.hang = threading.Event()  # set: requests wait on `release` before answering
        self.release = threading.Event()
        self.got = threading.Event()
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rx.requests.append((self.path, dict(self.headers), body))
                rx.got.set()
                if rx.hang.is_set():
                    rx.release.wait(5)
                status, headers = rx.script.pop(0) if rx.script else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:  # the stdlib would print the path
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{TOKEN_PATH}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def messages(self) -> list[str]:
        return [body["alert"]["message"] for _, _, body in self.requests]


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.release.set()
    rx.server.shutdown()
    rx.server.server_close()


def dead_url() -> str:
    """A URL on a port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{TOKEN_PATH}"


def halt(message: str = "day loss 2.1% > 2.0%", **kw: object) -> Alert:
    return Alert("halt", message, symbol="AAPL", **kw)  # type: ignore[arg-type]


# --- Alert -------------------------------------------------------------------------------------------

def test_alert_defaults_to_now_in_utc_and_reads_as_one_line() -> None:
    a = halt()
    assert a.at is not None and a.at.tzinfo is not None and a.at.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - a.at).total_seconds()) < 5
    assert a.text() == "[warning] halt AAPL: day loss 2.1% > 2.0%"
    crashed = Alert("job_failed", "sweep crashed", severity="critical")
    assert crashed.text() == "[critical] job_failed: sweep crashed"


def test_alert_normalises_time_to_utc_and_freezes_extra() -> None:
    ny = timezone(timedelta(hours=-5))
    a = halt(at=datetime(2024, 3, 1, 10, 0, tzinfo=ny), extra={"loss_pct": 2.1})
    assert a.at == datetime(2024, 3, 1, 15, 0, tzinfo=UTC) and a.at.tzinfo is UTC
    with pytest.raises(TypeError):
        a.extra["loss_pct"] = 0  # type: ignore[index]


def test_alert_rejects_unknown_severity_by_name() -> None:
    with pytest.raises(ValueError, match="'urgent'"):
        halt(severity="urgent")


# --- payload ------------------------------------------------------------------------------------------

def test_webhook_posts_text_content_and_structured_alert(receiver: Receiver) -> None:
    # Arrange
    n = WebhookNotifier(receiver.url, **FAST)
    at = datetime(2024, 3, 1, 15, 0, tzinfo=UTC)
    # Act
    n.notify(halt(at=at, extra={"loss_pct": 2.1, "limit": 2.0}))
    n.close()
    # Assert
    [(path, headers, body)] = receiver.requests
    assert path == TOKEN_PATH and headers["Content-Type"] == "application/json"
    assert body["text"] == body["content"] == "[warning] halt AAPL: day loss 2.1% > 2.0%"
    assert body["allowed_mentions"] == {"parse": []}
    assert body["alert"] == {"kind": "halt", "severity": "warning", "symbol": "AAPL",
                             "message": "day loss 2.1% > 2.0%", "at": "2024-03-01T15:00:00+00:00",
                             "extra": {"loss_pct": 2.1, "limit": 2.0}}
    assert n.stats() == Stats(sent=1, failed=0, dropped=0)


def test_discord_content_is_truncated_to_2000_chars_slack_text_is_not(receiver: Receiver) -> None:
    n = WebhookNotifier(receiver.url, **FAST)
    n.notify(halt("x" * 5000))
    n.close()
    body = receiver.requests[0][2]
    assert len(body["content"]) == 2000 and body["content"].endswith("\u2026")
    assert body["text"] == halt("x" * 5000).text() and body["alert"]["message"] == "x" * 5000
    assert len(payload(halt("x" * 50_000))["text"]) == 40_000  # type: ignore[arg-type]


def test_extra_that_is_not_json_is_sent_as_strings(receiver: Receiver) -> None:
    n = WebhookNotifier(receiver.url, **FAST)
    n.notify(halt(extra={"when": datetime(2024, 3, 1, tzinfo=UTC)}))
    n.close()
    assert receiver.requests[0][2]["alert"]["extra"] == {"when": "2024-03-01 00:00:00+00:00"}


# --- retries and failures ---------------------------------------------------------------------------

def test_two_500s_then_200_delivers_after_retries(receiver: Receiver) -> None:
    receiver.script = [(500, {}), (500, {})]
    n = WebhookNotifier(receiver.url, **FAST)
    n.notify(halt())
    n.close()
    assert len(receiver.requests) == 3
    assert n.stats() == Stats(sent=1, failed=0, dropped=0)


def test_429_honours_a_small_retry_after(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "0.3"})]
    n = WebhookNotifier(receiver.url, **FAST)
    t0 = time.monotonic()
    n.notify(halt())
    n.close()
    assert time.monotonic() - t0 >= 0.3  # not the 0.01 s backoff
    assert n.stats().sent == 1 and len(receiver.requests) == 2


def test_a_4xx_is_final_and_counted_as_failed(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.script = [(404, {})]
    n = WebhookNotifier(receiver.url, **FAST)
    with caplog.at_level(logging.WARNING, logger="live_bridge.alerts"):
        n.notify(halt())
        n.close()
    assert len(receiver.requests) == 1  # a revoked hook is not hammered
    assert n.stats() == Stats(sent=0, failed=1, dropped=0)
    assert "HTTP 404" in caplog.text


def test_dead_port_does_not_raise_and_counts_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    n = WebhookNotifier(dead_url(), **FAST)
    with caplog.at_level(logging.WARNING, logger="live_bridge.alerts"):
        n.notify(halt())
        n.close()
    assert n.stats() == Stats(sent=0, failed=1, dropped=0)
    assert "ConnectionRefusedError after 3 tries" in caplog.text


# --- never blocking, bounded queue, bounded close ----------------------------------------------------

def test_notify_returns_fast_when_the_receiver_hangs(receiver: Receiver) -> None:
    receiver.hang.set()
    n = WebhookNotifier(receiver.url, **FAST)
    t0 = time.monotonic()
    for i in range(20):
        n.notify(halt(f"loss {i}"))
    assert time.monotonic() - t0 < 0.05
    t0 = time.monotonic()
    n.close(timeout=0.2)
    assert time.monotonic() - t0 < 1.0  # bounded: it did not wait for the hung request
    assert n.stats().dropped >= 19  # all but the one in flight


def test_full_queue_drops_the_oldest_and_counts_it(receiver: Receiver) -> None:
    receiver.hang.set()
    n = WebhookNotifier(receiver.url, max_queue=2, **FAST)
    n.notify(halt("a1"))
    assert receiver.got.wait(2)  # a1 is in flight, the queue is empty
    for m in ("a2", "a3", "a4", "a5"):
        n.notify(halt(m))
    receiver.hang.clear()
    receiver.release.set()
    n.close()
    assert receiver.messages() == ["a1", "a4", "a5"]
    assert n.stats() == Stats(sent=3, failed=0, dropped=2)


def test_notify_after_close_is_dropped_not_raised(receiver: Receiver) -> None:
    n = WebhookNotifier(receiver.url, **FAST)
    n.close()
    n.notify(halt())
    n.close()  # idempotent
    assert n.stats() == Stats(sent=0, failed=0, dropped=1) and receiver.requests == []


# --- the URL is a secret ----------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "ftp://hooks.example.com/services/T000/B000/SECRET123",
    "https:///services/T000/B000/SECRET123",
    "hooks.slack.com/services/T000/B000/SECRET123",
    "https://hooks.example.com:99999/services/T000/B000/SECRET123",
    "https://hooks.example.com/services/T000/B000/SECRET123 ",
    "https://[::1/services/T000/B000/SECRET123",
])
def test_bad_urls_are_rejected_without_echoing_the_token(url: str) -> None:
    with pytest.raises(ValueError, match="TRADELAB_ALERT_WEBHOOK must be an http") as e:
        WebhookNotifier(url)
    assert "SECRET123" not in str(e.value) and e.value.__cause__ is None


def test_url_never_in_logs_repr_or_str(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    # Arrange: a hook that fails (500s, then 404) and one that is dead
    receiver.script = [(500, {}), (500, {}), (500, {}), (404, {})]
    failing, dead = WebhookNotifier(receiver.url, **FAST), WebhookNotifier(dead_url(), **FAST)
    both = Notifiers(LogNotifier(), failing, dead)
    # Act
    with caplog.at_level(logging.DEBUG):
        for kind in ("halt", "order_rejected"):
            both.notify(Alert(kind, "boom", severity="critical"))
        both.close()
    # Assert
    assert failing.stats().failed == 2 and dead.stats().failed == 2
    assert "not delivered" in caplog.text and "SECRET123" not in caplog.text
    for obj in (failing, dead, both):
        assert "SECRET123" not in repr(obj) and "SECRET123" not in str(obj)
    assert repr(failing) == "WebhookNotifier(url=<redacted>)"


# --- log, fan-out, environment ----------------------------------------------------------------------

def test_log_notifier_logs_at_the_alert_severity(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tradelab.alerts"):
        for sev in ("info", "warning", "critical"):
            LogNotifier().notify(halt(severity=sev))
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("tradelab.alerts", logging.INFO), ("tradelab.alerts", logging.WARNING),
        ("tradelab.alerts", logging.CRITICAL)]
    assert caplog.records[0].getMessage() == "[info] halt AAPL: day loss 2.1% > 2.0%"


def test_fan_out_survives_a_sink_that_raises(receiver: Receiver) -> None:
    class Broken:
        def notify(self, alert: Alert) -> None:
            raise RuntimeError("sink down")

        def close(self, timeout: float = 5.0) -> None:
            raise RuntimeError("sink down")

    hook = WebhookNotifier(receiver.url, **FAST)
    both = Notifiers(Broken(), hook)
    both.notify(halt())
    both.close()
    assert hook.stats().sent == 1 and isinstance(both, Notifier)


def test_from_env_is_log_only_without_a_webhook() -> None:
    for env in ({}, {"TRADELAB_ALERT_WEBHOOK": ""}, {"TRADELAB_ALERT_WEBHOOK": "  "}):
        n = from_env(env)
        assert isinstance(n, Notifiers) and [type(x) for x in n.notifiers] == [LogNotifier]


def test_from_env_adds_the_webhook_and_validates_it(receiver: Receiver) -> None:
    n = from_env({"TRADELAB_ALERT_WEBHOOK": receiver.url})
    assert isinstance(n, Notifiers) and [type(x) for x in n.notifiers] == [LogNotifier, WebhookNotifier]
    n.notify(halt())
    n.close()
    assert receiver.messages() == ["day loss 2.1% > 2.0%"]
    with pytest.raises(ValueError) as e:
        from_env({"TRADELAB_ALERT_WEBHOOK": "file:///services/T000/B000/SECRET123"})
    assert "SECRET123" not in str(e.value)
