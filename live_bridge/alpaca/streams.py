"""What both Alpaca feeds are made of: an alpaca-py stream in its own thread, and one worker thread.

The stream thread only queues what arrives; the worker alone dedupes, polls and calls back, so a
feed's callbacks run in one thread, one at a time. Why a worker that polls: alpaca-py never tells
its caller that a socket dropped. It logs, waits 0.5-1 s (doubling to 30 s on repeated failures)
and reconnects, and whatever Alpaca sent in between is gone for good. A socket can also stay
connected and go mute. The feeds (``feeds.py``) notice the gap and fill it from REST in ``_tick``.

alpaca-py internals read here (pinned by tests/live_bridge/test_alpaca_adapter.py, alpaca-py 0.44):
``_ws``/``_running`` say whether a connection is up, and a new ``_ws`` means a reconnect;
``_loop`` is where ``stop_ws()``/``close()`` must run; ``_reconnect_min_backoff`` is the first
reconnect wait. ``stop()`` alone only takes effect between 5 s receive timeouts, so ``close()``
follows it to end the stream at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# One logger for the feeds' lines (this module and feeds.py): log filters and tests/chaos select by it.
log = logging.getLogger("live_bridge.alpaca.feeds")


@dataclass(frozen=True, slots=True)
class FeedStats:
    """What a feed did so far: items delivered by source, duplicates dropped, REST polls made."""

    mode: str  # "stream" or "poll"
    connected: bool
    from_stream: int
    from_poll: int
    duplicates: int
    polls: int


class StreamThread:
    """An alpaca-py stream in a daemon thread, and what can be seen of its connection."""

    def __init__(self, stream: Any, name: str, reconnect_backoff: float) -> None:
        self.stream = stream
        stream._reconnect_min_backoff = reconnect_backoff
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.stream.run()
        except Exception:  # noqa: BLE001 - a dead stream thread must not pass silently
            log.exception("%s ended with an error", self._thread.name)

    def start(self) -> None:
        self._thread.start()

    @property
    def session(self) -> int | None:
        """An id of the live, authenticated connection (new after each reconnect); None while down."""
        ws = getattr(self.stream, "_ws", None)
        return id(ws) if ws is not None and getattr(self.stream, "_running", False) else None

    def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while getattr(self.stream, "_loop", None) is None and self._thread.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        loop = getattr(self.stream, "_loop", None)
        if loop is not None and loop.is_running():
            for step in (self.stream.stop_ws, self.stream.close):  # close() wakes the 5 s recv at once
                try:
                    asyncio.run_coroutine_threadsafe(step(), loop).result(max(0.1, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001 - the loop may end under us: that is the goal
                    break
        self._thread.join(max(0.1, deadline - time.monotonic()))


class FeedWorker:
    """The worker shared by both feeds: drain the stream queue, then ``_tick`` (poll if needed)."""

    def __init__(self, stream: StreamThread, name: str, check_interval: float) -> None:
        self._stream, self._name, self._check = stream, name, check_interval
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._loop, name=f"{name}-worker", daemon=True)
        self._mode, self._counts = "stream", dict.fromkeys(("stream", "poll", "dup", "polls"), 0)
        self._last_poll = -float("inf")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self._mode!r}, connected={self.connected})"

    @property
    def connected(self) -> bool:
        """Whether the stream is connected and authenticated right now."""
        return self._stream.session is not None

    @property
    def mode(self) -> str:
        """"stream" while the stream delivers, "poll" while REST fills in for it."""
        return self._mode

    def stats(self) -> FeedStats:
        c = self._counts
        return FeedStats(self._mode, self.connected, c["stream"], c["poll"], c["dup"], c["polls"])

    def start(self) -> FeedWorker:
        """Connect the stream and start the worker; returns self."""
        self._stream.start()
        self._worker.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker and the stream, waiting at most about ``timeout`` seconds."""
        self._stop.set()
        self._stream.stop(timeout)
        if self._worker.is_alive():
            self._worker.join(timeout)

    def __enter__(self) -> FeedWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=self._check)
            except queue.Empty:
                item = None
            if self._stop.is_set():  # stopping closes the stream: that is no outage to poll for
                return
            try:
                if item is not None:
                    self._handle(item)
                self._tick()
            except Exception:  # noqa: BLE001 - the worker must outlive one bad item or callback
                log.exception("%s worker error", self._name)

    def _call(self, fn: Callable[[Any], None], value: Any) -> None:
        try:
            fn(value)
        except Exception:  # noqa: BLE001
            log.exception("%s callback failed on %s", self._name, value)

    def _handle(self, item: Any) -> None:
        raise NotImplementedError

    def _tick(self) -> None:
        raise NotImplementedError
