"""The simulator's notion of now: a replay clock over recorded bars, and Alpaca's clock/calendar.

In a replay, wall time never matters. ``now`` starts at the first bar's open; each ``step()``
moves it to the close of the next bar (the next distinct bar close over all symbols), which

1. makes those bars visible (``store`` never serves a bar whose close is after ``now``, so
   GET /v2/stocks/bars cannot leak the future);
2. hands them to the listeners (the broker's matching engine) via ``on_bars``;
3. publishes them on the hub as Alpaca stream bars (``{"T": "b", "S", "t", "o", ...}``);
4. passes any session close reached before the next bar (``on_session_close``: day orders expire).

A daily bar (stamped 00:00 New York, as the lake stores it) trades from its session's open to its
close, so a daily replay rests at 16:00 (13:00 on half days) between steps: the market is closed
and market orders queue for the next open, exactly as Alpaca queues them.

Everything a step does happens under ``lock``, which the broker shares, so an order can never be
submitted between a bar becoming visible and that bar being matched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd

from data_lake.calendar import US_PER_MIN, Sessions, day_index, nyse, session_index

from .hub import Hub
from .market_data import NY, BarStore, Timeframe, _columns, parse_timeframe, wire_numbers
from .orders import iso

US_PER_DAY = 86_400_000_000
GTC_DAYS = 90  # Alpaca cancels GTC orders after 90 days
#: The markets GET /v3/clock can tell (Alpaca's ``public_market`` shape), by the names it takes.
MARKETS = {name: {"acronym": "NYSE", "mic": "XNYS", "name": "New York Stock Exchange", "timezone": NY}
           for name in ("NYSE", "XNYS")}


class Bar(NamedTuple):
    """One bar as the engine sees it: when it trades (open_us..close_us) and its prices."""

    symbol: str
    ts_us: int  # the bar's stamp (Alpaca's "t")
    open_us: int
    close_us: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: float
    vwap: float
    in_session: bool

    def message(self) -> dict:
        """The bar as Alpaca's market-data stream sends it: v, n ints and vw a float (see wire_numbers)."""
        v, n, vw = wire_numbers(self.high, self.low, self.close, self.volume, self.trade_count, self.vwap)
        return {"T": "b", "S": self.symbol, "t": iso(self.ts_us), "o": self.open, "h": self.high,
                "l": self.low, "c": self.close, "v": int(v), "n": int(n), "vw": float(vw)}


class ClockListener(Protocol):
    def on_bars(self, now_us: int, bars: dict[str, Bar]) -> None: ...
    def on_session_close(self, close_us: int) -> None: ...


def bucket_closes(ts: np.ndarray, tf: Timeframe, s: Sessions) -> np.ndarray:
    """When each bar stamped ``ts`` at ``tf`` is complete: its end, or its session's close if earlier."""
    if tf.minutes == 0:
        idx = day_index(ts, s)
        return np.where(idx >= 0, s.close_us[np.clip(idx, 0, None)], ts + US_PER_DAY)
    end = ts + tf.minutes * US_PER_MIN
    idx = session_index(ts, s)
    return np.where(idx >= 0, np.minimum(end, s.close_us[np.clip(idx, 0, None)]), end)


class ReplayBarStore(BarStore):
    """A BarStore that only shows bars (stored or aggregated) complete at the clock's ``now``."""

    def __init__(self, frames: Mapping[tuple[str, str], pd.DataFrame], clock: ReplayClock) -> None:
        super().__init__(frames)
        self._clock = clock
        self._closes: dict[tuple[str, int], np.ndarray] = {}

    def bars(self, symbol: str, tf: Timeframe) -> dict[str, np.ndarray] | None:
        cols = super().bars(symbol, tf)
        if cols is None:
            return None
        closes = self._closes.get((symbol, tf.minutes))
        if closes is None or len(closes) != len(cols["ts"]):
            closes = self._closes[(symbol, tf.minutes)] = bucket_closes(cols["ts"], tf, self._clock.sessions)
        n = int(np.searchsorted(closes, self._clock.now_us, side="right"))
        return {k: v[:n] for k, v in cols.items()}


class ReplayClock:
    """Replays ``bars`` ({symbol: frame of one ``timeframe``}) on the NYSE calendar; see the module doc."""

    def __init__(self, bars: Mapping[str, pd.DataFrame], timeframe: str = "1Min",
                 sessions: Sessions | None = None, hub: Hub | None = None) -> None:
        if not bars:
            raise ValueError("a replay needs bars for at least one symbol")
        self.timeframe = parse_timeframe(timeframe)
        self.sessions = sessions or nyse()
        self.hub = hub or Hub()
        self.lock = threading.RLock()
        self.listeners: list[ClockListener] = []
        #: Called between a step's open and close phases, lock released (see ``step``).
        self.between: Callable[[dict[str, Bar]], None] | None = None
        #: What ``run(speed)`` sleeps between the phases when no ``between`` is set (real seconds).
        self.between_seconds = 0.0
        self._cols = {sym.upper(): _columns(frame) for sym, frame in bars.items()}
        self._open: dict[str, np.ndarray] = {}
        self._close: dict[str, np.ndarray] = {}
        for sym, cols in self._cols.items():
            ts = cols["ts"]
            if len(ts) == 0 or (np.diff(ts) <= 0).any():
                raise ValueError(f"{sym}: a replay needs bars with distinct stamps (got none or duplicates)")
            if self.timeframe.minutes == 0:
                if (day_index(ts, self.sessions) < 0).any():
                    raise ValueError(f"{sym}: daily bars stamped on days that are not NYSE sessions")
                self._open[sym] = self.sessions.open_us[day_index(ts, self.sessions)]
            else:
                self._open[sym] = ts
            self._close[sym] = bucket_closes(ts, self.timeframe, self.sessions)
        closes = np.concatenate(list(self._close.values()))
        opens = np.concatenate(list(self._open.values()))
        order = np.argsort(closes, kind="stable")
        self._keys, first = np.unique(closes[order], return_index=True)
        self._key_open = np.minimum.reduceat(opens[order], first)  # earliest open closing at each key
        self._k = 0
        self._pos = dict.fromkeys(self._cols, 0)
        self.now_us = int(self._key_open[0])
        self._ci = int(np.searchsorted(self.sessions.close_us, self.now_us, side="right"))
        self.store = ReplayBarStore({(s, self.timeframe.name): f for s, f in bars.items()}, self)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ext: tuple[np.ndarray, np.ndarray] | None = None  # see _extended_hours

    # ------------------------------------------------------------------------------ reading
    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self._cols))

    @property
    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.now_us, unit="us", tz="UTC")

    @property
    def done(self) -> bool:
        """True when every bar has been replayed."""
        return self._k >= len(self._keys)

    def is_open(self, at_us: int | None = None) -> bool:
        """Whether the regular session is open at ``at_us`` (default: now)."""
        return bool(session_index(np.array([self.now_us if at_us is None else at_us]), self.sessions)[0] >= 0)

    def session_index(self, at_us: int) -> int:
        """The calendar index of the session holding ``at_us`` (open <= t < close), else -1."""
        return int(session_index(np.array([at_us]), self.sessions)[0])

    def expiry_us(self, time_in_force: str, submitted_us: int) -> int:
        """When an order expires: a day order at the close of the next session to close after it
        was placed (so one placed after the close works the next session); GTC after 90 days."""
        closes = self.sessions.close_us
        if time_in_force == "day":
            j = np.searchsorted(closes, submitted_us, side="right")
        else:
            j = np.searchsorted(closes, submitted_us + GTC_DAYS * US_PER_DAY, side="left")
        return int(closes[min(int(j), len(closes) - 1)])

    def last_bar(self, symbol: str) -> Bar | None:
        """The symbol's last visible bar (None before its first bar closes)."""
        i = self._pos.get(symbol, 0)
        return self._bar(symbol, i - 1) if i else None

    def first_open(self, symbol: str) -> float:
        """The open of the symbol's first bar (a price to check orders against before any bar closed)."""
        return float(self._cols[symbol]["open"][0])

    def _bar(self, sym: str, i: int) -> Bar:
        c = self._cols[sym]
        open_us = int(self._open[sym][i])
        return Bar(sym, int(c["ts"][i]), open_us, int(self._close[sym][i]), float(c["open"][i]),
                   float(c["high"][i]), float(c["low"][i]), float(c["close"][i]), float(c["volume"][i]),
                   float(c["trade_count"][i]), float(c["vwap"][i]), self.is_open(open_us))

    # ------------------------------------------------------------------------------ stepping
    def step(self) -> dict[str, Bar] | None:
        """Run the next bar(s): the open phase, ``between``, then the close. None when done.

        1. open (under the lock): ``now`` = the bar's open; listeners' ``on_open`` fill what is
           marketable at the open; the bar itself is not visible yet.
        2. ``between(bars)``, with the lock released: clients react to the open's fills (a
           protective stop placed on an entry fill works inside this same bar). In lockstep
           replays the driver waits there for the trader to settle; ``run(speed)`` sleeps
           ``between_seconds``.
        3. close (under the lock): ``now`` = the bar's close; listeners' ``on_bars`` match inside
           the bar; the bar becomes visible and is published; session closes pass.
        """
        with self.lock:
            if self.done:
                return None
            key = int(self._keys[self._k])
            self._pass_closes(int(self._key_open[self._k]))
            bars: dict[str, Bar] = {}
            for sym in sorted(self._cols):
                i = self._pos[sym]
                if i < len(self._close[sym]) and self._close[sym][i] == key:
                    bars[sym] = self._bar(sym, i)
                    self._pos[sym] = i + 1
            self._k += 1
            if bars:
                self.now_us = max(self.now_us, min(b.open_us for b in bars.values()))
            for listener in self.listeners:
                on_open = getattr(listener, "on_open", None)
                if on_open is not None:
                    on_open(self.now_us, bars)
        if bars and self.between is not None:
            self.between(bars)
        with self.lock:
            self.now_us = max(self.now_us, key)
            for listener in self.listeners:
                listener.on_bars(self.now_us, bars)
            for bar in bars.values():
                self.hub.publish_bar(bar.message())
            self._pass_closes(key if self.done else int(self._key_open[self._k]))
            return bars

    def step_until(self, at: pd.Timestamp | str) -> int:
        """Step while the next bar closes at or before ``at`` (naive: UTC); returns how many steps ran."""
        t = pd.Timestamp(at)
        limit = int((t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).value // 1000)
        n = 0
        while not self.done and self._keys[self._k] <= limit:
            self.step()
            n += 1
        return n

    def _pass_closes(self, upto: int) -> None:
        closes = self.sessions.close_us
        while self._ci < len(closes) and closes[self._ci] <= upto:
            close = int(closes[self._ci])
            self._ci += 1
            self.now_us = max(self.now_us, close)
            for listener in self.listeners:
                listener.on_session_close(close)

    def run(self, speed: float = 0.0, *, skip_closed: bool = True) -> threading.Thread:
        """Step in a background thread; ``speed`` = simulated seconds per real second (0: no waiting).

        With ``skip_closed`` the wait only covers market hours: the night between sessions passes
        at once. ``stop()`` ends the thread; ``wait()`` joins it when the replay is over.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the replay is already running")
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set() and not self.done:
                if speed > 0:
                    begin = max(self.now_us, int(self._key_open[self._k])) if skip_closed else self.now_us
                    if self._stop.wait(max(0, int(self._keys[self._k]) - begin) / 1e6 / speed):
                        return
                if self.between is None and self.between_seconds > 0:
                    self.between = lambda bars: self._stop.wait(self.between_seconds)
                self.step()

        self._thread = threading.Thread(target=loop, name="replay-clock", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Stop a running replay (the current step completes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running replay to finish; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    # ------------------------------------------------------------------------------ Alpaca JSON
    def clock_json(self) -> dict:
        """GET /v2/clock: timestamps in New York time with their offset, as Alpaca sends them."""
        s, now = self.sessions, self.now_us
        next_open = s.open_us[min(int(np.searchsorted(s.open_us, now, side="right")), len(s) - 1)]
        next_close = s.close_us[min(int(np.searchsorted(s.close_us, now, side="right")), len(s) - 1)]
        return {"timestamp": _ny(now), "is_open": self.is_open(), "next_open": _ny(next_open),
                "next_close": _ny(next_close)}

    def clock_v3_json(self, markets: list[str] | None = None, at_us: int | None = None) -> dict:
        """GET /v3/clock: ``{"clocks": [...]}``, one clock per market (only NYSE here), at now or ``at_us``.

        Phases follow the calendar GET /v2/calendar serves: pre from 04:00 New York to the open,
        core to the close, post to 4 hours after it, closed otherwise; ``phase_until`` ends the phase.
        """
        t = self.now_us if at_us is None else at_us
        s, (pre, post) = self.sessions, self._extended_hours()
        j = int(np.searchsorted(pre, t, side="right")) - 1  # the last session whose pre-market began
        if j >= 0 and t < post[j]:
            bounds = (("pre", int(s.open_us[j])), ("core", int(s.close_us[j])), ("post", int(post[j])))
            phase, until = next((p, u) for p, u in bounds if t < u)
        else:
            phase, until = "closed", int(pre[min(j + 1, len(pre) - 1)])
        day = pd.Timestamp(t, unit="us", tz="UTC").tz_convert(NY).tz_localize(None).normalize()
        i = int(s.dates.searchsorted(day))
        nxt = [int(a[min(int(np.searchsorted(a, t, side="right")), len(s) - 1)])
               for a in (s.open_us, s.close_us)]
        clock = {"timestamp": _ny(t), "is_market_day": bool(i < len(s) and s.dates[i] == day),
                 "next_market_open": _ny(nxt[0]), "next_market_close": _ny(nxt[1]), "phase": phase,
                 "phase_until": _ny(until)}
        return {"clocks": [{"market": dict(MARKETS[m]), **clock} for m in (markets or ["NYSE"])]}

    def _extended_hours(self) -> tuple[np.ndarray, np.ndarray]:
        """Per session: when its pre-market opens (04:00 New York) and its post-market closes (+4 h)."""
        if self._ext is None:
            s = self.sessions
            pre = (s.dates + pd.Timedelta(hours=4)).tz_localize(NY).tz_convert("UTC").as_unit("us").asi8
            self._ext = (np.asarray(pre, dtype=np.int64), s.close_us + 4 * 3_600_000_000)
        return self._ext

    def calendar_json(self, start: str | None = None, end: str | None = None) -> list[dict]:
        """GET /v2/calendar rows for sessions dated in [start, end] (dates, inclusive)."""
        s = self.sessions
        lo = 0 if not start else int(s.dates.searchsorted(pd.Timestamp(start[:10])))
        hi = len(s) if not end else int(s.dates.searchsorted(pd.Timestamp(end[:10]), side="right"))
        opens = pd.DatetimeIndex(s.open_us[lo:hi].astype("datetime64[us]"), tz="UTC").tz_convert(NY)
        closes = pd.DatetimeIndex(s.close_us[lo:hi].astype("datetime64[us]"), tz="UTC").tz_convert(NY)
        post = closes + pd.Timedelta(hours=4)  # the post-market ends 4 hours after the close
        days = s.dates[lo:hi]
        # Settlement: T+1 since 2024-05-28, T+2 since 2017-09-05, T+3 before (in sessions).
        lag = np.where(days >= pd.Timestamp("2024-05-28"), 1,
                       np.where(days >= pd.Timestamp("2017-09-05"), 2, 3))
        settle = s.dates[np.minimum(np.arange(lo, hi) + lag, len(s) - 1)]
        keys = ("date", "open", "close", "session_open", "session_close", "settlement_date")
        columns = (days.strftime("%Y-%m-%d"), opens.strftime("%H:%M"), closes.strftime("%H:%M"),
                   ["0400"] * len(days), post.strftime("%H%M"), settle.strftime("%Y-%m-%d"))
        return [dict(zip(keys, row)) for row in zip(*columns)]


def _ny(us: int) -> str:
    return pd.Timestamp(int(us), unit="us", tz="UTC").tz_convert(NY).isoformat()
