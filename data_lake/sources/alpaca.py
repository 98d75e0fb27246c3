"""Bars from Alpaca's market-data API into the lake, fetching only the sessions the lake lacks.

The only module of ``data_lake`` that imports alpaca-py (the live bridge's REST bars fetch and parse
their bars with its ``bars_request`` and ``bars_frame``). Why it looks the way it does:

* Incremental by session: for each symbol, the NYSE sessions in [start, end] without a bar in the
  lake are grouped into contiguous runs and only those runs are requested. Symbols missing the
  same run share a request (Alpaca's page limit counts bars across symbols), and long runs are
  cut so one request holds at most ``REQUEST_BAR_BUDGET`` bars in memory. Sessions that have not
  closed yet (or closed under 15 minutes ago, for SIP) are left for a later run, so a half-fetched
  day never counts as covered.
* Paced: a token bucket sits in front of every HTTP request alpaca-py sends (each page and each
  retry), keeping under Alpaca's 200 requests/minute; alpaca-py itself retries 429s.
* Lake-shaped: Alpaca returns pre- and after-market bars for intraday timeframes; they are dropped
  (and counted). Alpaca's hourly bars are clock-aligned (09:00, 10:00) while the lake's grid
  starts at the session open, so 1Hour is built from 30Min bars (09:30, 10:30, ..., 15:30 holding
  30 minutes; 12:30 on a 13:00 half day).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment as AlpacaAdjustment
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from requests.adapters import HTTPAdapter
from requests.exceptions import RequestException

from ..calendar import NY, US_PER_MIN, Sessions, check_window, day_index, nyse, session_index, session_stamp
from ..schema import Adjustment, BarMeta, Feed, LakeError, check_symbol, check_timeframe
from ..store import Lake, WriteResult

SOURCE = "alpaca"
#: Most bars one request may bring back (all its pages); bounds memory, sets progress granularity.
REQUEST_BAR_BUDGET = 50_000
#: What is asked of Alpaca for each lake timeframe (1Hour: 30Min bars, rolled up here).
FETCH_MINUTES = {"1Min": 1, "5Min": 5, "15Min": 15, "1Hour": 30, "1Day": 0}
#: Bars per session Alpaca may return, extended hours (04:00-20:00 ET) included.
_PER_SESSION = {1: 960, 5: 192, 15: 64, 30: 32, 0: 1}
_SIP_DELAY_US = 15 * US_PER_MIN
_FEEDS = {"iex": (Feed.IEX, DataFeed.IEX), "sip": (Feed.SIP, DataFeed.SIP)}


@dataclass
class AlpacaIngestResult(WriteResult):
    """A WriteResult plus what only an Alpaca ingest knows."""

    rows_outside_session: int = 0  # extended-hours (or off-grid) bars Alpaca sent and the lake skipped
    requests: int = 0  # HTTP requests sent, pages and retries included
    sessions_requested: int = 0  # symbol-sessions asked for (0 when the lake already had everything)

    def merge(self, other: WriteResult) -> "AlpacaIngestResult":
        super().merge(other)
        if isinstance(other, AlpacaIngestResult):
            self.rows_outside_session += other.rows_outside_session
            self.requests += other.requests
            self.sessions_requested += other.sessions_requested
        return self


class TokenBucket:
    """Paces callers to ``per_minute`` on average with a small burst; thread-safe.

    Any 60 s window sees at most ``burst + per_minute`` calls, hence the default burst of
    per_minute/20: 190/min with a burst of 9 stays under Alpaca's 200.
    """

    def __init__(self, per_minute: float, burst: int | None = None, clock=time.monotonic, sleep=time.sleep):
        if per_minute <= 0:
            raise LakeError("requests_per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, int(per_minute) // 20))
        self._clock, self._sleep = clock, sleep
        self._tokens, self._last = self.capacity, clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Wait for one token; return the seconds waited. Tokens are reserved, so waits queue fairly."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class _PacedAdapter(HTTPAdapter):
    """A requests transport that takes a token before sending, and counts what it sent."""

    def __init__(self, bucket: TokenBucket) -> None:
        super().__init__()
        self.bucket, self.sent = bucket, 0

    def send(self, request, **kwargs):  # noqa: ANN001 - requests' own signature
        self.bucket.take()
        self.sent += 1
        return super().send(request, **kwargs)


def make_client(
    api_key: str, secret_key: str, url: str | None, requests_per_minute: float, retry_wait_seconds: float
) -> tuple[StockHistoricalDataClient, _PacedAdapter]:
    """An alpaca-py bars client whose every HTTP request is paced, with a configurable 429 wait."""
    try:
        # raw_data: the bars stay Alpaca's JSON dicts; no pydantic model per bar (millions of them).
        client = StockHistoricalDataClient(api_key, secret_key, url_override=url, raw_data=True)
    except ValueError:
        raise LakeError("Alpaca API keys are missing: both a key id and a secret key are needed") from None
    adapter = _PacedAdapter(TokenBucket(requests_per_minute))
    # alpaca-py has no public hook for its transport; ``_session`` is the requests.Session every
    # call (each page, each retry) goes through, so the pacing adapter is mounted there.
    client._session.mount("https://", adapter)
    client._session.mount("http://", adapter)
    # StockHistoricalDataClient does not pass retry settings to RESTClient (and RESTClient ignores
    # a wait of 0), so the 429/504 retry wait alpaca-py sleeps (default 3 s) is set directly.
    client._retry_wait = retry_wait_seconds
    return client, adapter


# ------------------------------------------------------------------------------------- planning
def missing_runs(wanted: np.ndarray, covered: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs (first, last; session indices, inclusive) of ``wanted`` not in ``covered``."""
    missing = np.setdiff1d(wanted, covered)
    if len(missing) == 0:
        return []
    breaks = np.flatnonzero(np.diff(missing) != 1)
    firsts = np.r_[missing[0], missing[breaks + 1]]
    lasts = np.r_[missing[breaks], missing[-1]]
    return list(zip(firsts.tolist(), lasts.tolist()))


def plan_requests(
    runs: dict[str, list[tuple[int, int]]], per_session: int, budget: int = REQUEST_BAR_BUDGET
) -> list[tuple[list[str], int, int]]:
    """Requests as (symbols, first session, last session): symbols sharing a run share a request,
    and each request is sized to about ``budget`` bars (at least one symbol-session)."""
    by_run: dict[tuple[int, int], list[str]] = {}
    for symbol, symbol_runs in runs.items():
        for run in symbol_runs:
            by_run.setdefault(run, []).append(symbol)
    out = []
    for (first, last), symbols in sorted(by_run.items()):
        n_sessions = last - first + 1
        span = max(1, budget // per_session)  # sessions one symbol may bring
        if n_sessions > span:
            for sym in symbols:
                out += [([sym], a, min(a + span - 1, last)) for a in range(first, last + 1, span)]
        else:
            per_request = max(1, budget // (per_session * n_sessions))
            out += [(symbols[i : i + per_request], first, last) for i in range(0, len(symbols), per_request)]
    return out


# ------------------------------------------------------------------------------------- shaping
def bars_request(symbols: list[str], timeframe: str, start: datetime, end: datetime, feed: str | DataFeed,
                 adjustment: str | AlpacaAdjustment) -> StockBarsRequest:
    """The request for ``symbols``' bars of lake ``timeframe`` over [start, end] (Alpaca's end is
    inclusive): ``FETCH_MINUTES`` says what is asked (1Hour: 30Min bars, rolled up by ``session_hours``).
    The live bridge's REST bars (``live_bridge/alpaca/bars.py``) ask with it too."""
    minutes = FETCH_MINUTES[timeframe]
    unit = TimeFrame(1, TimeFrameUnit.Day) if minutes == 0 else TimeFrame(minutes, TimeFrameUnit.Minute)
    return StockBarsRequest(symbol_or_symbols=symbols, timeframe=unit, start=start, end=end, feed=DataFeed(feed),
                            adjustment=AlpacaAdjustment(adjustment))


def bars_frame(raw: list[dict]) -> pd.DataFrame:
    """Alpaca's wire bars (t, o, h, l, c, v, n, vw) as a lake-shaped frame sorted by ts."""
    frame = pd.DataFrame.from_records(raw, columns=["t", "o", "h", "l", "c", "v", "vw", "n"])
    frame.columns = ["ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601").dt.as_unit("us")
    for c in ("open", "high", "low", "close", "volume", "vwap", "trade_count"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame.sort_values("ts", kind="stable", ignore_index=True)


def regular_session(frame: pd.DataFrame, minutes: int, sessions: Sessions) -> tuple[pd.DataFrame, int]:
    """Keep the bars inside a regular session and on its grid; return them and how many went."""
    ts = frame["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    idx = session_index(ts, sessions)
    offset = ts - sessions.open_us[np.maximum(idx, 0)]
    keep = (idx >= 0) & (offset % (minutes * US_PER_MIN) == 0)
    return frame.loc[keep].reset_index(drop=True), int((~keep).sum())


def daily_stamps(frame: pd.DataFrame, sessions: Sessions) -> tuple[pd.DataFrame, int]:
    """Stamp daily bars 00:00 New York of their date (Alpaca already does) and keep session days."""
    out = frame.assign(ts=session_stamp(frame["ts"]))
    keep = day_index(out["ts"].to_numpy(dtype="datetime64[us]").view(np.int64), sessions) >= 0
    keep &= ~out["ts"].duplicated(keep="last").to_numpy()
    return out.loc[keep].reset_index(drop=True), int((~keep).sum())


def session_hours(frame: pd.DataFrame, sessions: Sessions) -> pd.DataFrame:
    """Roll regular-session 30Min bars into 1Hour bars aligned to the session open.

    open first, high max, low min, close last, volume and trade_count summed, vwap weighted by
    volume; the last bar of a session keeps whatever 30 minutes are left before the close.
    """
    if frame.empty:
        return frame
    ts = frame["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    opens = sessions.open_us[session_index(ts, sessions)]
    keys = opens + (ts - opens) // (60 * US_PER_MIN) * (60 * US_PER_MIN)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    names = ("open", "high", "low", "close", "volume", "vwap", "trade_count")
    col = {c: frame[c].to_numpy(dtype=np.float64) for c in names}
    has = np.isfinite(col["vwap"])
    pv = np.add.reduceat(np.where(has, col["vwap"] * col["volume"], 0.0), starts)
    weight = np.add.reduceat(np.where(has, col["volume"], 0.0), starts)
    counted = np.add.reduceat(np.isfinite(col["trade_count"]).astype(np.int64), starts)
    trades = np.add.reduceat(np.nan_to_num(col["trade_count"]), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(weight > 0, pv / weight, np.nan)
    return pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(keys[starts].astype("datetime64[us]"), tz="UTC"),
            "open": col["open"][starts],
            "high": np.maximum.reduceat(col["high"], starts),
            "low": np.minimum.reduceat(col["low"], starts),
            "close": col["close"][ends],
            "volume": np.add.reduceat(col["volume"], starts),
            "vwap": vwap,
            "trade_count": np.where(counted > 0, trades, np.nan),
        }
    )


def to_lake_bars(raw: list[dict], timeframe: str, sessions: Sessions) -> tuple[pd.DataFrame, int]:
    """Alpaca bars of one symbol as lake bars of ``timeframe``, and how many were dropped."""
    frame = bars_frame(raw)
    minutes = FETCH_MINUTES[timeframe]
    if minutes == 0:
        return daily_stamps(frame, sessions)
    frame, dropped = regular_session(frame, minutes, sessions)
    return (session_hours(frame, sessions) if timeframe == "1Hour" else frame), dropped


# ------------------------------------------------------------------------------------- fetching
def _explain(exc: APIError, secrets: tuple[str, ...]) -> LakeError:
    """One clear line for an Alpaca error (never quoting the keys)."""
    status = exc.status_code
    try:
        message = str(exc.message)
    except Exception:  # noqa: BLE001 - the body was not Alpaca's JSON (a proxy page, say)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
    for s in secrets:
        message = message.replace(s, "***") if s else message
    if status == 403 and "subscription" in message.lower():
        hint = "; use --feed iex or an --end at least 15 minutes ago"
        return LakeError(f"Alpaca refused the request (403): {message}{hint}")
    if status in (401, 403):
        hint = "; check the key id and secret (paper and live keys differ)"
        return LakeError(f"Alpaca rejected the API keys ({status}): {message}{hint}")
    if status == 429:
        hint = "; lower requests_per_minute"
        return LakeError(f"Alpaca kept answering 429 (rate limit) after its retries: {message}{hint}")
    return LakeError(f"Alpaca error ({status}): {message}")


def _utc(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc)


@dataclass(frozen=True)
class _Fetcher:
    """What every request of one ingest shares; ``fetch`` runs one planned request."""

    client: StockHistoricalDataClient
    timeframe: str
    feed: DataFeed
    adjustment: AlpacaAdjustment
    url: str | None
    secrets: tuple[str, str]

    def fetch(self, symbols: list[str], first: int, last: int, sessions: Sessions) -> dict[str, list]:
        """All bars (every page) of ``symbols`` over sessions first..last, as {symbol: [bar dicts]}."""
        start_us = sessions.day_us[first] if FETCH_MINUTES[self.timeframe] == 0 else sessions.open_us[first]
        end = _utc(int(sessions.close_us[last]) - 1_000_000)  # Alpaca's end is inclusive, whole seconds
        request = bars_request(symbols, self.timeframe, _utc(int(start_us)), end, self.feed, self.adjustment)
        try:
            return self.client.get_stock_bars(request) or {}
        except APIError as exc:
            raise _explain(exc, self.secrets) from None
        except RequestException as exc:
            where = self.url or "data.alpaca.markets"
            raise LakeError(f"could not reach Alpaca at {where}: {type(exc).__name__}") from None


def _session_date(x: object) -> pd.Timestamp:
    """A date argument as a naive calendar date (aware times are read in New York)."""
    try:
        t = pd.Timestamp(x)
    except (ValueError, TypeError):
        raise LakeError(f"invalid date {x!r}: expected YYYY-MM-DD") from None
    if t.tzinfo is not None:
        t = t.tz_convert(NY).tz_localize(None)
    return t.normalize()


def _wanted_sessions(sessions: Sessions, start: object, end: object, sip: bool) -> np.ndarray:
    """Indices of the sessions in [start, end] (dates) that have closed, late enough for the feed."""
    lo, hi = _session_date(start), _session_date(end)
    check_window(lo, hi)
    a, b = sessions.dates.searchsorted(lo), sessions.dates.searchsorted(hi, side="right")
    now_us = pd.Timestamp.now(tz="UTC").value // 1000 - (_SIP_DELAY_US if sip else 0)
    idx = np.arange(a, b)
    return idx[sessions.close_us[idx] <= now_us]


def ingest_alpaca(
    lake: Lake,
    symbols: list[str],
    timeframe: str,
    start: date | str,
    end: date | str,
    *,
    feed: str = "iex",
    adjustment: str = "raw",
    api_key: str,
    secret_key: str,
    url: str | None = None,
    requests_per_minute: int = 190,
    retry_wait_seconds: float = 3,
    progress: Callable[[str, int], None] | None = None,
    quarantine: bool = False,
) -> AlpacaIngestResult:
    """Fetch from Alpaca the bars of ``symbols`` the lake lacks in [start, end] and write them.

    ``progress(symbol, n)`` is called after each write with the bars just written for ``symbol``.
    Raises LakeError (one line, no keys) on refused keys, subscription limits or bad input.
    """
    timeframe = check_timeframe(timeframe)
    symbols = list(dict.fromkeys(check_symbol(s) for s in symbols))
    if feed not in _FEEDS:
        raise LakeError(f"unknown feed {feed!r}: use iex or sip")
    if adjustment not in {a.value for a in Adjustment}:
        valid = ", ".join(a.value for a in Adjustment)
        raise LakeError(f"unknown adjustment {adjustment!r}: use one of {valid}")
    lake_feed, alpaca_feed = _FEEDS[feed]
    meta = BarMeta(source=SOURCE, feed=lake_feed, adjustment=Adjustment(adjustment))
    sessions = nyse()
    wanted = _wanted_sessions(sessions, start, end, feed == "sip")

    runs: dict[str, list[tuple[int, int]]] = {}
    for sym in symbols:
        held = lake.adjustment_of(sym, timeframe)
        if held is not None and held != adjustment:
            raise LakeError(
                f"the lake holds {sym} {timeframe} with adjustment={held}; refusing to mix in "
                f"adjustment={adjustment} (run 'tradelab lake drop {sym} --timeframe {timeframe}' first)"
            )
        runs[sym] = missing_runs(wanted, lake.covered_sessions(sym, timeframe))
    result = AlpacaIngestResult()
    plan = plan_requests(runs, _PER_SESSION[FETCH_MINUTES[timeframe]])
    if not plan:
        return result

    client, adapter = make_client(api_key, secret_key, url, requests_per_minute, retry_wait_seconds)
    secrets = (api_key, secret_key)
    fetcher = _Fetcher(client, timeframe, alpaca_feed, AlpacaAdjustment(adjustment), url, secrets)
    what = f"{timeframe} from Alpaca"
    try:
        for batch, first, last in plan:
            raw = fetcher.fetch(batch, first, last, sessions)
            result.sessions_requested += len(batch) * (last - first + 1)
            for sym in batch:
                frame, dropped = to_lake_bars(raw.get(sym) or [], timeframe, sessions)
                result.rows_outside_session += dropped
                n = 0
                if len(frame):
                    written = lake.write_bars(
                        sym, timeframe, frame, meta, quarantine=quarantine, what=f"{sym} {what}"
                    )
                    result.merge(written)
                    n = written.rows_in - written.rows_quarantined
                if progress is not None:
                    progress(sym, n)
    finally:
        result.requests = adapter.sent
        client._session.close()
    return result
