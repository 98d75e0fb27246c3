"""Decision latency of the live runner: from a bar's arrival to its decision done and its order on the wire, 100 symbols.

    python bench/live.py [--symbols 100] [--bars 20] [--sender process|threads|both] [--sleeves 500]
                         [--strategies 1|2|3] [--decisions-only]

Setup: the Alpaca-compatible simulator on loopback (REST + trade_updates websocket), the live
``Runner`` with the real alpaca-py ``TradingClient`` (``AlpacaBroker``), a params file trading
sma_cross (fast 5, slow 20, 2% stop) on N synthetic daily symbols (labelled synthetic), 580 bars
of warm-up history each (``--strategies 2``: rsi_reversion trades each symbol too, ``3``: and
breakout; netted, one order per symbol: 250 symbols x 2 = the issue's 500 sleeves). For each of
``--bars`` replay steps, the N bars are handed to the runner at once (as a feed delivers them at
the close; the runner takes them off its queue together and decides them in one batch) and the time from each bar's arrival to the end of
its decision (signal, risk check, state store, order handed to the sender) and to its order on the
wire (the sender's submit call) is recorded. Queueing counts: the last symbol of a step waits for
the ones before it, as in production. Between steps the runner is idle for IDLE seconds, as it is
between bars live, and refreshes its broker snapshot then (live: every 30 s while idle).
Peers, side by side in one run: the broker calls made from a child process (``ProcessSender``, what
the live daemon uses) and from threads of the runner's own process (``Sender``, replays and tests).
Rows: the whole path; a batch's CPU time on the worker thread (the wall time an idle machine would
see: this box is shared); the signal decision alone (``sleeves.decide``); one REST round trip.
Target: p99 < 50 ms for 100 symbols.

Decision layer, many sleeves (``--sleeves``, 0 = skip; ``--decisions-only`` skips the runner rows):
``--sleeves`` sleeves on half as many synthetic daily symbols (600 bars each), two per symbol:
sma_cross on every regime, and rsi_reversion or breakout switched by the regime of a synthetic
benchmark (trend scheme). At each of DECISION_BARS bars every symbol gets its bar (appended to its
``History``, as the runner does), then all sleeves are decided for that bar, timed as one: the
per-sleeve ``sleeves.decide`` loop (the peer) and ``live_bridge.batch.decide_many``, side by side
(alternating which goes first), their decisions checked equal; wall time, and the thread's CPU time
(what the wall time would be on an idle machine: the bench box is shared). Target: p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import gc
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
DECISION_BARS = 40  # bars of the many-sleeves decision rows
IDLE = 1.0  # seconds between steps: the runner refreshes its broker snapshot while idle, as it does live
sys.path.insert(0, str(ROOT))

from live_bridge.alpaca import AlpacaBroker  # noqa: E402 - after the path


#: the strategies of ``--strategies N``: each symbol traded by the first N at once (netted, runner_book.py)
STRATEGIES = (("sma_cross", {"fast": 5, "slow": 20, "short": False}),
              ("rsi_reversion", {"n": 7, "lower": 35.0, "upper": 65.0, "short": False}),
              ("breakout", {"n": 5, "k": 1.0, "exit_n": 3, "short": False}))


def params_file(symbols: list[str], strategies: int = 1):
    from research.params import DataWindow, Entry, ExitRulesModel, Metrics, ParamsFile, RunInfo, SelectionInfo
    from research.params import EntryVerdict, GateThresholds, Verdict

    m = Metrics(**{k: 1.0 for k in Metrics.model_fields})
    entries = [Entry(strategy=name, symbol=s, regime="all", status="active",
                     params=dict(params), exit_rules=ExitRulesModel(stop_loss=0.02, allow_short=False),
                     in_sample=m, out_of_sample=m, oos_trades=50, n_trials=1, deflated_sharpe=0.99, pbo=0.1,
                     stability=0.9, gate=EntryVerdict(passed=True))
               for s in symbols for name, params in STRATEGIES[:strategies]]
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


def run(mode: str, symbols: list[str], history, frames, bars: int, strategies: int = 1) -> tuple[list, int, list]:
    """One replay of ``bars`` steps with the broker calls made by ``mode`` ("process" or "threads")."""
    from live_bridge.ids import parse_client_order_id
    from live_bridge.risk import RiskLimits
    from live_bridge.runner import Runner, RunnerConfig
    from live_bridge.sleeves import decide, sleeves
    from live_bridge.state import StateStore

    pf = params_file(symbols, strategies)
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
    batch_cpu: list[float] = []  # the worker thread's CPU time per batch: its wall time on an idle machine
    acked_at: dict[str, float] = {}

    class Timed(Runner):
        # the bars of one close are taken off the queue together and decided in one batch (runner_bars.py):
        # a symbol's latency ends when its own decision (and its orders) are done
        def _bars(self, items):
            t0, c0 = time.perf_counter(), time.thread_time()
            super()._bars(items)
            service.append((time.perf_counter() - t0) / len(items))
            batch_cpu.append(time.thread_time() - c0)

        def _decide_symbol(self, sym, hist, act=True, decided={}):  # noqa: B006 - the runner's own default
            super()._decide_symbol(sym, hist, act, decided)
            k = (sym, int(hist.last_ts))
            if k in arrived:
                latency.append(time.perf_counter() - arrived.pop(k))

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
            ("one symbol's decision, from its turn in the queue (service time: a batch / its bars)", ms(service)),
            ("a whole batch (every symbol's bar of a close), the worker thread's CPU time", ms(batch_cpu)),
            ("sleeves.decide alone (signals + exits over 600 bars)", ms(t)),
            ("one REST round trip (GET /v2/account via alpaca-py)", ms(rt))]
    return rows, orders, errors


def decision_world(n_sleeves: int, bars: int):
    """(Histories per symbol, the bars still to come, sleeves, the regimes table) of the decision rows."""
    from data_lake.sources.synthetic import synthetic_arrays
    from live_bridge.history import COLUMNS, History
    from live_bridge.sleeves import Sleeve
    from research.exits import ExitRules
    from research.regimes import RegimeParams, regimes_from_daily
    from research.signals.breakout import Breakout
    from research.signals.rsi_reversion import RsiReversion
    from research.signals.sma_cross import SmaCross

    b = synthetic_arrays("BENCH", 700, 0, timeframe="1Day")
    regimes = regimes_from_daily(b["ts"], b["open"], b["high"], b["low"], b["close"], RegimeParams(scheme="trend"))
    stop = ExitRules(stop_loss=0.03, trailing_stop=0.05, allow_short=False)
    hist, rest, sls = {}, {}, []
    for i in range((n_sleeves + 1) // 2):
        s = f"SYN{i:03d}"
        a = synthetic_arrays(s, 600 + bars, i + 1, timeframe="1Day")
        hist[s] = History({c: a[c][:600] for c in COLUMNS}, "1Day")
        rest[s] = {c: a[c][600:] for c in COLUMNS}
        sls.append(Sleeve("sma_cross", s, ("all",), ((SmaCross(10, 40), stop),), "BENCH"))
        name, ps = (("rsi_reversion", (RsiReversion(14, 30.0, 70.0), RsiReversion(7, 25.0, 75.0))) if i % 2 else
                    ("breakout", (Breakout(), Breakout(n=40, exit_n=20))))
        sls.append(Sleeve(name, s, ("range", "up"), ((ps[0], stop), (ps[1], ExitRules(time_stop=10))), "BENCH"))
    return hist, rest, sls[:n_sleeves], regimes


def decision_rows(n_sleeves: int, bars: int = DECISION_BARS) -> list[tuple[str, np.ndarray]]:
    """All sleeves decided for one bar, timed as one: the per-sleeve ``decide`` loop and ``decide_many``."""
    from live_bridge.batch import Item, decide_many
    from live_bridge.history import COLUMNS
    from live_bridge.sleeves import decide

    hist, rest, sls, regimes = decision_world(n_sleeves, bars)

    def items():
        return [Item(sl, hist[sl.symbol].arrays, regimes if sl.by_regime else None, hist[sl.symbol].bars) for sl in sls]

    def loop():
        return [decide(it.sleeve, it.arrays, "1Day", it.regimes, None, it.bars)[0] for it in items()]

    def batch():
        return decide_many(items(), "1Day")

    assert loop() == batch()  # and the kernels compiled (or loaded from numba's cache) before timing
    # what the runner does after its warm-up (Runner.start): everything alive now is kept out of the cyclic
    # GC, so a full collection over the runner rows' leftovers does not land inside a timed call
    gc.collect()
    gc.freeze()
    took: dict[str, list[float]] = {"loop": [], "batch": [], "loop cpu": [], "batch cpu": []}
    for step in range(bars):
        for s, h in hist.items():
            h.append(*(rest[s][c][step].item() for c in COLUMNS))
        out = {}
        for name in (("loop", "batch") if step % 2 else ("batch", "loop")):
            t0, c0 = time.perf_counter(), time.thread_time()
            out[name] = (loop if name == "loop" else batch)()
            took[name + " cpu"].append(time.thread_time() - c0)
            took[name].append(time.perf_counter() - t0)
        assert out["loop"] == out["batch"], "decide_many differs from decide"
    gc.unfreeze()
    what = f"{len(sls)} sleeves on {len(hist)} symbols, one bar:"
    return [(f"{what} sleeves.decide per sleeve (peer)", np.array(took["loop"]) * 1000),
            (f"{what} batch.decide_many", np.array(took["batch"]) * 1000),
            (f"{what} sleeves.decide per sleeve, CPU time", np.array(took["loop cpu"]) * 1000),
            (f"{what} batch.decide_many, CPU time", np.array(took["batch cpu"]) * 1000)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--bars", type=int, default=20)
    ap.add_argument("--sender", choices=("process", "threads", "both"), default="both")
    ap.add_argument("--sleeves", type=int, default=500, help="sleeves of the decision-layer rows (0: none)")
    ap.add_argument("--strategies", type=int, default=1, choices=(1, 2, 3),
                    help="strategies trading each symbol at once in the runner rows (netted: one order per symbol)")
    ap.add_argument("--decisions-only", action="store_true", help="only the decision-layer rows")
    args = ap.parse_args()
    if args.decisions_only:
        print_decisions(args.sleeves)
        return

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
    results = {m: run(m, symbols, history, frames, args.bars, args.strategies) for m in modes}
    first = results[modes[0]][0]
    n = len(first[0][1]) // max(args.symbols, 1)
    print(f"\nlive decision latency: {args.symbols} symbols x {args.strategies} strategies = "
          f"{args.symbols * args.strategies} sleeves, x {n} bars, {results[modes[0]][1]} orders sent "
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
    if args.sleeves:
        print_decisions(args.sleeves)


def print_decisions(n_sleeves: int) -> None:
    rows = decision_rows(n_sleeves)
    print(f"\ndecision layer, many sleeves: all sleeves decided for one bar ({DECISION_BARS} bars, synthetic daily, "
          "600 bars of history; decisions checked equal)\n")
    print(f"{'measure':74s} {'n':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for name, x in rows:
        print(f"{name:74s} {len(x):5d} {np.percentile(x, 50):8.2f} {np.percentile(x, 99):8.2f} {x.max():8.2f}")
    worst = np.percentile(rows[1][1], 99)
    print(f"target: p99 < 50 ms for every sleeve of a bar decided: decide_many {worst:.1f} ms -> "
          f"{'met' if worst < 50 else 'NOT met'} (the per-sleeve loop: {np.percentile(rows[0][1], 99):.1f} ms)")


if __name__ == "__main__":
    main()
