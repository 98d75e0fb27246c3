"""A replay: the live runner, through the real alpaca-py clients, against the simulator, in lockstep.

The simulator's clock and bars come from the lake (``ReplayClock``); the runner is the live one
(``Runner`` with ``AlpacaBroker``, fills from ``TradingStream`` with polling fallback). Bars reach
it the way they reach a live runner: minute bars from the market-data websocket (``AlpacaBarFeed``,
``StockDataStream``, with its REST fallback), every coarser timeframe from the REST bars endpoint
(``RestBars``, which builds the lake's bars from Alpaca's). A 1Hour replay runs the simulator on
30Min bars made from the lake's minute bars, as Alpaca holds them: its 1Hour bars are then
clock-aligned (09:00, 10:00), as Alpaca's are, and the runner must build the lake's session-aligned
hours from the half hours itself. Lockstep makes the replay deterministic: each clock
step runs the bar's open, then waits until the runner has handled the open's fills (and placed
their stops), then runs the bar's close; the replay waits until the bar has arrived (REST answer
or stream message), until the runner has handled the fills of the close (a stop inside the bar:
live, the stop fills during the bar and its bar message comes after it ends), then hands the
runner the bar and waits until it has sent its orders. The broker's equity is recorded after
every bar.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from data_lake import Lake
from data_lake.calendar import nyse
from research.params import ParamsFile
from research.regimes import RegimeParams, regimes_from_daily

from .regimes_live import daily_arrays
from .risk import RiskLimits
from .runner import COLUMNS, Runner, RunnerConfig
from simulator import BrokerConfig, ReplayClock, SimulatorState, StreamControl, serve, streams_router
from simulator.trading import broker_app
from .sleeves import sleeves
from .state import StateStore

if TYPE_CHECKING:
    from .alpaca.streams import FeedStats

WARMUP_DAYS = 800  # calendar days of history before the replay (longest indicator: sma_convergence 250 bars)
WARMUP_SESSIONS = 5  # minute replays: whole sessions before the replay (session VWAP, gaps, 1950 bars of MAs)
TIMEFRAMES = ("1Day", "1Min", "5Min", "15Min", "1Hour")


@dataclass
class ReplayResult:
    """What a replay leaves: the broker's fills and equity per bar, the runner's decisions and errors."""

    params: ParamsFile
    start: pd.Timestamp
    end: pd.Timestamp
    cash: float
    bars: dict[str, pd.DataFrame]  # replay bars per symbol (lake frames)
    history: dict[str, dict[str, np.ndarray]]  # warm-up + replay arrays per symbol
    fills: pd.DataFrame  # the broker's fills: ts, symbol, side, qty, price, client_order_id, bar (its stamp)
    equity: pd.Series  # the broker's equity after each bar close
    decisions: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    regimes: dict = field(default_factory=dict)
    decision_log: Path | None = None
    candidates: bool = False
    bar_feed: FeedStats | None = None  # minute replays: what the bar feed delivered (stream vs REST fallback)
    legs: dict = field(default_factory=dict)  # an OCO leg's client_order_id (the broker's) -> its parent's (ours)
    epochs: list | None = None  # params files traded one after another: (from_us, file) (None: ``params`` alone)
    trade_from: int | None = None  # the runner's first bar (UTC µs; None: the replay's first bar)
    halts: list = field(default_factory=list)  # the runner's halts: (when, UTC µs; scope), as the store keeps them
    # netted symbols (several strategies at once, runner_book.py): each strategy's share of the broker's
    # fills as the state store allocated it (ts, symbol, side, qty, price, strategy, bar); parity reads these
    virtual: pd.DataFrame | None = None


@dataclass(frozen=True)
class Faults:
    """What a replay's ``on_step`` hook can break: REST answers (``rest.add(path, status, times)``),
    answers after a change took effect (``after_accept``: an order accepted, then 504), the
    websockets (``streams``: drop_all, duplicate_next, reorder_next, pause/resume) and the broker
    (``broker``: the simulated account, e.g. its BrokerConfig)."""

    rest: object  # simulator.FaultQueue
    after_accept: object  # simulator.FaultQueue
    streams: StreamControl
    broker: object


def replay(lake: Lake, params: ParamsFile, start: str, end: str, *, cash: float = 100_000.0,
           work_dir: str | Path | None = None, limits: RiskLimits | None = None, step_timeout: float = 30.0,
           progress=None, candidates: bool = False, on_step=None, broker_config: BrokerConfig | None = None,
           ) -> ReplayResult:
    """Replay [start, end) of the params' symbols (1Day or 1Min) through the live runner and the simulator.

    ``limits`` default to the backtest's reach: daily entries queue for the next open, no portfolio
    rules (``RiskLimits.per_sleeve``: budgets and correlated groups, which a per-sleeve backtest does
    not model), and minute replays drop the live entry cutoff before the close (the backtest's ``flat_at_close`` already
    takes no entry in a session's last two bars; pass ``RiskLimits()`` to see what the cutoff refuses).
    ``on_step(step, faults: Faults)`` runs before each clock step (chaos tests inject faults there);
    ``broker_config`` replaces the simulated broker's (its ``cash`` is this function's).
    """
    from .alpaca import AlpacaBroker
    from .alpaca.feeds import AlpacaFillFeed

    tf = params.data.timeframe
    if tf not in TIMEFRAMES:
        raise ValueError(f"replays run {' or '.join(TIMEFRAMES)} params, got {tf}")
    traded = {x for s in sleeves(params, candidates) for x in s.data}
    if not traded:
        raise ValueError("the params file has no active entry: nothing to replay")
    benches = sorted({s.benchmark for s in sleeves(params, candidates) if s.by_regime})
    symbols = sorted(traded | set(benches))  # a benchmark's bars reach the runner even when it is not traded
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    lake = lake.snapshot()  # every symbol and benchmark from one lake state
    frames, history = _load(lake, symbols, tf, t0, t1)
    # The runner labels sessions itself from the benchmark bars it receives (regimes_live.py), starting
    # from the daily bars before the replay; parity's backtest uses the labels of the whole lake
    # (what the nightly's table says): a runner that could not label live would fail parity.
    daily = {b: _daily_before(lake, b, t0) for b in benches}
    regimes = {b: _lake_labels(lake, b, t1, params.regime_params()) for b in benches}
    key, secret = "replay-" + secrets.token_hex(4), secrets.token_hex(16)
    state = SimulatorState(api_key=key, secret_key=secret)
    served = _half_hours(lake, symbols, t0, t1) if tf == "1Hour" else frames
    clock = ReplayClock({s: f[["ts", "open", "high", "low", "close", "volume"]] for s, f in served.items()},
                        "30Min" if tf == "1Hour" else tf)
    control = StreamControl()
    bcfg = replace(broker_config, cash=cash) if broker_config is not None else BrokerConfig(cash=cash)
    app = broker_app(clock, config=bcfg, state=state, api_key=key, secret_key=secret,
                     routers=[streams_router(state, clock.hub, control)])
    work = Path(work_dir or tempfile.mkdtemp(prefix="tradelab-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    sim_broker = app.state.broker
    equity: dict[pd.Timestamp, float] = {}
    first_ts = pd.Timestamp(min(f["ts"].iloc[0] for f in frames.values()))
    if limits is None:  # the backtest has no portfolio (budgets, correlated groups): per sleeve, as it
        limits = RiskLimits.per_sleeve(queue_for_next_open=True) if tf == "1Day" else \
            RiskLimits.per_sleeve(no_new_entries_minutes=0)
    cfg = RunnerConfig(timeframe=tf, limits=limits, trade_from=first_ts, decision_log=work / "decisions.jsonl")
    with serve(app) as sim, StateStore(work / "state.db") as store:
        ws = sim.url.replace("http://", "ws://")
        broker = AlpacaBroker(key, secret, paper=True, url_override=sim.url, retry_wait=0.0)
        runner = Runner(broker, params, history, daily, store, cfg, candidates=candidates)
        fills = AlpacaFillFeed(key, secret, on_update=runner.on_update,
                               url_override_ws=ws + "/stream", url_override_rest=sim.url, retry_wait=0.0,
                               reconcile_interval=min(60.0, step_timeout / 3))  # a held-back fill is polled in time
        source = _RestSource(key, secret, tf, sim.url, clock, history, first_ts) if tf != "1Min" else \
            _StreamSource(key, secret, symbols, ws + "/v2/iex", sim.url, clock, first_ts)
        runner.reconcile()  # before the worker starts: one thread at a time uses the store
        runner.start()
        fills.start()
        try:
            _wait(lambda: clock.hub.subscribers("trade_update") > 0, 15, "the trade_updates stream did not connect")
            source.start()
            clock.between = lambda bars: _settle_fills(runner, sim_broker, step_timeout)
            steps, fill_bars = 0, []
            while True:
                if on_step is not None:
                    on_step(steps, Faults(state.faults, app.state.after_accept, control, sim_broker))
                if (bars := clock.step()) is None:
                    break
                steps += 1
                # Every fill of a step is its symbol's bar of the step (at the open or inside). The
                # stamp cannot say which: an inside fill is stamped at the bar's close, which is the
                # next minute bar's open.
                fill_bars += [bars[f.symbol].ts_us for f in sim_broker.fills()[len(fill_bars):]]
                arrived = source.take(bars, step_timeout)
                _settle_fills(runner, sim_broker, step_timeout)  # the close's fills first, as live sees them
                for bar in arrived:
                    runner.on_bar(bar)
                _settle_fills(runner, sim_broker, step_timeout)
                step_us = max(b.ts_us for b in bars.values())  # a half hour's: its hour's equity once it ends
                equity[pd.Timestamp(_bar_start(step_us, tf), unit="us", tz="UTC")] = \
                    float(sim_broker.account_json()["equity"])
                if progress:
                    progress(steps, clock)
        finally:
            clock.between = None
            bar_feed = source.stats()
            quiet = logging.getLogger("alpaca.trading.stream")
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # our own stop closes the socket: not a warning worth printing
            try:
                source.stop()
                fills.stop()
            finally:
                quiet.setLevel(level)
            runner.stop()
            control.drop_all()
        halts = store.halt_marks()
        virtual = _virtual_fills(store, set(runner._netted), sim_broker.fills(), fill_bars)
        fill_rows = [{"ts": pd.Timestamp(f.timestamp_us, unit="us", tz="UTC"), "symbol": f.symbol, "side": f.side,
                      "qty": float(f.qty), "price": float(f.price), "client_order_id": f.client_order_id,
                      "bar": pd.Timestamp(b, unit="us", tz="UTC")}
                     for f, b in zip(sim_broker.fills(), fill_bars)]
    full_hist = {s: {c: np.concatenate([history[s][c], (_us(frames[s]["ts"]) if c == "ts"
                                                         else frames[s][c].to_numpy(float))]) for c in COLUMNS}
                 for s in symbols}
    return ReplayResult(params, t0, t1, cash, frames, full_hist, pd.DataFrame(fill_rows, columns=[
        "ts", "symbol", "side", "qty", "price", "client_order_id", "bar"]), pd.Series(equity, name="equity"),
        list(runner.decisions), runner.errors, regimes, cfg.decision_log, candidates, bar_feed, dict(runner._legs),
        halts=halts, virtual=virtual)


def _virtual_fills(store: StateStore, netted: set[str], fills, bars: list[int]) -> pd.DataFrame:
    """The netted symbols' fills as the state store allocated them to their strategies, each stamped with
    the replay step of the broker fill it is a portion of (a cross: its own time, the next bar's open)."""
    cols = ["ts", "symbol", "side", "qty", "price", "strategy", "bar"]
    if not netted:
        return pd.DataFrame(columns=cols)
    # a portion of a broker fill takes that fill's step and exact price (the trade update's price is a
    # decimal string); by execution id, else by the order's one fill (a polled fill's id is synthetic)
    by_eid = {f.execution_id: (b, f.price) for f, b in zip(fills, bars)}
    per_order: dict[str, list] = {}
    for f, b in zip(fills, bars):
        per_order.setdefault(f.order_id, []).append((b, f.price))
    rows: dict[tuple[str, str], list] = {}  # a strategy's portions of one execution (crossed + net): one fill
    for eid, oid, strategy, symbol, side, qty, price, at in store._db.execute(
            "SELECT execution_id, order_id, strategy, symbol, side, qty, price, timestamp FROM fills ORDER BY rowid"):
        if symbol in netted:
            ts = pd.Timestamp(at)
            one = per_order.get(oid, ())
            b, px = by_eid.get(eid.split("#")[0]) or (one[0] if len(one) == 1 else (None, price))
            row = rows.setdefault((strategy, eid.split("#")[0]), [ts, symbol, side, 0.0, float(px), strategy,
                                                                   ts if b is None else pd.Timestamp(b, unit="us", tz="UTC")])
            row[3] += float(qty)
    return pd.DataFrame(list(rows.values()), columns=cols)


def _daily_before(lake: Lake, benchmark: str, t0: pd.Timestamp) -> dict[str, np.ndarray]:
    """The benchmark's 1Day bars before the replay: what a runner starting then has of it."""
    f = lake.read_bars(benchmark, "1Day", t0 - pd.Timedelta(days=WARMUP_DAYS), t0)
    if f.empty:
        raise ValueError(f"no {benchmark} 1Day bars before {t0:%Y-%m-%d} in the lake: the params trade per "
                         "regime of it (ingest its daily bars)")
    return daily_arrays(f)


def _lake_labels(lake: Lake, benchmark: str, t1: pd.Timestamp, definition: RegimeParams) -> pd.DataFrame:
    """The regimes of the benchmark's 1Day bars in the lake up to the replay's end (the nightly's labels,
    with the params file's regime definition)."""
    f = lake.read_bars(benchmark, "1Day", None, t1)
    a = daily_arrays(f)
    return regimes_from_daily(a["ts"], a["open"], a["high"], a["low"], a["close"], definition)


def _half_hours(lake: Lake, symbols: list[str], t0: pd.Timestamp, t1: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The replay's 30Min bars per symbol, made from the lake's 1Min bars (a 1Hour replay's simulator)."""
    from simulator import Timeframe, aggregate

    cut_at = pd.Timestamp(t0, tz="America/New_York").tz_convert("UTC")
    out = {}
    for sym in symbols:
        f = lake.read_bars(sym, "1Min", cut_at, t1)
        if f.empty:
            raise ValueError(f"a 1Hour replay runs the simulator on minute bars: the lake holds no {sym} 1Min bars "
                             f"in [{t0:%Y-%m-%d}, {t1:%Y-%m-%d})")
        cols = {c: (_us(f["ts"]) if c == "ts" else f[c].to_numpy(float)) for c in
                ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")}
        half = aggregate(cols, Timeframe(30))
        out[sym] = pd.DataFrame({**half, "ts": pd.to_datetime(half["ts"], unit="us", utc=True)})
    return out


def _bar_start(ts_us: int, tf: str) -> int:
    """The start of the ``tf`` bar (session-aligned) holding ``ts_us``."""
    from data_lake.calendar import US_PER_MIN, session_index
    from data_lake.schema import TIMEFRAMES as MINUTES

    if MINUTES[tf] == 0:
        return ts_us
    s = nyse()
    opened = int(s.open_us[session_index(np.array([ts_us]), s)[0]])
    width = MINUTES[tf] * US_PER_MIN
    return opened + (ts_us - opened) // width * width


def _load(lake: Lake, symbols: list[str], tf: str, t0: pd.Timestamp, t1: pd.Timestamp):
    """Per symbol, the replay's bars (lake frame) and the warm-up before them (runner arrays)."""
    if tf == "1Day":
        lo = t0 - pd.Timedelta(days=WARMUP_DAYS)
    else:
        dates = nyse().dates
        lo = dates[max(int(dates.searchsorted(t0.normalize())) - WARMUP_SESSIONS, 0)]
    cut_at = pd.Timestamp(t0, tz="America/New_York").tz_convert("UTC")
    frames, history = {}, {}
    for sym in symbols:
        full = lake.read_bars(sym, tf, lo, t1)
        cut = full["ts"] >= cut_at
        frames[sym] = full[cut].reset_index(drop=True)
        if frames[sym].empty:
            raise ValueError(f"the lake holds no {sym} {tf} bars in [{t0:%Y-%m-%d}, {t1:%Y-%m-%d})")
        history[sym] = {c: (_us(full.loc[~cut, "ts"]) if c == "ts" else full.loc[~cut, c].to_numpy(float))
                        for c in COLUMNS}
    return frames, history


class _RestSource:
    """Daily bars: fetched from the REST bars endpoint once the step has closed them."""

    def __init__(self, key: str, secret: str, tf: str, url: str, clock: ReplayClock, history: dict,
                 first_ts: pd.Timestamp) -> None:
        from .alpaca.bars import RestBars

        self.rest, self.clock = RestBars(key, secret, tf, url_override=url, retry_wait=0.0), clock
        for s, h in history.items():  # the warm-up history is known: fetch only what the replay shows
            self.rest.last[s] = pd.Timestamp(int(h["ts"][-1]), unit="us", tz="UTC").to_pydatetime() \
                if len(h["ts"]) else (first_ts - pd.Timedelta(days=1)).to_pydatetime()

    def start(self) -> None:
        pass

    def take(self, bars: dict, timeout: float) -> list:
        from .ports import BrokerError

        end = time.monotonic() + timeout
        while True:  # the bars endpoint failing for a while (5xx, timeouts) delays the bar, never skips it
            try:
                return self.rest.since(sorted(bars), self.clock.now.to_pydatetime())
            except BrokerError as err:
                if time.monotonic() > end:
                    raise TimeoutError(f"the bars endpoint kept failing: {err}") from None
                time.sleep(0.05)

    def stats(self) -> None:
        return None

    def stop(self) -> None:
        pass


class _StreamSource:
    """Minute bars: the market-data websocket's messages (AlpacaBarFeed), held until the step asks."""

    def __init__(self, key: str, secret: str, symbols: list[str], ws_url: str, url: str, clock: ReplayClock,
                 first_ts: pd.Timestamp) -> None:
        from .alpaca.feeds import AlpacaBarFeed

        self.clock = clock
        self._cond = threading.Condition()
        self._got: list = []
        self._last: dict[str, int] = {}
        self.feed = AlpacaBarFeed(key, secret, symbols, on_bar=self._on_bar, url_override_ws=ws_url,
                                  url_override_rest=url, since=first_ts.to_pydatetime(),
                                  now=lambda: clock.now.to_pydatetime(), retry_wait=0.0)

    def _on_bar(self, bar) -> None:  # the feed's worker thread
        with self._cond:
            self._got.append(bar)
            self._last[bar.symbol] = int(pd.Timestamp(bar.ts).value // 1000)
            self._cond.notify_all()

    def start(self) -> None:
        self.feed.start()
        _wait(lambda: self.clock.hub.subscribers("bar") > 0, 15, "the market-data stream did not subscribe")

    def take(self, bars: dict, timeout: float) -> list:
        """The bars received up to this step's (every symbol's bar of the step has arrived)."""
        due = {s: b.ts_us for s, b in bars.items()}
        with self._cond:
            if not self._cond.wait_for(lambda: all(self._last.get(s, -1) >= t for s, t in due.items()),
                                       timeout):
                raise TimeoutError(f"the bar stream did not deliver {sorted(due)} at {self.clock.now}")
            got, self._got = self._got, []
        return got

    def stats(self) -> FeedStats:
        return self.feed.stats()

    def stop(self) -> None:
        self.feed.stop()


def _us(ts: pd.Series) -> np.ndarray:
    """UTC microseconds of a timestamp column, whatever its unit."""
    return pd.DatetimeIndex(ts).as_unit("us").asi8


def _settle_fills(runner: Runner, sim_broker, timeout: float) -> None:
    """Wait until the runner has every fill the broker made, then until its queue is empty."""
    n = len(sim_broker.fills())
    _wait(lambda: runner.fills_seen >= n, timeout, f"the runner saw {runner.fills_seen} of {n} fills")
    runner.settle(timeout)


def _wait(cond, timeout: float, message: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(message)
        time.sleep(0.005)
