"""A live runner in its own process, driven step by step over stdin by tests/chaos/harness.py.

    python -m tests.chaos.runner_child '<json config>'

It is the production start-up path: open the state store, build the ``Runner`` (the real
``AlpacaBroker`` against the simulator), reconcile (adopt orders, count fills missed while down),
seed and start the fill feed (``TradingStream`` with polling), then serve commands, one JSON line
each, answering ``ok`` when done:

* ``{"cmd": "sync", "fills": {cid: qty}}``: wait until the store has counted those fills, then
  until the runner is idle (its stops placed and acknowledged);
* ``{"cmd": "bars", "bars": [[symbol, ts_us, o, h, l, c, v], ...], "fills": {...}}``: the same
  wait, then the bars, then idle;
* ``{"cmd": "stop"}``: a graceful stop.

Kill points for the chaos tests (environment): ``CHAOS_KILL_AFTER_SUBMIT=n`` SIGKILLs the process
right after the broker accepted its n-th order and before the runner hears the answer;
``CHAOS_KILL_AFTER_INTENT=n`` right after the n-th intent is stored, before it is sent.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(cfg: dict) -> None:
    from data_lake import Lake
    from live_bridge.alpaca import AlpacaBroker
    from live_bridge.alpaca.feeds import AlpacaFillFeed
    from live_bridge.risk import RiskLimits
    from live_bridge.runner import COLUMNS, Runner, RunnerConfig
    from live_bridge.state import StateStore
    from research.params import load

    work = Path(cfg["work"])
    logging.basicConfig(filename=work / "child.log", level=logging.INFO if os.environ.get("CHAOS_DEBUG") else logging.WARNING,
                        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s")
    kill_submit = int(os.environ.get("CHAOS_KILL_AFTER_SUBMIT", "0"))
    kill_intent = int(os.environ.get("CHAOS_KILL_AFTER_INTENT", "0"))
    kill_cancel = os.environ.get("CHAOS_KILL_AT_CANCEL") == "1"
    counts = {"submit": 0, "intent": 0}

    class Broker(AlpacaBroker):
        def cancel(self, order_id):
            if kill_cancel:  # the decision that cancels stores its order's intent, then dies: the cancel never went
                n, deadline = counts["intent"], time.monotonic() + 5.0
                while counts["intent"] == n and time.monotonic() < deadline:
                    time.sleep(0.001)
                _die()
            return super().cancel(order_id)

        def submit(self, order):
            ack = super().submit(order)
            counts["submit"] += 1
            if counts["submit"] == kill_submit:
                _die()  # accepted by the broker; the runner never hears the answer
            return ack

    class Store(StateStore):
        def record_intent(self, intent, decision_ref=None, at=None, plan=()):
            new = super().record_intent(intent, decision_ref, at, plan)
            counts["intent"] += 1
            if counts["intent"] == kill_intent:
                _die()  # stored, never sent
            return new

    pf = load(Path(cfg["params"]))
    lake = Lake(Path(cfg["lake"]))
    until = int(cfg["history_until_us"])
    history = {}
    for sym in cfg["symbols"]:
        a = lake.load_arrays(sym, cfg["timeframe"])
        keep = a["ts"] <= until
        history[sym] = {c: np.asarray(a[c])[keep] for c in COLUMNS}
    config = RunnerConfig(timeframe=cfg["timeframe"], limits=RiskLimits(queue_for_next_open=True, **cfg.get("limits", {})),
                          trade_from=pd.Timestamp(cfg["trade_from_us"], unit="us", tz="UTC"),
                          decision_log=work / "decisions.jsonl")
    ws = cfg["url"].replace("http://", "ws://")
    with Store(work / "state.db") as store:
        broker = Broker(cfg["key"], cfg["secret"], paper=True, url_override=cfg["url"], retry_wait=0.0)
        runner = Runner(broker, pf, history, {}, store, config)
        logging.getLogger("chaos").info("reconcile: %s", runner.reconcile())
        runner.start()
        def on_update(u, debug=bool(os.environ.get("CHAOS_DEBUG"))):
            if debug:
                logging.getLogger("chaos").info("update %s %s", type(u).__name__,
                                                getattr(u, "client_order_id", None) or u.order.client_order_id)
            runner.on_update(u)

        feed = AlpacaFillFeed(cfg["key"], cfg["secret"], on_update=on_update,
                              url_override_ws=ws + "/stream", url_override_rest=cfg["url"],
                              retry_wait=0.0, poll_interval=0.2)
        runner.seed_fill_feed(feed)
        feed.start()
        reader = sqlite3.connect(f"file:{work / 'state.db'}?mode=ro", uri=True)  # sees committed rows only
        print("ready", flush=True)
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["cmd"] == "stop":
                break
            _wait_fills(reader, msg.get("fills", {}))
            runner.settle(60)
            if msg["cmd"] == "bars":
                for sym, ts, o, h, lo, c, v in msg["bars"]:
                    runner.on_bar(_Bar(sym, pd.Timestamp(ts, unit="us", tz="UTC"), o, h, lo, c, v))
                runner.settle(60)
            print("ok", flush=True)
        feed.stop()
        runner.stop()
        print("stopped", flush=True)


class _Bar:
    def __init__(self, symbol, ts, o, h, lo, c, v) -> None:
        self.symbol, self.ts, self.open, self.high, self.low, self.close, self.volume = symbol, ts, o, h, lo, c, v


def _wait_fills(reader: sqlite3.Connection, want: dict[str, float], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while True:
        have = dict(reader.execute("SELECT client_order_id, SUM(qty) FROM fills GROUP BY client_order_id"))
        if all(have.get(c, 0.0) >= q - 1e-9 for c, q in want.items()):
            return
        if time.monotonic() > end:
            raise TimeoutError(f"fills not counted: {[c for c, q in want.items() if have.get(c, 0.0) < q]}")
        time.sleep(0.005)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
