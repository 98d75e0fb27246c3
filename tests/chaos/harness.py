"""A lockstep daily replay whose live runner is a separate process that the test kills with SIGKILL.

The simulator (broker, replay clock) lives in this process and survives; the runner
(tests/chaos/runner_child.py) is started again after every kill with the same state store and the
bars decided so far, and the interrupted command is sent again. Each clock step: the open (its
fills counted, their stops placed), the close's fills, then the bars, as live. ``kills`` picks the
commands during which the child is killed (a timer a few ms after the command went out);
``inner_kill`` the share of child lives that kill themselves at their first order, between the
broker's accept and the runner hearing it, or between storing an intent and sending it;
``cancel_kills`` the number of child lives that die at their first cancel, once the decision that
cancels has stored its order's intent (so neither the cancel nor the order reached the broker).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import selectors
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ChaosResult:
    orders: list[dict]  # the broker's orders
    accepted: Counter  # orders the broker accepted per client_order_id
    positions: dict[str, int]
    cash: float
    equity: float
    steps: int
    kills: Counter = field(default_factory=Counter)  # by kind: timed, after_submit, after_intent
    store_problems: list[str] = field(default_factory=list)
    child_log: str = ""


class _Child:
    def __init__(self, cfg: dict, env: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.chaos.runner_child", json.dumps(cfg)], cwd=ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def readline(self, timeout: float) -> str | None:
        """The next line, or None if the child died (EOF); TimeoutError if it hangs."""
        if not self.sel.select(timeout):
            raise TimeoutError("the runner process did not answer")
        line = self.proc.stdout.readline()
        return line.strip() if line else None

    def send(self, msg: dict) -> bool:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def dead(self) -> bool:
        return self.proc.poll() is not None


def run(lake, params_path: Path, symbols: list[str], start: str, end: str, work: Path, *, kills: int = 0,
        inner_kill: float = 0.0, seed: int = 0, timeout: float = 120.0, cancel_kills: int = 0,
        limits: dict | None = None) -> ChaosResult:
    from live_bridge.replay import _load
    from simulator import BrokerConfig, ReplayClock, SimulatorState, StreamControl, serve, streams_router
    from simulator.trading import broker_app
    from live_bridge.state import StateStore

    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    frames, history = _load(lake, symbols, "1Day", pd.Timestamp(start), pd.Timestamp(end))
    n_steps = len(set().union(*(set(f["ts"]) for f in frames.values())))
    plan = set(rng.sample(range(3 * n_steps), kills)) if kills else set()  # commands to kill the child during
    key, secret = "chaos-" + secrets.token_hex(4), secrets.token_hex(16)
    state = SimulatorState(api_key=key, secret_key=secret)
    clock = ReplayClock({s: f[["ts", "open", "high", "low", "close", "volume"]] for s, f in frames.items()}, "1Day")
    app = broker_app(clock, config=BrokerConfig(cash=100_000.0), state=state, api_key=key, secret_key=secret,
                     routers=[streams_router(state, clock.hub, StreamControl())])
    sim = app.state.broker
    res = ChaosResult([], Counter(), {}, 0.0, 0.0, 0)
    done_us = max(int(h["ts"][-1]) for h in history.values())
    first_us = int(min(f["ts"].iloc[0] for f in frames.values()).value // 1000)
    ctl = {"child": None, "n": 0, "timer_fired": False, "cancel_kills": cancel_kills}

    def expected() -> dict[str, float]:
        return {o.client_order_id: float(o.filled_qty) for o in sim.orders()  # an OCO's leg: by its parent
                if _ours(o).startswith("tl-") and o.filled_qty > 0}

    def spawn(url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("CHAOS_KILL_AFTER_SUBMIT", None)
        env.pop("CHAOS_KILL_AFTER_INTENT", None)
        env.pop("CHAOS_KILL_AT_CANCEL", None)
        if ctl["cancel_kills"] > 0:  # the next lives die at their first cancel, once its decision's intent is stored
            ctl["cancel_kills"] -= 1
            env["CHAOS_KILL_AT_CANCEL"] = "1"
        elif rng.random() < inner_kill:
            env["CHAOS_KILL_AFTER_SUBMIT" if rng.random() < 0.5 else "CHAOS_KILL_AFTER_INTENT"] = "1"
        cfg = {"url": url, "key": key, "secret": secret, "params": str(params_path), "lake": str(lake.root),
               "symbols": symbols, "timeframe": "1Day", "history_until_us": done_us, "trade_from_us": first_us,
               "work": str(work), "limits": limits or {}}
        child = _Child(cfg, env)
        child.inner = next((k for k in ("CHAOS_KILL_AFTER_SUBMIT", "CHAOS_KILL_AFTER_INTENT", "CHAOS_KILL_AT_CANCEL")
                            if k in env), None)
        ctl["child"] = child
        line = child.readline(timeout)
        if line != "ready":  # killed itself while reconciling (it resent an intent): one more life
            died(child)
            spawn(url)

    def died(child: _Child) -> None:
        child.proc.wait(10)
        if child.proc.returncode != -signal.SIGKILL:
            raise RuntimeError(f"the runner process failed (exit {child.proc.returncode}); see {work / 'child.log'}")
        kind = "timed" if ctl["timer_fired"] else {"CHAOS_KILL_AFTER_SUBMIT": "after_submit",
                                                     "CHAOS_KILL_AFTER_INTENT": "after_intent",
                                                     "CHAOS_KILL_AT_CANCEL": "at_cancel"}.get(child.inner, "?")
        res.kills[kind] += 1
        ctl["timer_fired"] = False
        ctl["child"] = None

    def command(url: str, msg: dict) -> None:
        index, ctl["n"] = ctl["n"], ctl["n"] + 1
        while True:
            if ctl["child"] is None or ctl["child"].dead():
                if ctl["child"] is not None:
                    died(ctl["child"])
                spawn(url)
            child = ctl["child"]
            timer = None
            if index in plan:
                plan.discard(index)

                def kill(c=child) -> None:
                    if not c.dead():
                        ctl["timer_fired"] = True
                        c.proc.send_signal(signal.SIGKILL)

                timer = threading.Timer(rng.uniform(0.0, 0.03), kill)
                timer.start()
            ok = child.send({**msg, "fills": expected()}) and child.readline(timeout) == "ok"
            if timer is not None:
                timer.join()
            if ok and not child.dead():
                return
            if ok:  # answered, then the timer killed it: the command is done
                died(child)
                return
            died(child)

    with serve(app) as server:
        url = server.url
        clock.between = lambda bars: command(url, {"cmd": "sync"})
        try:
            while (bars := clock.step()) is not None:
                res.steps += 1
                command(url, {"cmd": "sync"})
                rows = [[s, b.ts_us, b.open, b.high, b.low, b.close, b.volume] for s, b in sorted(bars.items())]
                command(url, {"cmd": "bars", "bars": rows})
                done_us = max(b.ts_us for b in bars.values())
        finally:
            clock.between = None
            child = ctl["child"]
            if child is not None and not child.dead():
                child.send({"cmd": "stop"})
                child.proc.wait(30)
        res.orders = [{"cid": _ours(o), "symbol": o.symbol, "side": o.side, "type": o.type, "qty": int(o.qty),
                       "stop_price": o.stop_price, "status": o.status, "filled": int(o.filled_qty)} for o in sim.orders()]
        res.accepted = Counter(sim.accepted)
        res.positions = {s: int(p.qty) for s, p in sim.ledger.positions.items() if p.qty}
        acct = sim.account_json()
        res.cash, res.equity = float(acct["cash"]), float(acct["equity"])
    with StateStore(work / "state.db") as store:
        report = store.integrity_check()
        res.store_problems = list(getattr(report, "problems", []))
        net = store.net_positions()
        res.store_problems += [f"store {s} {net.get(s, 0):g} vs broker {res.positions.get(s, 0)}"
                               for s in set(net) | set(res.positions) if abs(net.get(s, 0) - res.positions.get(s, 0)) > 1e-9]
        row = store._db.execute("PRAGMA integrity_check").fetchone()[0]
        if row != "ok":
            res.store_problems.append(f"sqlite integrity_check: {row}")
    log = work / "child.log"
    res.child_log = log.read_text() if log.exists() else ""
    return res


def _ours(o) -> str:
    """An order's client_order_id; an OCO leg's (the simulator makes it) as its parent's + ``:leg``."""
    return o.parent.client_order_id + ":leg" if o.parent is not None else o.client_order_id
