"""Broker calls off the decision thread: one symbol's calls in order, different symbols in parallel.

The runner decides on one worker thread; a REST round trip (5 ms on loopback, more to Alpaca) must
not make the next symbol's decision wait. ``Sender.call(symbol, fn, done)`` runs ``fn`` on a small
thread pool after every earlier call of the same symbol has finished (a stop's cancel before the
exit that replaces it, an exit before a re-entry), and hands ``done(result, error)`` the outcome;
the runner's ``done`` puts it back on its own queue, so the state store keeps one writer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait


class Sender:
    """A per-symbol serial, cross-symbol parallel executor (see the module docstring)."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sender")
        self._last: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        ready = threading.Barrier(workers + 1)  # start every thread now, not on the first order's path
        for _ in range(workers):
            self._pool.submit(ready.wait, 10)
        ready.wait(10)

    def call(self, symbol: str, fn: Callable[[], object], done: Callable[[object, BaseException | None], None]) -> None:
        """Run ``fn`` after the symbol's earlier calls; then ``done(result, None)`` or ``done(None, error)``."""
        with self._lock:
            prev = self._last.get(symbol)
            prev = None if prev is None or prev.done() else prev
            self._pending += 1

        def run() -> None:
            if prev is not None:
                wait([prev])  # submitted earlier, so already running or ahead in the pool's FIFO queue
            try:
                try:
                    result, error = fn(), None
                except BaseException as exc:  # noqa: BLE001 - handed to done, which logs it
                    result, error = None, exc
                done(result, error)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

        with self._lock:
            self._last[symbol] = self._pool.submit(run)

    @property
    def pending(self) -> int:
        return self._pending

    def drain(self, timeout: float) -> bool:
        """Wait until every call has finished (its ``done`` included); False on timeout."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = end - time.monotonic()
                if left <= 0 or not self._idle.wait(left):
                    return self._pending == 0
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.drain(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
