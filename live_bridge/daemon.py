"""``tradelab live run``: the runner wired to Alpaca (or the simulator) until told to stop.

Fills come from ``TradingStream`` (polling fallback); bars from the market-data stream for minute
bars (``AlpacaBarFeed``, polling fallback) or, for daily bars, from the REST bars endpoint once a
session has closed. History and regimes come from the lake. SIGTERM/SIGINT, or a ``HALT`` file in
the state folder (``tradelab live halt``), stop it after the event in hand.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from data_lake import Lake
from research.params import ParamsFile
from research.regimes import load_regimes

from .ports import BrokerError
from .risk import RiskLimits
from .runner import COLUMNS, Runner, RunnerConfig
from .sleeves import sleeves
from .state import StateStore

log = logging.getLogger(__name__)
HISTORY_DAYS = 800


def lake_history(lake: Lake, symbols: list[str], timeframe: str, end: pd.Timestamp) -> dict[str, dict[str, np.ndarray]]:
    """The bars before ``end`` the signals warm up on, per symbol, as arrays."""
    out = {}
    for sym in symbols:
        f = lake.read_bars(sym, timeframe, end - pd.Timedelta(days=HISTORY_DAYS), end)
        out[sym] = {c: (pd.DatetimeIndex(f["ts"]).as_unit("us").asi8 if c == "ts" else f[c].to_numpy(float))
                    for c in COLUMNS}
    return out


def run_forever(lake: Lake, pf: ParamsFile, key: str, secret: str, *, paper: bool = True, url: str | None = None,
                state_dir: Path = Path("runs/live"), poll: float = 5.0) -> None:
    """Trade until SIGTERM/SIGINT or the HALT file (see the module docstring)."""
    from .alpaca import AlpacaBroker
    from .alpaca_bars import RestBars
    from .alpaca_feeds import AlpacaBarFeed, AlpacaFillFeed

    state_dir.mkdir(parents=True, exist_ok=True)
    tf = pf.data.timeframe
    symbols = sorted({x for s in sleeves(pf) for x in s.data})
    if not symbols:
        raise ValueError("the params file has no active entry: every regime is flat, nothing to trade")
    regimes = {b: load_regimes(lake, b) for b in {s.benchmark for s in sleeves(pf) if s.by_regime}}
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ws = url.replace("http://", "ws://").replace("https://", "wss://") if url else None
    with StateStore(state_dir / "state.db") as store:
        broker = AlpacaBroker(key, secret, paper=paper, url_override=url)
        now = pd.Timestamp(broker.clock().timestamp)  # the broker's time (a replaying simulator's too)
        history = lake_history(lake, symbols, tf, now)
        cfg = RunnerConfig(timeframe=tf, limits=RiskLimits(queue_for_next_open=tf == "1Day"),
                           trade_from=now, decision_log=state_dir / "decisions.jsonl",
                           sender_process=True, keep_decisions=10_000)  # alpaca-py's CPU off the decision process (sender.py)
        runner = Runner(broker, pf, history, regimes, store, cfg)
        for note in runner.reconcile():
            log.info("reconcile: %s", note)
        runner.start()
        fills = AlpacaFillFeed(key, secret, paper=paper, on_update=runner.on_update,
                               url_override_ws=ws + "/stream" if ws else None, url_override_rest=url)
        runner.seed_fill_feed(fills)  # what the store counted before a restart is not counted again
        fills.start()
        bars = None
        if tf == "1Min":
            bars = AlpacaBarFeed(key, secret, symbols, on_bar=runner.on_bar,
                                 url_override_ws=ws + "/v2/iex" if ws else None, url_override_rest=url)
            bars.start()
        rest = RestBars(key, secret, tf, url_override=url) if tf != "1Min" else None
        if rest is not None:
            for s in symbols:
                if len(history[s]["ts"]):
                    rest.last[s] = pd.Timestamp(int(history[s]["ts"][-1]), unit="us", tz="UTC").to_pydatetime()
        try:
            while not stop.wait(poll):
                if (state_dir / "HALT").exists():
                    log.warning("HALT file found: stopping")
                    break
                if rest is not None:
                    try:
                        for bar in rest.since(symbols, broker.clock().timestamp):
                            runner.on_bar(bar)
                    except BrokerError as err:  # Alpaca unreachable for now: the next poll asks again
                        log.warning("bars poll failed: %s", err)
        finally:
            if bars is not None:
                bars.stop()
            fills.stop()
            runner.stop()
