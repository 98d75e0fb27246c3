"""A replay: the live runner, through the real alpaca-py clients, against the simulator, in lockstep.

The simulator's clock and bars come from the lake (``ReplayClock``); the runner is the live one
(``Runner`` with ``AlpacaBroker``, fills from ``TradingStream`` with polling fallback, bars from
the REST bars endpoint for daily bars, which Alpaca publishes after the close). Lockstep makes
the replay deterministic: each clock step runs the bar's open, then waits until the runner has
handled the open's fills (and placed their stops), then runs the bar's close and waits until the
runner has taken the bar and sent its orders. The broker's equity is recorded after every bar.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data_lake import Lake
from research.params import ParamsFile
from research.regimes import load_regimes

from .ports import Fill
from .risk import RiskLimits
from .runner import COLUMNS, Runner, RunnerConfig
from .simulator import BrokerConfig, ReplayClock, SimulatorState, StreamControl, serve, streams_router
from .simulator.trading import broker_app
from .sleeves import sleeves
from .state import StateStore

WARMUP_DAYS = 800  # calendar days of history before the replay (longest indicator: sma_convergence 250 bars)


@dataclass
class ReplayResult:
    """What a replay leaves: the broker's fills and equity per bar, the runner's decisions and errors."""

    params: ParamsFile
    start: pd.Timestamp
    end: pd.Timestamp
    cash: float
    bars: dict[str, pd.DataFrame]  # replay bars per symbol (lake frames)
    history: dict[str, dict[str, np.ndarray]]  # warm-up + replay arrays per symbol
    fills: pd.DataFrame  # the simulator's fills: ts, symbol, side, qty, price, client_order_id
    equity: pd.Series  # the broker's equity after each bar close
    decisions: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    regimes: dict = field(default_factory=dict)
    decision_log: Path | None = None
    candidates: bool = False


def replay(lake: Lake, params: ParamsFile, start: str, end: str, *, cash: float = 100_000.0,
           work_dir: str | Path | None = None, limits: RiskLimits | None = None, step_timeout: float = 30.0,
           progress=None, candidates: bool = False) -> ReplayResult:
    """Replay [start, end) of the params' symbols through the live runner against the simulator."""
    from .alpaca import AlpacaBroker
    from .alpaca_bars import RestBars
    from .alpaca_feeds import AlpacaFillFeed

    tf = params.data.timeframe
    if tf != "1Day":
        raise ValueError(f"replays run daily params for now, got {tf}")
    symbols = sorted({s.symbol for s in sleeves(params, candidates)})
    if not symbols:
        raise ValueError("the params file has no active entry: nothing to replay")
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    frames, history = {}, {}
    for sym in symbols:
        full = lake.read_bars(sym, tf, t0 - pd.Timedelta(days=WARMUP_DAYS), t1)
        cut = full["ts"] >= pd.Timestamp(t0, tz="America/New_York").tz_convert("UTC")
        frames[sym] = full[cut].reset_index(drop=True)
        if frames[sym].empty:
            raise ValueError(f"the lake holds no {sym} {tf} bars in [{start}, {end})")
        history[sym] = {c: (_us(full.loc[~cut, "ts"]) if c == "ts" else full.loc[~cut, c].to_numpy(float))
                        for c in COLUMNS}
    benches = {s.benchmark for s in sleeves(params, candidates) if s.by_regime}
    regimes = {b: load_regimes(lake, b) for b in benches}
    for b, r in regimes.items():
        if r.empty:
            raise ValueError(f"no regimes for {b} in the lake: run tradelab regimes --benchmark {b}")
    key, secret = "replay-" + secrets.token_hex(4), secrets.token_hex(16)
    state = SimulatorState(api_key=key, secret_key=secret)
    clock = ReplayClock({s: f[["ts", "open", "high", "low", "close", "volume"]] for s, f in frames.items()}, tf)
    control = StreamControl()
    app = broker_app(clock, config=BrokerConfig(cash=cash), state=state, api_key=key, secret_key=secret,
                     routers=[streams_router(state, clock.hub, control)])
    work = Path(work_dir or tempfile.mkdtemp(prefix="tradelab-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    sim_broker = app.state.broker
    equity: dict[pd.Timestamp, float] = {}
    first_ts = pd.Timestamp(min(f["ts"].iloc[0] for f in frames.values()))
    cfg = RunnerConfig(timeframe=tf, limits=limits or RiskLimits(queue_for_next_open=True), trade_from=first_ts,
                       decision_log=work / "decisions.jsonl")
    with serve(app) as sim, StateStore(work / "state.db") as store:
        ws = sim.url.replace("http://", "ws://")
        broker = AlpacaBroker(key, secret, paper=True, url_override=sim.url, retry_wait=0.0)
        runner = Runner(broker, params, history, regimes, store, cfg, candidates=candidates)
        fills = AlpacaFillFeed(key, secret, on_update=lambda u: runner.on_fill(u) if isinstance(u, Fill) else None,
                               url_override_ws=ws + "/stream", url_override_rest=sim.url, retry_wait=0.0)
        runner.reconcile()  # before the worker starts: one thread at a time uses the store
        runner.start()
        fills.start()
        try:
            _wait(lambda: clock.hub.subscribers("trade_update") > 0, 15, "the trade_updates stream did not connect")
            clock.between = lambda bars: _settle_fills(runner, sim_broker, step_timeout)
            rest = RestBars(key, secret, tf, url_override=sim.url, retry_wait=0.0)
            for s in symbols:  # the warm-up history is known: fetch only what the replay shows
                rest.last[s] = pd.Timestamp(int(history[s]["ts"][-1]), unit="us", tz="UTC").to_pydatetime() \
                    if len(history[s]["ts"]) else (first_ts - pd.Timedelta(days=1)).to_pydatetime()
            steps = 0
            while True:
                bars = clock.step()
                if bars is None:
                    break
                steps += 1
                for bar in rest.since(sorted(bars), clock.now.to_pydatetime()):
                    runner.on_bar(bar)
                _settle_fills(runner, sim_broker, step_timeout)
                equity[pd.Timestamp(max(b.ts_us for b in bars.values()), unit="us", tz="UTC")] = \
                    float(sim_broker.account_json()["equity"])
                if progress:
                    progress(steps, clock)
        finally:
            clock.between = None
            fills.stop()
            runner.stop()
            control.drop_all()
        fill_rows = [{"ts": pd.Timestamp(f.timestamp_us, unit="us", tz="UTC"), "symbol": f.symbol, "side": f.side,
                      "qty": float(f.qty), "price": float(f.price), "client_order_id": f.client_order_id}
                     for f in sim_broker.fills()]
    full_hist = {s: {c: np.concatenate([history[s][c], (_us(frames[s]["ts"]) if c == "ts"
                                                         else frames[s][c].to_numpy(float))]) for c in COLUMNS}
                 for s in symbols}
    return ReplayResult(params, t0, t1, cash, frames, full_hist, pd.DataFrame(fill_rows, columns=[
        "ts", "symbol", "side", "qty", "price", "client_order_id"]), pd.Series(equity, name="equity"),
        runner.decisions, runner.errors, regimes, cfg.decision_log, candidates)


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
