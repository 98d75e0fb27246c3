"""Alpaca's market-data v2 bars endpoints, served from in-memory frames: ``GET /v2/stocks/bars``
(``{"bars": {symbol: [...]}, "next_page_token"}``) and ``GET /v2/stocks/{symbol}/bars``
(``{"bars": [...], "symbol", "next_page_token"}``), with the same parameters, paging and refusals.

What the simulator copies from Alpaca, because clients depend on it:

* ``start`` and ``end`` are both inclusive; a bare date means that New York calendar day;
* the ``limit`` (default 1000, at most 10000) counts bars across all symbols of a page, and
  results run by symbol (sorted), then time, so a page can end in the middle of one symbol;
* ``next_page_token`` is opaque (base64 of the next bar's symbol and time) and null on the last page;
* symbols without bars in the window are absent from ``bars`` (not empty lists);
* bars coarser than the stored ones are aggregated on *clock*-aligned buckets (an hourly bar
  starts at 09:00, a daily bar at 00:00 New York), as Alpaca's are;
* on the free ("basic") plan, SIP data newer than 15 minutes is refused with 403;
* a bar's numbers are typed as Alpaca types them (``stock_bar``: ``v`` and ``n`` int64, ``vw``
  double, all required), since typed clients (Go's ``uint64``) cannot decode a float or a null.
  The lake does not always hold what Alpaca sends, so :func:`wire_numbers` fills it in:
  ``v`` is rounded to whole shares (half to even; a split-adjusted volume can be fractional),
  ``n`` is 0 when the lake has no trade count (a real bar has n >= 1, so 0 reads as "unknown"),
  and ``vw`` is the typical price (h + l + c) / 3 when the lake has no vwap.

What it does not model is refused with a message saying so: week and month timeframes (400).
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse

from .server import SimulatorState, alpaca_error, create_app

NY = "America/New_York"
US_PER_MIN = 60_000_000
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
PLANS = ("basic", "algo_trader_plus")
FEEDS = ("iex", "sip", "delayed_sip", "otc", "boats", "overnight")
ADJUSTMENTS = ("raw", "split", "dividend", "spin-off", "all")
SIP_DELAY = pd.Timedelta(minutes=15)
_COLS = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")
_TF_RE = re.compile(r"^(\d{1,2})?(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.\-/]{0,20}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadRequest(ValueError):
    """A request Alpaca would answer with 400; the text is the message."""


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A bar length: ``minutes`` > 0 for intraday bars, 0 for one New York calendar day."""

    minutes: int

    @property
    def name(self) -> str:
        if self.minutes == 0:
            return "1Day"
        return f"{self.minutes // 60}Hour" if self.minutes % 60 == 0 else f"{self.minutes}Min"


def parse_timeframe(text: str) -> Timeframe:
    """Read Alpaca's spellings: ``5Min``/``5T``, ``1Hour``/``1H``, ``1Day``/``1D`` (weeks, months refused)."""
    m = _TF_RE.match(text.strip())
    if not m:
        raise BadRequest(f"invalid timeframe: {text}")
    amount, unit = int(m.group(1) or 1), m.group(2)
    if unit in ("Min", "T") and 1 <= amount <= 59:
        return Timeframe(amount)
    if unit in ("Hour", "H") and 1 <= amount <= 23:
        return Timeframe(amount * 60)
    if unit in ("Day", "D") and amount == 1:
        return Timeframe(0)
    if (unit in ("Week", "W") and amount == 1) or (unit in ("Month", "M") and amount in (1, 2, 3, 4, 6, 12)):
        raise BadRequest(f"timeframe {text} is not supported by the simulator (Min, Hour, 1Day)")
    raise BadRequest(f"invalid timeframe: {text}")


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A bar frame as sorted numpy columns (ts as int64 UTC microseconds, NaN for missing)."""
    ts = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True)).as_unit("us").asi8
    order = np.argsort(ts, kind="stable")
    out = {"ts": ts[order]}
    for c in _COLS[1:]:
        vals = frame[c] if c in frame else pd.Series(np.nan, index=frame.index)
        out[c] = pd.to_numeric(vals, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)[order]
    return out


def aggregate(cols: dict[str, np.ndarray], tf: Timeframe) -> dict[str, np.ndarray]:
    """Roll finer bars up into clock-aligned ``tf`` bars (Alpaca's bucketing, not the session grid)."""
    ts = cols["ts"]
    if len(ts) == 0:
        return {k: v[:0] for k, v in cols.items()}
    if tf.minutes == 0:
        local = pd.DatetimeIndex(ts.astype("datetime64[us]"), tz="UTC").tz_convert(NY)
        keys = local.normalize().tz_convert("UTC").as_unit("us").asi8
    else:
        width = tf.minutes * US_PER_MIN
        keys = ts // width * width
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    vol = np.add.reduceat(cols["volume"], starts)
    has_vwap = np.isfinite(cols["vwap"])
    pv = np.add.reduceat(np.where(has_vwap, cols["vwap"] * cols["volume"], 0.0), starts)
    pv_vol = np.add.reduceat(np.where(has_vwap, cols["volume"], 0.0), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(pv_vol > 0, pv / pv_vol, np.nan)
    return {
        "ts": keys[starts],
        "open": cols["open"][starts],
        "high": np.maximum.reduceat(cols["high"], starts),
        "low": np.minimum.reduceat(cols["low"], starts),
        "close": cols["close"][ends],
        "volume": vol,
        "vwap": vwap,
        "trade_count": np.add.reduceat(np.nan_to_num(cols["trade_count"]), starts),
    }


class BarStore:
    """Bars by (symbol, timeframe) in memory; coarser timeframes are aggregated on demand.

    Frames have the lake's columns: ts (UTC), open, high, low, close, volume, vwap, trade_count.
    """

    def __init__(self, frames: Mapping[tuple[str, str], pd.DataFrame] | None = None) -> None:
        self._lock = threading.Lock()
        self._raw: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self._derived: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        for (symbol, timeframe), frame in (frames or {}).items():
            self.put(symbol, timeframe, frame)

    def put(self, symbol: str, timeframe: str, frame: pd.DataFrame) -> None:
        """Store (or replace) the bars of one symbol and timeframe."""
        key = (symbol.upper(), parse_timeframe(timeframe).minutes)
        cols = _columns(frame)
        with self._lock:
            self._raw[key] = cols
            self._derived = {k: v for k, v in self._derived.items() if k[0] != key[0]}

    def bars(self, symbol: str, tf: Timeframe) -> dict[str, np.ndarray] | None:
        """The symbol's bars at ``tf``: stored, or rolled up from the coarsest stored one dividing it."""
        key = (symbol, tf.minutes)
        with self._lock:
            if key in self._raw:
                return self._raw[key]
            if key in self._derived:
                return self._derived[key]
            held = [m for (s, m) in self._raw if s == symbol and m > 0]
            finer = [m for m in held if tf.minutes == 0 or tf.minutes % m == 0]
            if not finer:
                return None
            source = self._raw[(symbol, max(finer))]
        out = aggregate(source, tf)
        with self._lock:
            self._derived[key] = out
        return out


# ------------------------------------------------------------------------------------- paging
def encode_token(symbol: str, ts_us: int) -> str:
    return base64.urlsafe_b64encode(f"{symbol}|{ts_us}".encode()).decode()


def decode_token(token: str) -> tuple[str, int]:
    try:
        symbol, ts = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return symbol, int(np.int64(ts))  # a time past int64 is no token of ours
    except Exception:  # noqa: BLE001 - any malformed token is the client's error
        raise BadRequest("invalid page_token") from None


def page(
    store: BarStore,
    symbols: list[str],
    tf: Timeframe,
    start_us: int,
    end_us: int,
    limit: int,
    token: str | None = None,
    descending: bool = False,
) -> tuple[dict[str, dict[str, np.ndarray]], str | None]:
    """One page: up to ``limit`` bars over all symbols (sorted, then by time), and the next token."""
    after = decode_token(token) if token else None
    out: dict[str, dict[str, np.ndarray]] = {}
    left = limit
    for symbol in sorted(set(symbols)):
        if after and symbol < after[0]:
            continue
        cols = store.bars(symbol, tf)
        if cols is None:
            continue
        ts = cols["ts"]
        lo, hi = np.searchsorted(ts, start_us, "left"), np.searchsorted(ts, end_us, "right")
        if after and symbol == after[0]:
            if descending:
                hi = min(hi, np.searchsorted(ts, after[1], "right"))
            else:
                lo = max(lo, np.searchsorted(ts, after[1], "left"))
        if hi <= lo:
            continue
        idx = np.arange(lo, hi)[::-1] if descending else np.arange(lo, hi)
        if left == 0:  # the page is full and this symbol has a bar: it starts the next page
            return out, encode_token(symbol, int(ts[idx[0]]))
        take, rest = idx[:left], idx[left:]
        out[symbol] = {c: v[take] for c, v in cols.items()}
        left -= len(take)
        if len(rest):
            return out, encode_token(symbol, int(ts[rest[0]]))
    return out, None


def wire_numbers(high, low, close, volume, trade_count, vwap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``v`` and ``n`` as int64 and ``vw`` as float64, never missing, from the lake's float columns.

    Volume is rounded half to even (NaN: 0); an unknown trade count is 0; an unknown vwap is the
    typical price (h + l + c) / 3. Takes arrays or scalars; the REST bars and the stream share it.
    """
    v = np.rint(np.nan_to_num(np.asarray(volume, dtype=np.float64), nan=0.0)).astype(np.int64)
    n = np.rint(np.nan_to_num(np.asarray(trade_count, dtype=np.float64), nan=0.0)).astype(np.int64)
    vwap = np.asarray(vwap, dtype=np.float64)
    vw = np.where(np.isfinite(vwap), vwap, (np.asarray(high) + np.asarray(low) + np.asarray(close)) / 3)
    return v, n, vw


def bars_json(cols: dict[str, np.ndarray]) -> list[dict]:
    """Bars in Alpaca's wire shape: t (RFC 3339, Z), o, h, l, c (floats), v, n (ints), vw (float)."""
    t = [s + "Z" for s in np.datetime_as_string(cols["ts"].astype("datetime64[us]").astype("datetime64[s]"))]
    o, h, low, c = (cols[k] for k in ("open", "high", "low", "close"))
    numbers = wire_numbers(h, low, c, cols["volume"], cols["trade_count"], cols["vwap"])
    v, n, vw = (x.tolist() for x in numbers)
    return [
        {"t": a, "o": b, "h": d, "l": e, "c": f, "v": g, "n": i, "vw": j}
        for a, b, d, e, f, g, i, j in zip(t, o.tolist(), h.tolist(), low.tolist(), c.tolist(), v, n, vw)
    ]


# ------------------------------------------------------------------------------------- parsing
def parse_time(text: str, *, end: bool) -> int:
    """RFC 3339 or YYYY-MM-DD as UTC microseconds; a date covers its whole New York day."""
    text = text.strip().replace(" ", "+")  # an unescaped '+' in a query string arrives as ' '
    try:  # in nanoseconds first: a date pandas reads but cannot localize (9999-12-31) is refused too
        if _DATE_RE.match(text):
            day = pd.Timestamp(text).as_unit("ns").tz_localize(NY)
            t = day + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1) if end else day
        else:
            t = pd.Timestamp(text).as_unit("ns")
            if t.tzinfo is None:
                raise ValueError
        return int(t.tz_convert("UTC").value // 1000)
    except (ValueError, OverflowError):
        raise BadRequest(f"invalid {'end' if end else 'start'}: {text}") from None


def _parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"invalid limit: must be between 1 and {MAX_LIMIT}")
    return int(text)


def _parse_symbols(text: str | None) -> list[str]:
    symbols = [s.strip().upper() for s in (text or "").split(",") if s.strip()]
    if not symbols:
        raise BadRequest("missing symbols")
    for s in symbols:
        if not _SYMBOL_RE.match(s):
            raise BadRequest(f"invalid symbol: {s}")
    return symbols


# ------------------------------------------------------------------------------------- routes
@dataclass(frozen=True, slots=True)
class BarsQuery:
    """The query parameters both bars routes take, as text (each is checked by :func:`serve_bars`)."""

    timeframe: str | None = None
    start: str | None = None
    end: str | None = None
    limit: str | None = None
    page_token: str | None = None
    feed: str | None = None
    adjustment: str | None = None
    sort: str | None = None
    asof: str | None = None
    currency: str | None = None


def serve_bars(
    store: BarStore, symbols: str | None, q: BarsQuery, *, plan: str, max_page_size: int, clock: pd.Timestamp
) -> tuple[dict[str, dict[str, np.ndarray]], str | None] | JSONResponse:
    """One page of bars for ``symbols`` (comma-separated), or the 400/403 Alpaca would answer.

    Every parameter is read as text and checked here, so errors are Alpaca's 400
    {"message": ...} rather than FastAPI's 422 validation document.
    """
    try:
        syms = _parse_symbols(symbols)
        if not q.timeframe:
            raise BadRequest("missing timeframe")
        tf = parse_timeframe(q.timeframe)
        n = min(_parse_limit(q.limit), max_page_size)
        the_feed = q.feed or ("sip" if plan == "algo_trader_plus" else "iex")
        if the_feed not in FEEDS:
            raise BadRequest(f"invalid feed: {q.feed}")
        if q.adjustment and any(a.strip() not in ADJUSTMENTS for a in q.adjustment.split(",")):
            raise BadRequest(f"invalid adjustment: {q.adjustment}")
        if (q.sort or "asc") not in ("asc", "desc"):
            raise BadRequest(f"invalid sort: {q.sort}")
        today = clock.tz_convert(NY).normalize()
        lo = parse_time(q.start, end=False) if q.start else int(today.tz_convert("UTC").value // 1000)
        hi = parse_time(q.end, end=True) if q.end else int(clock.value // 1000)
        if hi < lo:
            raise BadRequest("end should not be before start")
    except BadRequest as exc:
        return alpaca_error(400, str(exc))
    if plan == "basic" and the_feed == "sip" and (q.end is None or hi > (clock - SIP_DELAY).value // 1000):
        return alpaca_error(403, "subscription does not permit querying recent SIP data")
    try:
        return page(store, syms, tf, lo, hi, n, q.page_token, descending=(q.sort == "desc"))
    except BadRequest as exc:
        return alpaca_error(400, str(exc))


def market_data_router(
    store: BarStore,
    *,
    plan: str = "basic",
    max_page_size: int = MAX_LIMIT,
    now: Callable[[], pd.Timestamp] = lambda: pd.Timestamp.now(tz="UTC"),
) -> APIRouter:
    """``/v2/stocks/bars`` and ``/v2/stocks/{symbol}/bars`` over ``store``; ``max_page_size`` caps pages.

    ``plan`` is "basic" (free: IEX by default, no SIP newer than 15 minutes) or
    "algo_trader_plus" (SIP by default, no delay). ``now`` is injectable so tests can pin the clock.
    """
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}")
    router = APIRouter()

    def one_page(symbols: str | None, q: BarsQuery):
        return serve_bars(store, symbols, q, plan=plan, max_page_size=max_page_size, clock=now())

    @router.get("/v2/stocks/bars")
    def get_bars(symbols: str | None = Query(None), q: BarsQuery = Depends()) -> JSONResponse:
        found = one_page(symbols, q)
        if isinstance(found, JSONResponse):
            return found
        bars, token = found
        return JSONResponse({"bars": {s: bars_json(c) for s, c in bars.items()}, "next_page_token": token})

    @router.get("/v2/stocks/{symbol}/bars")
    def get_symbol_bars(symbol: str, q: BarsQuery = Depends()) -> JSONResponse:
        # One symbol in the path (a comma is no list here); an empty result is [] (the spec's array).
        found = one_page(symbol, q) if "," not in symbol else alpaca_error(400, f"invalid symbol: {symbol}")
        if isinstance(found, JSONResponse):
            return found
        bars, token = found
        cols = next(iter(bars.values()), None)
        return JSONResponse({"bars": bars_json(cols) if cols is not None else [],
                             "symbol": symbol.strip().upper(), "next_page_token": token})

    return router


def market_data_app(
    frames: Mapping[tuple[str, str], pd.DataFrame] | BarStore | None = None,
    *,
    api_key: str = "sim-key",
    secret_key: str = "sim-secret",
    plan: str = "basic",
    max_page_size: int = MAX_LIMIT,
    requests_per_minute: int | None = None,
    now: Callable[[], pd.Timestamp] | None = None,
) -> FastAPI:
    """A ready app serving the bars endpoints over ``frames`` ({(symbol, timeframe): DataFrame}).

    ``app.state.sim`` holds the faults and the request log; ``app.state.bars`` the BarStore.
    """
    store = frames if isinstance(frames, BarStore) else BarStore(frames)
    state = SimulatorState(api_key=api_key, secret_key=secret_key, requests_per_minute=requests_per_minute)
    kwargs = {"now": now} if now is not None else {}
    app = create_app(state, [market_data_router(store, plan=plan, max_page_size=max_page_size, **kwargs)])
    app.state.bars = store
    return app
