"""What the soak tests share: the `tradelab live` process, its status.json, and lockstep stepping.

The simulator (broker, replay clock) lives in the test process; the runner is the real `tradelab
live` command in its own process. Lockstep comes from the runner's own status.json (written every
poll): a step's open waits until the runner has counted the broker's fills and is idle (their stops
placed), and its close until every symbol's bar of the step is the runner's last and it is idle
again (its orders acknowledged), as tests/chaos/harness.py does for its child runner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

TIMEOUT = 60.0


def hermetic_env(key: str, secret: str, **extra: str) -> dict:
    """The caller's environment without any TRADELAB_* / APCA_* variable, plus the test's keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELAB_", "APCA_"))}
    return {**env, "APCA_API_KEY_ID": key, "APCA_API_SECRET_KEY": secret, "PYTHONUNBUFFERED": "1", **extra}


class Live:
    """The `tradelab live` process (in ``work``, state in runs/live) and its status.json."""

    def __init__(self, work: Path, url: str, env: dict, *args: str) -> None:
        self.work, self.url, self.env, self.args = work, url, env, args
        self.state = work / "runs" / "live"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.log = open(self.work / "live.log", "a")  # noqa: SIM115 - closed in stop()
        # the soak holds the live account to the per-sleeve backtest (parity, the shadow report): the
        # portfolio budget would trim its sma_cross entries on 5 symbols (budgets: test_risk_portfolio.py)
        self.proc = subprocess.Popen([sys.executable, "-m", "tradelab", "live", "--url", self.url,
                                      "--params", "params/current.json", "--lake", "lake",
                                      "--strategy-budget", "sma_cross=1", *self.args],
                                     cwd=self.work, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.starts += 1
        self.wait(lambda s: s.get("pid") == self.proc.pid and s.get("idle") and "params" in s, "the runner to start")

    def status(self) -> dict:
        try:
            return json.loads((self.state / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, cond, what: str, timeout: float = TIMEOUT) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"tradelab live exited ({self.proc.returncode}) waiting for {what}:\n"
                                     + (self.work / "live.log").read_text()[-3000:])
            s = self.status()
            if s and cond(s):
                return s
            time.sleep(0.01)
        raise TimeoutError(f"waiting for {what}; last status {self.status()}")

    def stop(self) -> None:
        """SIGTERM: the runner finishes the event in hand and exits (as systemd stops it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.log.close()


class Lockstep:
    """Steps the simulator's clock in lockstep with the runner; records each fill's bar."""

    def __init__(self, clock, sim_broker, live: Live) -> None:
        self.clock, self.broker, self.live = clock, sim_broker, live
        self.fill_bars: list[int] = []
        clock.between = lambda bars: live.wait(self.settled, "the open's fills")

    def settled(self, s: dict) -> bool:
        return bool(s.get("idle")) and s.get("fills_seen", -1) >= len(self.broker.fills())

    def step(self) -> dict:
        """One clock step: its open (fills counted, stops placed), then its close (bars decided)."""
        bars = self.clock.step()
        assert bars is not None, "the replay ran out of bars"
        self.fill_bars += [bars[f.symbol].ts_us for f in self.broker.fills()[len(self.fill_bars):]]
        due = {s: pd.Timestamp(b.ts_us, unit="us", tz="UTC").isoformat() for s, b in bars.items()}
        self.live.wait(lambda s: self.settled(s) and all(s["last_bar"].get(x) == t for x, t in due.items()
                                                         if x in s.get("last_bar", {})), f"the bars of {due}")
        return bars

    def fills(self) -> pd.DataFrame:
        """The broker's fills with the bar each belongs to (the step that made it)."""
        rows = [{"ts": pd.Timestamp(f.timestamp_us, unit="us", tz="UTC"), "symbol": f.symbol, "side": f.side,
                 "qty": float(f.qty), "price": float(f.price), "client_order_id": f.client_order_id,
                 "bar": pd.Timestamp(b, unit="us", tz="UTC")} for f, b in zip(self.broker.fills(), self.fill_bars)]
        return pd.DataFrame(rows, columns=["ts", "symbol", "side", "qty", "price", "client_order_id", "bar"])


def arrays(frame: pd.DataFrame) -> dict:
    """A lake frame as the runner's arrays (ts in UTC µs)."""
    return {c: (pd.DatetimeIndex(frame["ts"]).as_unit("us").asi8 if c == "ts" else frame[c].to_numpy(float))
            for c in ("ts", "open", "high", "low", "close", "volume")}


def simulator(frames: dict, timeframe: str, key: str, secret: str, port: int = 0):
    """The Alpaca-compatible simulator replaying ``frames`` (trading REST, bars, both websockets):
    (the served context manager, the replay clock, the simulated broker)."""
    from simulator import BrokerConfig, ReplayClock, SimulatorState, StreamControl, serve, streams_router
    from simulator.trading import broker_app

    state = SimulatorState(api_key=key, secret_key=secret)
    clock = ReplayClock(frames, timeframe)
    app = broker_app(clock, config=BrokerConfig(cash=100_000.0), state=state, api_key=key, secret_key=secret,
                     routers=[streams_router(state, clock.hub, StreamControl())])
    return serve(app, port=port), clock, app.state.broker


def stored(state_dir: Path) -> tuple[list, int | None, list]:
    """What the runner's state store says it traded: (epochs, anchor, halts), read after it stopped."""
    from live_bridge.state import StateStore
    from research.params import loads

    with StateStore(state_dir / "state.db") as store:
        return [(f, loads(text)) for f, _, text, _ in store.epochs()], store.anchor(), store.halt_marks()
