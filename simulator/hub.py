"""The simulator's event hub: the broker and the replay clock publish, the websocket streams listen.

Publishers (the matching engine, the replay clock) run in ordinary threads; subscribers are the
websocket handlers running on uvicorn's event loop. Each subscriber gets its own unbounded queue
of events in publish order, so a slow client never blocks the engine and never loses an event.
Kinds: ``"bar"`` (a dict shaped like Alpaca's market-data bar message, with the symbol) and
``"trade_update"`` (a dict shaped like Alpaca's ``trade_updates`` data: event, order, ...).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Subscription:
    """One listener: the kinds it wants and the queue its events arrive on (on its own loop)."""

    kinds: frozenset[str]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class Hub:
    """Thread-safe fan-out of simulator events to every subscriber of their kind.

    ``taps`` are plain callables called synchronously in the publisher's thread (tests use them
    to watch what was published without a websocket).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self.taps: list[Callable[[str, dict[str, Any]], None]] = []

    def subscribe(self, kinds: set[str] | frozenset[str]) -> Subscription:
        """Register a listener; call from the event loop that will read the queue."""
        sub = Subscription(frozenset(kinds), asyncio.get_running_loop())
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def publish(self, kind: str, event: dict[str, Any]) -> None:
        """Deliver ``event`` to every subscriber of ``kind`` (from any thread)."""
        with self._lock:
            subs = [s for s in self._subs if kind in s.kinds]
            taps = list(self.taps)
        for tap in taps:
            tap(kind, event)
        for s in subs:
            try:
                s.loop.call_soon_threadsafe(s.queue.put_nowait, (kind, event))
            except RuntimeError:  # the subscriber's loop is closed: it is gone
                self.unsubscribe(s)

    def publish_bar(self, bar: dict[str, Any]) -> None:
        self.publish("bar", bar)

    def publish_trade_update(self, update: dict[str, Any]) -> None:
        self.publish("trade_update", update)

    def subscribers(self, kind: str) -> int:
        """How many listeners want ``kind`` (tests wait for a stream to be connected)."""
        with self._lock:
            return sum(kind in s.kinds for s in self._subs)
