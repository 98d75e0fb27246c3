"""``tradelab live``: the runner wired to Alpaca (or the simulator), for weeks, until told to stop.

Fills come from ``TradingStream`` (polling fallback); bars from the market-data stream for minute
bars (``AlpacaBarFeed``, polling fallback, backfilled from the end of the lake) or, for daily bars,
from the REST bars endpoint once a session has closed. Warm-up history and the regime benchmark's
daily bars come from the lake; the labels of the sessions it trades the runner makes itself from
the bars it receives (regimes_live.py).

Unattended operation:
* **Restarts continue.** The first bar traded (the *anchor*) and every params file traded, with the
  bar it took over from, live in the state store: a restarted runner rebuilds the same decision path
  (positions, entry prices, stops, trailing extremes, bars held) and decides the last bar at start
  when its fill is still ahead (started after the close, or during the session).
* **Params reload** without a restart: a new ``params/current.json`` (watched), ``tradelab live
  reload`` (the RELOAD file) or SIGHUP; refused files are alerted and the one in force stays.
* **The broker blips.** An unreachable broker at start or later is retried with backoff and logged,
  never a traceback; an all-flat params file idles until a promoted one comes.
* ``status.json`` in the state folder says what the running process trades (read by ``tradelab
  live status``), atomically rewritten every poll. SIGTERM/SIGINT stop it after the event in hand.
* **HALT** (``tradelab live halt``; runner_halts.py). Marked done: the runner stops at its next poll,
  and a start is refused. Flatten pending: no bar is traded after the poll that finds it; the runner
  cancels every open order and closes every position with its own orders, retrying while the broker
  is out of reach (``status.json`` says ``halting``; one ``broker_unreachable`` alert per outage,
  one ``halt`` alert), then marks the file done and stops. A start on a pending HALT does the same
  and exits without trading.
* **Control** (the dashboard's API, ``tradelab live control``; control.py): each poll takes the
  requests of ``control/`` (flatten one symbol, on the runner's worker); a start on a done HALT that
  was asked to resume waits for the market to be closed, then trades from the next session's open.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from data_lake import Lake
from data_lake.atomic import atomic_write_bytes
from data_lake.calendar import nyse
from data_lake.schema import TIMEFRAMES
from research.params import ParamsFile, load, loads

from .control import EntryBlocks, resume_asked, serve_inbox, wait_for_resume
from .ports import BrokerError
from .regimes_live import daily_arrays
from .risk import DEFAULT_BUDGETS, RiskLimits
from .runner import COLUMNS, Runner, RunnerConfig
from .runner_halts import HaltedError, HaltFile, HaltLoop, read_halt
from .sleeves import sleeves_over
from .state import StateStore

log = logging.getLogger(__name__)
HISTORY_DAYS = 800
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # seconds between tries of an unreachable broker


def lake_history(lake: Lake, symbols: list[str], timeframe: str, end: pd.Timestamp,
                 start: pd.Timestamp | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The bars before ``end`` the signals warm up on, per symbol, as arrays."""
    out = {}
    for sym in symbols:
        lo = (start if start is not None else end) - pd.Timedelta(days=HISTORY_DAYS)
        f = lake.read_bars(sym, timeframe, lo, end)
        out[sym] = {c: (pd.DatetimeIndex(f["ts"]).as_unit("us").asi8 if c == "ts" else f[c].to_numpy(float))
                    for c in COLUMNS}
    return out


def first_actionable_bar(now: pd.Timestamp, timeframe: str) -> int:
    """The start (UTC µs) of the first bar whose decision still fills ahead of ``now``: the bar in
    progress, or between sessions the last bar of the session before (its decision fills at the next
    open). A runner started then loses no decision the backtest makes."""
    cal = nyse()
    now_us = int(pd.Timestamp(now).value // 1000)
    i = int(np.searchsorted(cal.close_us, now_us, side="right"))  # the session in progress or the next one
    if i >= len(cal.close_us):
        raise ValueError(f"{now} is past the NYSE calendar's last session")
    step = TIMEFRAMES[timeframe]
    if now_us < cal.open_us[i]:  # between sessions: the last bar of the session before
        if i == 0:
            return int(cal.day_us[0] if step == 0 else cal.open_us[0])
        if step == 0:
            return int(cal.day_us[i - 1])
        step_us = step * 60_000_000
        bars = -(-(int(cal.close_us[i - 1]) - int(cal.open_us[i - 1])) // step_us)  # the last one may be short
        last = int(cal.open_us[i - 1]) + (bars - 1) * step_us
        return int(last)
    if step == 0:
        return int(cal.day_us[i])
    return int(cal.open_us[i] + (now_us - cal.open_us[i]) // (step * 60_000_000) * step * 60_000_000)


def _symbols(epochs: list[tuple[int, ParamsFile]]) -> tuple[list[str], list[str]]:
    """(every symbol whose bars the sleeves decide on, benchmarks included; the regime benchmarks)."""
    sls = sleeves_over(epochs)
    benches = sorted({s.benchmark for s in sls if s.by_regime})
    return sorted({x for s in sls for x in s.data} | set(benches)), benches


class Daemon(HaltLoop):
    """One live runner's process: start-up, feeds, the poll loop (module docstring)."""

    def __init__(self, lake: Lake, params_path: Path, key: str, secret: str, *, paper: bool = True,
                 url: str | None = None, state_dir: Path = Path("runs/live"), poll: float = 5.0,
                 notifier=None, backoff: tuple[float, ...] = BACKOFF, sender_process: bool = True,
                 entry_cutoff: float = 15.0, budgets: dict[str, float] | None = None) -> None:
        self.lake, self.params_path, self.key, self.secret = lake, Path(params_path), key, secret
        self.paper, self.url, self.state_dir, self.poll = paper, url, Path(state_dir), poll
        self.notifier, self.backoff, self.sender_process = notifier, backoff, sender_process
        self.entry_cutoff = entry_cutoff  # intraday: no new entry in the last minutes of a session
        self.budgets = {**DEFAULT_BUDGETS, **(budgets or {})}  # per-strategy capital budgets (risk_limits.py)
        self.stop = threading.Event()
        self.reload_asked = threading.Event()
        self.broker_state = {"ok": None, "since": None, "error": None}
        self._seen_file: tuple | None = None
        self._refused: str | None = None
        self.started_at = pd.Timestamp.now(tz="UTC")
        self.ws = url.replace("http://", "ws://").replace("https://", "wss://") if url else None
        self.rest = None  # daily and hourly bars: polled from REST
        self.bars = None  # minute bars: the market-data stream
        self.symbols: list[str] = []  # whose bars the runner decides on (benchmarks included)
        self.halting: dict | None = None  # a pending HALT being carried out (status.json)
        self._runner_stopped = False

    # --- the broker, retried ----------------------------------------------------------------------
    def _call(self, what: str, fn: Callable):
        """``fn()`` until it answers, with backoff; BrokerError 4xx (not 429) is not retried."""
        tries = 0
        while True:
            try:
                out = fn()
            except BrokerError as err:
                if 400 <= err.status < 500 and err.status != 429:
                    raise
                self._down(what, err, tries)
            except (OSError, TimeoutError) as err:
                self._down(what, err, tries)
            else:
                if self.broker_state["ok"] is False:
                    log.warning("broker reachable again (%s) after %d failed tries", what, tries)
                self.broker_state.update(ok=True, error=None)
                return out
            tries += 1
            if self.stop.wait(self.backoff[min(tries - 1, len(self.backoff) - 1)]):
                raise KeyboardInterrupt("stopped while waiting for the broker")

    def _down(self, what: str, err: BaseException, tries: int) -> None:
        wait = self.backoff[min(tries, len(self.backoff) - 1)]
        if self.broker_state["ok"] is not False:
            self.broker_state.update(ok=False, since=pd.Timestamp.now(tz="UTC").isoformat())
        self.broker_state["error"] = f"{type(err).__name__}: {err}"
        log.warning("broker unreachable %s (try %d): %s; again in %gs", what, tries + 1, err, wait)
        if tries == 2 and self.notifier is not None:  # a blip is logged; an outage is also alerted
            from .alerts import Alert

            self.notifier.notify(Alert("broker_unreachable", f"{what}: {err} (retrying with backoff)",
                                       severity="critical"))
        self._write_status(None)

    # --- start-up ------------------------------------------------------------------------------------
    def _epochs(self, store: StateStore, pf: ParamsFile) -> list[tuple[int, ParamsFile]]:
        stored = [(f, loads(text, f"state epoch {sha[:12]}")) for f, sha, text, _ in store.epochs()]
        if not stored:
            from research.params import dumps

            store.record_epoch(0, pf.sha256(), dumps(pf).decode(), str(self.params_path))
            stored = [(0, pf)]
        return stored

    def run(self) -> None:
        from .alpaca import AlpacaBroker
        from .alpaca.bars import RestBars
        from .alpaca.feeds import AlpacaFillFeed

        self.state_dir.mkdir(parents=True, exist_ok=True)
        halt = read_halt(self.state_dir)
        if halt is not None and halt.done and not resume_asked(halt):
            raise HaltedError(halt.refusal(self.state_dir))
        pf = load(self.params_path) if halt is None or halt.done else None  # a pending HALT needs no params file
        self._seen_file = _file_key(self.params_path)
        ws = self.ws
        with StateStore(self.state_dir / "state.db") as store:
            broker = AlpacaBroker(self.key, self.secret, paper=self.paper, url_override=self.url)
            clock = lambda: self._call("reading the clock", broker.clock)  # noqa: E731
            if resume_asked(read_halt(self.state_dir)):  # resumed at the next session: never mid-session
                if not wait_for_resume(self.state_dir, clock, self.stop, self.poll):
                    return
            now = pd.Timestamp(clock().timestamp)  # the broker's time
            halt = read_halt(self.state_dir)  # (perhaps written while the broker was out of reach)
            if halt is not None:
                if halt.done:
                    raise HaltedError(halt.refusal(self.state_dir))
                try:
                    self._flatten_for_halt(broker, store, halt, None)  # and no trading
                finally:
                    self._write_status(None, stopped=True)
                return
            pf = pf or load(self.params_path)  # (a HALT removed while the broker was out of reach)
            epochs = self._epochs(store, pf)
            tf = epochs[-1][1].data.timeframe
            anchor = store.anchor() or store.set_anchor(first_actionable_bar(now, tf))
            anchor_ts = pd.Timestamp(anchor, unit="us", tz="UTC")
            symbols, benches = _symbols(epochs)
            self.symbols = symbols
            lake = self.lake.snapshot()  # the warm-up of every symbol and benchmark from one lake state
            history = lake_history(lake, symbols, tf, now, start=min(anchor_ts, now))
            self._catch_up(history, tf, now)
            daily = {b: daily_arrays(lake.read_bars(b, "1Day", now - pd.Timedelta(days=HISTORY_DAYS), now))
                     for b in benches}
            del lake  # its lease goes: the runner lives for weeks, the lake's retired files must not
            limits = RiskLimits(queue_for_next_open=tf == "1Day", no_new_entries_minutes=self.entry_cutoff,
                                strategy_budgets=self.budgets)
            cfg = RunnerConfig(timeframe=tf, limits=limits,
                               trade_from=anchor_ts, decision_log=self.state_dir / "decisions.jsonl",
                               sender_process=self.sender_process, keep_decisions=10_000, decide_at_start=True)
            runner = Runner(broker, epochs[-1][1], history, daily, store, cfg, epochs=epochs, notifier=self.notifier)
            runner.risk = EntryBlocks(limits, store)  # symbols flattened by hand take no entry that session
            self.runner = runner
            if not runner.sleeves:
                log.warning("nothing is active in %s (every entry is flat): idling until a promoted params file "
                            "is installed", self.params_path)
            for note in self._call("reconciling", runner.reconcile):
                log.info("reconcile: %s", note)
            if tf != "1Min":
                self.rest = RestBars(self.key, self.secret, tf, url_override=self.url)
                _follow(self.rest, history, symbols)
            runner.start()
            if pf.sha256() != epochs[-1][1].sha256():  # a file installed while the runner was down
                self._reload(runner, pf, tf, now, source=str(self.params_path))
            fills = AlpacaFillFeed(self.key, self.secret, paper=self.paper, on_update=runner.on_update,
                                   url_override_ws=ws + "/stream" if ws else None, url_override_rest=self.url)
            runner.seed_fill_feed(fills)  # what the store counted before a restart is not counted again
            fills.start()
            if self.bars is None:  # (a start-time reload may have started it already)
                self.bars = self._bar_feed(runner, tf, self.symbols, history)
            try:
                halt = self._loop(runner, broker, tf)
                if halt is not None and self._stop_trading(runner):  # flatten pending: trade no more, then
                    self._flatten_for_halt(broker, store, halt, runner)  # flatten with the runner's own orders
            finally:
                if self.bars is not None:
                    self.bars.stop()
                fills.stop()
                if not self._runner_stopped:
                    runner.stop()
                self._write_status(runner, stopped=True)

    def _catch_up(self, history: dict, tf: str, now: pd.Timestamp) -> None:
        """Append the bars the broker has after the lake's last one and closed by ``now`` (a restart
        during a session, or before the evening's ingest): the decision path is rebuilt on the
        bars the runner saw before, never on a history with a hole."""
        from .alpaca.bars import RestBars

        rest = RestBars(self.key, self.secret, tf, url_override=self.url)  # its own: it sees bars in progress
        syms = sorted(history)
        _follow(rest, history, syms)
        bars = self._call("catching up the bars", lambda: rest.since(syms, now.to_pydatetime())) if syms else []
        step = TIMEFRAMES[tf] * 60_000_000
        now_us = int(now.value // 1000)
        cal = nyse()
        new: dict[str, list] = {}
        for b in bars:
            ts = int(pd.Timestamp(b.ts).value // 1000)
            closes = cal.close_us[min(int(np.searchsorted(cal.close_us, ts, side="right")), len(cal.close_us) - 1)] \
                if step == 0 else ts + step
            if closes <= now_us:  # a bar still in progress is the feed's, when it completes
                new.setdefault(b.symbol, []).append((ts, b.open, b.high, b.low, b.close, b.volume))
        for s, rows in new.items():
            rows.sort()
            add = np.array(rows, dtype=float).T
            h = history[s]
            for i, c in enumerate(COLUMNS):
                h[c] = np.concatenate([h[c], add[i].astype(np.int64) if c == "ts" else add[i]])
        if new:
            log.info("caught up %d bars after the lake from the broker (%s)", sum(map(len, new.values())),
                     ", ".join(sorted(new)))

    def _bar_feed(self, runner: Runner, tf: str, symbols: list[str], history: dict):
        from .alpaca.feeds import AlpacaBarFeed

        if tf != "1Min" or not symbols:
            return None
        last = max((int(h["ts"][-1]) for h in history.values() if len(h["ts"])), default=None)
        since = pd.Timestamp(last + 60_000_000, unit="us", tz="UTC").to_pydatetime() if last is not None else None
        feed = AlpacaBarFeed(self.key, self.secret, symbols, on_bar=runner.on_bar, since=since,
                             url_override_ws=self.ws + "/v2/iex" if self.ws else None, url_override_rest=self.url)
        feed.start()
        return feed

    # --- the loop ---------------------------------------------------------------------------------------
    def _loop(self, runner: Runner, broker, tf: str) -> HaltFile | None:
        """Poll until stopped: None, or a HALT whose flatten is pending (the caller carries it out)."""
        while not self.stop.wait(self.poll):
            halt = read_halt(self.state_dir)
            if halt is not None:
                log.warning("HALT file found (flatten %s, by %s): %s", halt.flatten, halt.by,
                            "stopping" if halt.done else "no more trading; flattening the account")
                return None if halt.done else halt
            self._watch_params(runner, broker, tf)
            serve_inbox(self.state_dir, runner)  # the control API's requests (flatten one symbol)
            if self.rest is not None:
                try:
                    now = broker.clock().timestamp
                    self.broker_state.update(ok=True, error=None)
                    bars = self.rest.since(self.symbols, now) if self.symbols else []
                except BrokerError as err:  # Alpaca unreachable for now: the next poll asks again
                    log.warning("bars poll failed: %s", err)
                    self.broker_state.update(ok=False, error=str(err))
                    bars = []
                newest = {}
                for b in bars:
                    newest[b.symbol] = max(newest.get(b.symbol, b.ts), b.ts)
                for b in sorted(bars, key=lambda b: (b.ts, b.symbol not in runner.books, b.symbol)):
                    runner.on_bar(b, act=b.ts == newest[b.symbol])  # a caught-up bar a newer one follows: no act
            self._write_status(runner)
        return None

    def _watch_params(self, runner: Runner, broker, tf: str) -> None:
        key = _file_key(self.params_path)
        asked = self.reload_asked.is_set() or (self.state_dir / "RELOAD").exists()
        if key == self._seen_file and not asked:
            return
        self._seen_file = key
        self.reload_asked.clear()
        (self.state_dir / "RELOAD").unlink(missing_ok=True)
        try:
            pf = load(self.params_path)
        except (OSError, ValueError) as exc:
            msg = f"{self.params_path}: {exc}"
            if msg != self._refused:
                self._refused = msg
                runner.alert_later("reload_failed", msg)
            return
        if pf.data.timeframe != tf:
            runner.alert_later("reload_failed", f"{self.params_path} trades {pf.data.timeframe}, the runner {tf}: "
                                                "restart the runner to change timeframe")
            return
        now = pd.Timestamp(self._call("reading the clock", broker.clock).timestamp)
        self._reload(runner, pf, tf, now, source=str(self.params_path))

    def _reload(self, runner: Runner, pf: ParamsFile, tf: str, now: pd.Timestamp, source: str) -> None:
        """Hand the runner a new file with the warm-up bars of the symbols and benchmarks it lacks."""
        try:
            symbols, benches = _symbols([*runner.epochs, (runner.epochs[-1][0] + 1, pf)])
        except ValueError as exc:
            runner.alert_later("reload_failed", f"{source}: {exc}")
            return
        new = [s for s in symbols if s not in runner._hist or not len(runner._hist[s])]
        lake = self.lake.snapshot()
        history = lake_history(lake, new, tf, now) if new else {}
        daily = {b: daily_arrays(lake.read_bars(b, "1Day", now - pd.Timedelta(days=HISTORY_DAYS), now))
                 for b in benches if b not in runner.books}
        if self.rest is not None:
            _follow(self.rest, history, new)
        runner.reload(pf, history, daily, source)
        self.symbols = symbols
        if new and self.bars is not None:  # the minute feed subscribes to the new symbols
            self.bars.stop()
            self.bars = self._bar_feed(runner, tf, symbols, {**runner.history, **history})

    def _write_status(self, runner: Runner | None, stopped: bool = False) -> None:
        """``status.json``: what this process trades and how it is doing (never a key)."""
        body = {"pid": os.getpid(), "started_at": self.started_at.isoformat(), "stopped": stopped,
                "updated_at": pd.Timestamp.now(tz="UTC").isoformat(), "paper": self.paper,
                "broker": dict(self.broker_state), "params_path": str(self.params_path)}
        if self.halting is not None:
            body["halting"] = dict(self.halting)
        if runner is not None:
            try:
                body.update(runner.status())
            except RuntimeError:  # the worker grew a dict while we read it (a reload adding symbols): next poll
                return
        try:
            atomic_write_bytes(json.dumps(body, default=str, indent=1).encode(), self.state_dir / "status.json")
        except OSError as exc:
            log.warning("status.json not written: %s", exc)


def _follow(rest, history: dict, symbols: list[str]) -> None:
    """Poll ``symbols`` from the bar after their last one in ``history``."""
    for s in symbols:
        if len(history[s]["ts"]):
            rest.last[s] = pd.Timestamp(int(history[s]["ts"][-1]), unit="us", tz="UTC").to_pydatetime()


def _file_key(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def run_forever(lake: Lake, params_path: Path, key: str, secret: str, *, paper: bool = True, url: str | None = None,
                state_dir: Path = Path("runs/live"), poll: float = 5.0, notifier=None,
                entry_cutoff: float = 15.0, budgets: dict[str, float] | None = None) -> None:
    """Trade until SIGTERM/SIGINT or the HALT file (see the module docstring); SIGHUP reloads the params."""
    d = Daemon(lake, params_path, key, secret, paper=paper, url=url, state_dir=state_dir, poll=poll, notifier=notifier,
               entry_cutoff=entry_cutoff, budgets=budgets)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: d.stop.set())
    signal.signal(signal.SIGHUP, lambda *_: d.reload_asked.set())
    try:
        d.run()
    except KeyboardInterrupt:
        log.warning("stopped before the runner started")
    finally:
        time.sleep(0)
