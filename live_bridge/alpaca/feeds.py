"""Alpaca's two streams with a REST fallback: minute bars (AlpacaBarFeed) and fills (AlpacaFillFeed).

Each feed is a ``streams.FeedWorker`` over an alpaca-py stream: the worker notices a gap (the
connection state for both; an overdue bar for bars) and fills it from REST.

**Fill dedup rule.** The feed keeps, per client_order_id, the cumulative quantity it has emitted
as fills and their total notional. Every order it sees (in a stream event or a poll) is compared
with that: only an increase of ``filled_qty`` is emitted, as one Fill of the increment. A stream
event whose ``qty`` is exactly that increment keeps its ``execution_id`` and ``price``. Any other
increase (a poll, or an event after missed or reordered ones) is ``ports.synthetic_fill``: the id
``<order id>:<cum qty>`` and the price that makes the emitted notional add up to ``filled_qty *
filled_avg_price``. Repeated, late and out-of-order updates therefore never count twice or go
backwards. The counter lives in the process: after a restart, ``seed()`` it from the state store
before ``start()``, or fills counted under stream ids would be emitted again under synthetic ids.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest
from alpaca.trading.stream import TradingStream

from data_lake.calendar import US_PER_MIN, nyse

from ..ports import Fill, LiveBar, OrderAck, OrderUpdate, status_can_follow, synthetic_fill
from .client import MAX_ORDERS, broker_error, network_error, order_ack, rest_url_for, tune_rest_client, ws_params
from .streams import FeedWorker, StreamThread

log = logging.getLogger(__name__)

EPS = 1e-9
_EPOCH, _US = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)


def _us(t: datetime) -> int:  # exact integers: float seconds can be a microsecond off
    return ((t if t.tzinfo else t.replace(tzinfo=UTC)) - _EPOCH) // _US


def _dt(us: int) -> datetime:
    return _EPOCH + us * _US


# ------------------------------------------------------------------------------------------- bars
def expected_bar(now_us: int, sessions: Any = None) -> int | None:
    """The start of the latest regular-session minute bar complete at ``now_us`` (None before any)."""
    s = sessions or nyse()
    i = int(np.searchsorted(s.open_us, now_us, side="right")) - 1
    if i < 0:
        return None
    end = min(now_us, int(s.close_us[i]))
    t = end // US_PER_MIN * US_PER_MIN - US_PER_MIN
    if t >= int(s.open_us[i]):
        return t
    return int(s.close_us[i - 1]) - US_PER_MIN if i > 0 else None


def _live_bar(b: Any) -> LiveBar:
    ts = b.timestamp.astimezone(UTC) if b.timestamp.tzinfo else b.timestamp.replace(tzinfo=UTC)
    return LiveBar(b.symbol, ts, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume),
                   None if b.vwap is None else float(b.vwap),
                   None if b.trade_count is None else float(b.trade_count))


class AlpacaBarFeed(FeedWorker):
    """Minute bars for ``symbols`` from StockDataStream, filled from REST when the stream fails.

    Each (symbol, minute) reaches ``on_bar`` once, in time order per symbol, from ``since`` (default:
    the bar in progress at ``start()``) on. A bar is due when its minute has ended inside a
    regular session (by ``now()``, default the wall clock: pass the replay clock's time to drive
    a replay). If the stream is down while a bar is due, or a due bar has not arrived
    ``stale_after`` seconds later, the feed polls ``GET /v2/stocks/bars`` every ``poll_interval``
    seconds until every symbol is caught up. A stream bar that follows a gap after such an outage
    first fetches the gap. Alpaca streams only minute bars: aggregate longer ones downstream.
    """

    def __init__(self, api_key: str, secret_key: str, symbols: list[str] | tuple[str, ...],
                 timeframe: str = "1Min", *, on_bar: Callable[[LiveBar], None], feed: str = "iex",
                 url_override_ws: str | None = None, url_override_rest: str | None = None,
                 poll_interval: float = 5.0, stale_after: float = 10.0, since: datetime | None = None,
                 now: Callable[[], datetime] | None = None, check_interval: float = 0.05,
                 reconnect_backoff: float = 1.0, retry_attempts: int = 3, retry_wait: float = 3.0,
                 timeout: float = 10.0) -> None:
        if timeframe != "1Min":
            raise ValueError(f"Alpaca streams 1Min bars only, got {timeframe!r}: aggregate downstream")
        self.symbols = tuple(dict.fromkeys(s.upper() for s in symbols))
        if not self.symbols:
            raise ValueError("a bar feed needs at least one symbol")
        if url_override_ws is not None and url_override_rest is None:  # never guess: the hosts differ
            raise ValueError("with url_override_ws give url_override_rest too (Alpaca streams market "
                             "data from stream.data.alpaca.markets and serves bars from data.alpaca.markets)")
        self.on_bar, self.poll_interval, self.stale_after = on_bar, poll_interval, stale_after
        self._feed = DataFeed(feed)
        stream = StockDataStream(api_key, secret_key, feed=self._feed, url_override=url_override_ws,
                                 websocket_params=ws_params(api_key, secret_key))
        stream.subscribe_bars(self._on_stream_bar, *self.symbols)
        self._rest = StockHistoricalDataClient(api_key, secret_key, url_override=url_override_rest)
        tune_rest_client(self._rest, retry_attempts=retry_attempts, retry_wait=retry_wait, timeout=timeout)
        self._now = now or (lambda: datetime.now(UTC))
        self._since = None if since is None else _us(since)
        self._last: dict[str, int] = {}  # last delivered bar start per symbol
        self._covered: dict[str, int] = {}  # delivered, or confirmed absent by a poll, up to here
        self._epoch, self._epoch_seen = 0, {}  # outages so far; the outage count at each last delivery
        self._due_since: float | None = None
        super().__init__(StreamThread(stream, "alpaca-bars", reconnect_backoff), "bar feed", check_interval)

    def start(self) -> AlpacaBarFeed:
        if self._since is None:
            self._since = _us(self._now()) // US_PER_MIN * US_PER_MIN
        return super().start()  # type: ignore[return-value]

    async def _on_stream_bar(self, bar: Any) -> None:  # alpaca-py's loop: hand over, nothing else
        self._queue.put(_live_bar(bar))

    def _floor(self, symbol: str) -> int:
        return self._last.get(symbol, self._since - US_PER_MIN)

    def _handle(self, bar: LiveBar) -> None:
        ts = _us(bar.ts)
        if ts <= self._floor(bar.symbol):
            self._counts["dup"] += 1
            return
        if self._epoch_seen.get(bar.symbol, 0) < self._epoch and ts > self._floor(bar.symbol) + US_PER_MIN:
            self._poll([bar.symbol], until=ts)  # the outage may have hidden bars before this one
        self._deliver(bar, "stream")

    def _deliver(self, bar: LiveBar, source: str) -> None:
        ts = _us(bar.ts)
        self._last[bar.symbol] = ts
        self._covered[bar.symbol] = max(self._covered.get(bar.symbol, ts), ts)
        self._epoch_seen[bar.symbol] = self._epoch
        self._counts[source] += 1
        if source == "stream":
            self._mode = "stream"
        self._call(self.on_bar, bar)

    def _tick(self) -> None:
        expected = expected_bar(_us(self._now()))
        lagging = [] if expected is None or expected < self._since else \
            [s for s in self.symbols if self._covered.get(s, self._since - US_PER_MIN) < expected]
        if not lagging:
            self._due_since = None
            return
        now = time.monotonic()
        if self._due_since is None:
            self._due_since = now
        down, stale = not self.connected, now - self._due_since >= self.stale_after
        if (down or stale) and now - self._last_poll >= self.poll_interval:
            if self._mode == "stream":
                log.warning("bar stream %s: polling REST every %.1fs", "down" if down else "late",
                            self.poll_interval)
            self._mode = "poll"
            self._epoch += 1
            self._poll(lagging, expected=expected)

    def _poll(self, symbols: list[str], expected: int | None = None, until: int | None = None) -> None:
        """Deliver REST bars after each symbol's last one (before ``until``); mark ``expected`` covered."""
        self._last_poll = time.monotonic()
        self._counts["polls"] += 1
        start = min(self._floor(s) for s in symbols) + US_PER_MIN
        request = StockBarsRequest(symbol_or_symbols=list(symbols), timeframe=TimeFrame.Minute, feed=self._feed,
                                   start=_dt(start), end=None if until is None else _dt(until - 1))
        try:
            data = self._rest.get_stock_bars(request).data
        except APIError as err:
            log.warning("bar poll failed: %s", broker_error(err))
            return
        except requests.RequestException as err:
            log.warning("bar poll failed: %s", network_error(err))
            return
        for s in symbols:
            for bar in sorted((_live_bar(b) for b in data.get(s, ())), key=lambda b: b.ts):
                if _us(bar.ts) > self._floor(s):
                    self._deliver(bar, "poll")
            if expected is not None:
                self._covered[s] = max(self._covered.get(s, expected), expected)


# ------------------------------------------------------------------------------------------ fills
class AlpacaFillFeed(FeedWorker):
    """Fills and order updates from TradingStream's trade_updates, polled from REST when it is down.

    ``on_update`` gets a ``ports.Fill`` per execution (see the module doc for the dedup rule) and
    an :class:`OrderUpdate` per forward change of an order (a terminal status is final, filled_qty
    never drops, an order never goes back to new); a fill event gives the Fill first. While the
    stream is down the feed polls every ``poll_interval`` s. After each (re)connect it polls at
    once for what the gap hid and once more ``poll_interval`` s later (``mode`` is "stream" from
    then on), and every ``reconcile_interval`` s while up (None: never), since a connected stream
    can still lose or hold back an event. A poll reads the open orders, the closed ones submitted
    within ``lookback`` of the newest order seen (of the broker's clock at the first poll: broker
    time, so replays work), and by id any order seen open that neither list holds: 2-3 requests
    of Alpaca's 200 a minute.
    """

    def __init__(self, api_key: str, secret_key: str, *, on_update: Callable[[Fill | OrderUpdate], None],
                 paper: bool = True, url_override_ws: str | None = None, url_override_rest: str | None = None,
                 poll_interval: float = 3.0, reconcile_interval: float | None = 60.0,
                 lookback: timedelta = timedelta(days=1), check_interval: float = 0.05,
                 reconnect_backoff: float = 1.0, retry_attempts: int = 3, retry_wait: float = 3.0,
                 timeout: float = 10.0) -> None:
        self.on_update, self.poll_interval, self.reconcile_interval = on_update, poll_interval, reconcile_interval
        stream = TradingStream(api_key, secret_key, paper=paper, url_override=url_override_ws,
                               websocket_params=ws_params(api_key, secret_key))
        stream.subscribe_trade_updates(self._on_stream_update)
        self._rest = TradingClient(api_key, secret_key, paper=paper,
                                   url_override=url_override_rest or rest_url_for(url_override_ws))
        tune_rest_client(self._rest, retry_attempts=retry_attempts, retry_wait=retry_wait, timeout=timeout)
        self._lookback, self._since = lookback, None
        self._lock = threading.Lock()
        self._filled: dict[str, tuple[float, float]] = {}  # cid -> (emitted qty, emitted notional)
        self._status: dict[str, tuple[str, float]] = {}  # cid -> (status, filled_qty) last emitted
        self._watch: dict[str, str] = {}  # order id -> cid of orders last seen open
        self._session: int | None = None  # the connection the last catch-up poll covered
        self._down, self._poll_ok, self._confirm_at = True, True, None
        super().__init__(StreamThread(stream, "alpaca-trade-updates", reconnect_backoff), "fill feed",
                         check_interval)
        self._mode = "poll"  # until the first catch-up poll on a connected stream

    def seed(self, client_order_id: str, filled_qty: float, avg_price: float | None = None) -> None:
        """Declare fills already counted for an order (from the state store) so they are not re-emitted."""
        with self._lock:
            self._filled[client_order_id] = (float(filled_qty), float(filled_qty) * float(avg_price or 0.0))

    def watch(self, order_id: str, client_order_id: str) -> None:
        """Look this order up by id at every poll until it is seen terminal (the state store's open
        orders after a restart): one that fills before the stream is subscribed, and was submitted
        before the closed-orders window, is found anyway."""
        with self._lock:
            self._watch[str(order_id)] = client_order_id

    async def _on_stream_update(self, update: Any) -> None:  # alpaca-py's loop: hand over, nothing else
        self._queue.put(update)

    def _handle(self, u: Any) -> None:
        eid = None if u.execution_id is None else str(u.execution_id)
        self._observe(u.order, str(getattr(u.event, "value", u.event)), u.timestamp, "stream", eid, u.qty, u.price)

    def _observe(self, o: Any, event: str, at: datetime, source: str, eid: str | None = None,
                 qty: float | None = None, price: float | None = None) -> None:
        ack, at = order_ack(o), at.astimezone(UTC)
        cid = ack.client_order_id
        with self._lock:
            done_qty, done_notional = self._filled.get(cid, (0.0, 0.0))
        step = ack.filled_qty - done_qty
        if step > EPS:
            if eid and qty and price and abs(qty - step) <= EPS:  # exactly the next execution: the stream's own
                fill = Fill(eid, ack.id, cid, ack.symbol, ack.side, step, price, at)
            else:
                fill = synthetic_fill(ack, done_qty, done_notional, at)
            if fill is None or fill.price <= 0:
                log.warning("order %s: filled %s with no usable price; fill not emitted yet", cid, ack.filled_qty)
            else:
                with self._lock:
                    self._filled[cid] = (ack.filled_qty, done_notional + step * fill.price)
                self._counts[source] += 1
                self._call(self.on_update, fill)
        elif source == "stream" and event in ("fill", "partial_fill"):
            self._counts["dup"] += 1
        if self._moves_forward(cid, ack):
            self._status[cid] = (ack.status, ack.filled_qty)
            self._call(self.on_update, OrderUpdate(event, ack, at))
        elif source == "stream":  # repeated, late (a poll saw it first) or out of order: logged only
            log.info("trade update %s of %s (%s, filled %g) is no news: ignored", event, cid, ack.status,
                     ack.filled_qty)
        if ack.is_terminal:
            self._watch.pop(ack.id, None)
        else:
            self._watch[ack.id] = cid

    def _moves_forward(self, cid: str, ack: OrderAck) -> bool:
        prev = self._status.get(cid)
        if prev is None:
            return True
        status, filled = prev
        return not ((status, filled) == (ack.status, ack.filled_qty) or not status_can_follow(status, ack.status)
                    or ack.filled_qty < filled - EPS)

    def _tick(self) -> None:
        now, session = time.monotonic(), self._stream.session
        waited = now - self._last_poll
        if session is None:
            if not self._down and self._session is not None:
                log.warning("trade stream down: polling orders every %.1fs", self.poll_interval)
            self._down, self._mode, self._confirm_at = True, "poll", None
            if waited >= self.poll_interval:
                self._poll()
        elif self._down or session != self._session:
            # (Re)connected: poll at once for what the gap hid, and once more a poll_interval
            # later, for an update sent before Alpaca had taken our "listen".
            if (self._poll_ok or waited >= self.poll_interval) and self._poll():
                self._down, self._session, self._confirm_at = False, session, now + self.poll_interval
        elif self._confirm_at is not None:
            if now >= self._confirm_at:
                self._confirm_at = None if self._poll() else now + self.poll_interval
                self._mode = "poll" if self._confirm_at else "stream"
        elif self.reconcile_interval is not None and waited >= self.reconcile_interval:
            self._poll()

    def _poll(self) -> bool:
        """Observe every order that may have changed; False if Alpaca could not be read."""
        self._last_poll, self._poll_ok = time.monotonic(), False
        self._counts["polls"] += 1
        try:
            if self._since is None:
                self._since = self._rest.get_clock().timestamp - self._lookback
            found = {}
            for query in (GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=MAX_ORDERS, nested=False),
                          GetOrdersRequest(status=QueryOrderStatus.CLOSED, limit=MAX_ORDERS, nested=False,
                                           after=self._since, direction=Sort.DESC)):
                found.update((str(o.id), o) for o in self._rest.get_orders(query))
            for oid in [oid for oid in self._watch if oid not in found]:
                found[oid] = self._rest.get_order_by_id(oid)
        except APIError as err:
            log.warning("order poll failed: %s", broker_error(err))
            return False
        except requests.RequestException as err:
            log.warning("order poll failed: %s", network_error(err))
            return False
        for o in sorted(found.values(), key=lambda o: (o.updated_at or o.submitted_at, o.submitted_at)):
            self._observe(o, "poll", o.filled_at or o.updated_at or o.submitted_at, "poll")
        if found:  # the window follows the broker's time: open and watched orders are read anyway
            self._since = max(self._since, max(o.submitted_at for o in found.values()) - self._lookback)
        self._poll_ok = True
        return True
