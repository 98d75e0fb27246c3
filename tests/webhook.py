"""A real HTTP receiver on loopback standing in for Slack or Discord: alerts reach it through the real
webhook sink of live_bridge/alerts.py (TRADELAB_ALERT_WEBHOOK). No mock of our own code."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def receiver(path: str = "/hooks/T000/SECRET-HOOK") -> Iterator[tuple[str, list[dict]]]:
    """(its URL, the JSON bodies it got, in order); the path plays the secret token of a real hook."""
    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}", got
    finally:
        server.shutdown()
