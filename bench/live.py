"""Decision latency of the live runner: from a bar's arrival to its decision done and its order on the wire, 100 symbols.

    python bench/live.py [--symbols 100] [--bars 20] [--sender process|threads|both]

Setup: the Alpaca-compatible simulator on loopback (REST + trade_updates websocket), the live
``Runner`` with the real alpaca-py ``TradingClient`` (``AlpacaBroker``), a params file trading
sma_cross (fast 5, slow 20, 2% stop) on N synthetic daily symbols (labelled synthetic), 580 bars
of warm-up history each. For each of ``--bars`` replay steps, the N bars are handed to the runner
at once (as a feed delivers them at the close) and the time from each bar's arrival to the end of
its decision (signal, risk check, state store, order handed to the sender) and to its order on the
wire (the sender's submit call) is recorded. Queueing counts: the last symbol of a step waits for
the ones before it, as in production. Between steps the runner is idle for IDLE seconds, as it is
between bars live, and refreshes its broker snapshot then (live: every 30 s while idle).
Peers, side by side in one run: the broker calls made from a child process (``ProcessSender``, what
the live daemon uses) and from threads of the runner's own process (``Sender``, replays and tests).
Rows: the whole path; the signal decision alone (``sleeves.decide``); one REST round trip.
Target: p99 < 50 ms for 100 symbols.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import secrets
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
IDLE = 1.0  # seconds between steps: the runner refreshes its broker snapshot while idle, as it does live
sys.path.insert(0, str(ROOT))

from live_bridge.alpaca import AlpacaBroker  # noqa: E402 - after the path


def params_file(symbols: list[str]):
    from research.params import DataWindow, Entry, ExitRulesModel, Metrics, ParamsFile, RunInfo, SelectionInfo
    from research.params import EntryVerdict, GateThresholds, Verdict

    m = Metrics(**{k: 1.0 for k in Metrics.model_fields})
    entries = [Entry(strategy="sma_cross", symbol=s, regime="all", status="active",
                     params={"fast": 5, "slow": 20, "short": False}, exit_rules=ExitRulesModel(stop_loss=0.02, allow_short=False),
                     in_sample=m, out_of_sample=m, oos_trades=50, n_trials=1, deflated_sharpe=0.99, pbo=0.1,
                     stability=0.9, gate=EntryVerdict(passed=True)) for s in symbols]
    return ParamsFile(schema_version=1, created_at=pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime(),
                      code_version="bench", run=RunInfo(job="manual", notebook="bench/live.py", run_dir="bench"),
                      data=DataWindow(timeframe="1Day", start=date(2020, 1, 2), end=date(2025, 12, 31), symbols=symbols,
                                      bars_hash={s: "synthetic" for s in symbols}),
                      selection=SelectionInfo(objective="sharpe", min_trades=1), gate=GateThresholds(),
                      verdict=Verdict(promoted=True, reasons=("bench",)), entries=entries)


def _simulator(conn, frames, key: str, secret: str) -> None:
    """The child process: the simulator on loopback, its replay clock stepped on the parent's word."""
    from simulator import BrokerConfig, ReplayClock, SimulatorState, serve
    from simulator.trading import broker_app

    state = SimulatorState(api_key=key, secret_key=secret)
    clock = ReplayClock(frames, "1Day")
    app = broker_app(clock, config=BrokerConfig(cash=10_000_000), state=state, api_key=key, secret_key=secret)
    with serve(app) as sim:
        conn.send(sim.url)
        while (cmd := conn.recv()) != "stop":
            if cmd == "step":
                bars = clock.step()
                conn.send(sorted(bars) if bars else [])
            elif cmd == "orders":
                conn.send(len(app.state.broker.orders()))


class WireTimedBroker(AlpacaBroker):
    """The broker the sender uses (in its own process, or in threads): notes when each order goes on
    the wire. ``time.perf_counter`` is CLOCK_MONOTONIC on Linux, one clock for every process."""

    def __init__(self, *args, wire_log: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wire_log = wire_log
        self._spec = (type(self), self._spec[1], {**self._spec[2], "wire_log": wire_log})

    def submit(self, order):
        t = time.perf_counter()
        with open(self._wire_log, "a") as f:
            f.write(f"{order.client_order_id} {t!r}\n")
        return super().submit(order)


def run(mode: str, symbols: list[str], history, frames, bars: int) -> tuple[list, int, list]:
    """One replay of ``bars`` steps with the broker calls made by ``mode`` ("process" or "threads")."""
    from live_bridge.ids import parse_client_order_id
    from live_bridge.risk import RiskLimits
    from live_bridge.runner import Runner, RunnerConfig
    from live_bridge.sleeves import decide, sleeves
    from live_bridge.state import StateStore

    pf = params_file(symbols)
    key, secret = "bench-" + secrets.token_hex(4), secrets.token_hex(16)
    # the broker runs in its own process, as Alpaca does: its request handling must not share this
    # process's CPU time and GIL with the runner being measured
    ctl, child_end = mp.get_context("fork").Pipe()
    sim_proc = mp.get_context("fork").Process(target=_simulator, args=(child_end, frames, key, secret), daemon=True)
    sim_proc.start()
    sim_url = ctl.recv()
    arrived: dict[tuple[str, int], float] = {}
    arrivals: dict[tuple[str, int], float] = {}  # kept: the order timing looks them up
    latency: list[float] = []
    service: list[float] = []
    acked_at: dict[str, float] = {}

    class Timed(Runner):
        def _bar(self, bar):
            t0 = time.perf_counter()
            super()._bar(bar)
            ts = int(pd.Timestamp(bar.ts).value // 1000)
            end = time.perf_counter()
            latency.append(end - arrived.pop((bar.symbol, ts)))
            service.append(end - t0)

        def _ack(self, order, ack, err):
            acked_at.setdefault(order.client_order_id, time.perf_counter())
            super()._ack(order, ack, err)

    class Bar:  # what a feed hands over
        def __init__(self, sym, row):
            self.symbol, self.ts = sym, row.ts
            self.open, self.high, self.low, self.close, self.volume = row.open, row.high, row.low, row.close, row.volume

    work = Path(tempfile.mkdtemp())
    wire_log = work / "wire.txt"
    wire_log.touch()
    with StateStore(work / "state.db") as store:
        broker = WireTimedBroker(key, secret, url_override=sim_url, retry_wait=0.0, wire_log=str(wire_log))
        # the snapshot is refreshed while idle (every 30 s live); the bench compresses the hours between
        # daily bars to IDLE seconds, so the refresh interval shrinks with it
        cfg = RunnerConfig(limits=RiskLimits(queue_for_next_open=True), snapshot_seconds=IDLE,
                           decision_log=work / "decisions.jsonl", sender_process=mode == "process")
        runner = Timed(broker, pf, history, {}, store, cfg)
        runner.start()
        for step in range(bars):
            ctl.send("step")
            names = ctl.recv()
            if not names:
                break
            # what the feed hands over, parsed before the clock starts (a websocket frame is parsed as
            # it comes in; the feed's own parsing is not the runner's latency)
            batch = [(Bar(s, frames[s].iloc[step]), (s, int(frames[s].ts.iloc[step].value // 1000))) for s in names]
            time.sleep(IDLE)  # the close, then the bars a little later: the runner is idle in between
            for bar, k in batch:
                arrived[k] = arrivals[k] = time.perf_counter()
                runner.on_bar(bar)
            runner.settle(120)
        ctl.send("orders")
        orders = ctl.recv()
        errors = list(runner.errors)
        runner.stop()
        wire, acked = [], []
        for line in wire_log.read_text().splitlines():
            cid, t = line.split()
            p = parse_client_order_id(cid, ["sma_cross"])
            if p.intent == "stop":
                continue  # placed on a fill, not decided on a bar
            bar = arrivals[(p.symbol, int(pd.Timestamp(p.bar_time).value // 1000))]
            wire.append(float(t) - bar)
            if cid in acked_at:
                acked.append(acked_at[cid] - bar)
        # the decision alone, and one REST order round trip, for scale
        sl = sleeves(pf)[0]
        h = runner.history[sl.symbol]  # warm-up + replayed bars, as the runner holds them
        decide(sl, h, "1Day", None)
        t = []
        for _ in range(200):
            t0 = time.perf_counter()
            decide(sl, h, "1Day", None)
            t.append(time.perf_counter() - t0)
        rt = []
        for _ in range(50):
            t0 = time.perf_counter()
            broker.account()
            rt.append(time.perf_counter() - t0)
    ctl.send("stop")
    sim_proc.join(10)
    ms = lambda x: np.array(x) * 1000  # noqa: E731
    rows = [("bar arrival -> decision done (orders handed to the sender), all symbols queued", ms(latency)),
            ("bar arrival -> order on the wire (submit called), bars with an order", ms(wire)),
            ("bar arrival -> order acknowledged (answer back on the runner's queue)", ms(acked)),
            ("one symbol's decision, from its turn in the queue (service time)", ms(service)),
            ("sleeves.decide alone (signals + exits over 600 bars)", ms(t)),
            ("one REST round trip (GET /v2/account via alpaca-py)", ms(rt))]
    return rows, orders, errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--bars", type=int, default=20)
    ap.add_argument("--sender", choices=("process", "threads", "both"), default="both")
    args = ap.parse_args()

    from data_lake.sources.synthetic import synthetic_arrays
    from live_bridge.runner import COLUMNS

    symbols = [f"SYN{i:03d}" for i in range(args.symbols)]
    history, frames = {}, {}
    for i, s in enumerate(symbols):
        a = synthetic_arrays(s, 600, i, timeframe="1Day")
        cut = len(a["ts"]) - args.bars
        history[s] = {c: a[c][:cut] for c in COLUMNS}
        frames[s] = pd.DataFrame({"ts": pd.to_datetime(a["ts"][cut:], unit="us", utc=True),
                                  **{c: a[c][cut:] for c in COLUMNS[1:]}})
    modes = ("process", "threads") if args.sender == "both" else (args.sender,)
    results = {m: run(m, symbols, history, frames, args.bars) for m in modes}
    first = results[modes[0]][0]
    n = len(first[0][1]) // max(args.symbols, 1)
    print(f"\nlive decision latency: {args.symbols} symbols x {n} bars, {results[modes[0]][1]} orders sent "
          f"(synthetic daily bars; simulator in its own process on loopback)\n")
    print(f"{'measure':74s} {'sender':>8s} {'n':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for i, (name, _) in enumerate(first):
        for m in modes:
            x = results[m][0][i][1]
            if len(x):
                print(f"{name:74s} {m:>8s} {len(x):5d} {np.percentile(x, 50):8.2f} {np.percentile(x, 99):8.2f} "
                      f"{x.max():8.2f}")
    for m in modes:
        rows, _, errors = results[m]
        if errors:
            print(f"\n{m}: runner errors: {len(errors)}, first: {errors[0]}")
        worst = max(np.percentile(rows[0][1], 99), np.percentile(rows[1][1], 99) if len(rows[1][1]) else 0.0)
        print(f"target: p99 < 50 ms (decision done, and order on the wire), sender {m}: "
              f"{worst:.1f} ms -> {'met' if worst < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
