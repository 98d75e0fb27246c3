"""HALT with the broker out of reach (issue 14): `tradelab live halt` cannot flatten, so the runner
does it with its own orders once the broker answers, and a start on a HALT flattens or refuses.

The runner is the real `tradelab live` command in its own process, trading the simulator (served on
loopback, stepped in lockstep with the runner's status.json) through alpaca-py; the broker goes
down by stopping the server and comes back on the same port with the same account. Alerts go to
a real local webhook receiver."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

from live_bridge.alpaca import AlpacaBroker
from live_bridge.ids import parse_client_order_id
from live_bridge.ports import OrderIntent
from simulator import serve
from live_bridge.state import StateStore
from pipeline.params_store import install
from research.params import DataWindow, ExitRulesModel
from tests.live_bridge.test_daemon import receiver, world  # noqa: F401 - fixtures
from tests.kit import entry, params_file
from tests.soak.kit import Live, Lockstep, hermetic_env, simulator


def fast_file():
    """sma_cross 2/5 on AAPL with a 5% stop: an entry within a few sessions of June 2012."""
    return params_file([entry(symbol="AAPL", params={"fast": 2, "slow": 5, "short": False},
                              exit_rules=ExitRulesModel(stop_loss=0.05, allow_short=False))],
                       data=DataWindow(timeframe="1Day", start="2010-01-04", end="2012-05-31", symbols=["AAPL"],
                                       bars_hash={"AAPL": "x"}))


def with_a_position(work: Path, frames: dict, key: str, secret: str, env: dict):
    """The runner trading the simulator in lockstep until it holds AAPL and its stop works."""
    install(fast_file(), work / "params")
    served, clock, sim_broker = simulator({"AAPL": frames["AAPL"]}, "1Day", key, secret)
    live = Live(work, served.url, env, "--poll", "0.05")
    live.start()
    step = Lockstep(clock, sim_broker, live)
    for _ in range(40):
        step.step()
        if sim_broker.positions_json() and any(o["type"] == "stop" for o in sim_broker.list_orders()):
            break
    [pos] = sim_broker.positions_json()
    clock.between = None  # from here on the test steps the clock by itself
    return served, clock, sim_broker, live, float(pos["qty"])


def cli(work: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradelab", *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)


def tracebacks(log: str) -> list[str]:
    """The lines before each traceback in a runner's log, but alpaca-py's own: its TradingStream logs
    one at every failed reconnect while the broker is down (alpaca/trading/stream.py, not tradelab's)."""
    lines = log.splitlines()
    return [lines[i - 1] for i, x in enumerate(lines) if x.startswith("Traceback")
            and not (i and lines[i - 1].startswith("error during websocket communication"))]


def flatten_intents(state: Path) -> list:
    """The flatten intents the runner stored (their orders have not filled yet), read after it stopped."""
    with StateStore(state / "state.db") as store:
        return [i for i in store.open_intents() if parse_client_order_id(i.client_order_id).intent == "flatten"]


def test_the_runner_flattens_itself_once_the_broker_is_back_after_a_halt_that_could_not(world, receiver):
    work, frames = world
    key, secret = "hlt-" + secrets.token_hex(4), secrets.token_hex(16)
    url, got = receiver
    env = hermetic_env(key, secret, TRADELAB_ALERT_WEBHOOK=url)
    served, clock, sim_broker, live, qty = with_a_position(work, frames, key, secret, env)
    back = None
    try:
        served.stop()  # the broker goes down
        halt = cli(work, env, "live", "halt", "--url", served.url, "--wait", "1")
        assert halt.returncode == 3, halt.stdout + halt.stderr
        s = live.wait(lambda s: (s.get("halting") or {}).get("state") == "flattening"
                      and (s.get("broker") or {}).get("ok") is False, "the runner to try the broker and fail", 30)
        assert s["halting"]["by"] == "tradelab live halt"
        end = time.monotonic() + 30  # a few more tries with backoff: the third one alerts (an outage, not a blip)
        while time.monotonic() < end and not any(b["alert"]["kind"] == "broker_unreachable" for b in got):
            time.sleep(0.1)
        assert json.loads((live.state / "HALT").read_text())["flatten"] == "pending"
        back = serve(served.app, port=served.port)  # the same account, on the same port
        assert live.proc.wait(60) == 0, (work / "live.log").read_text()[-3000:]
    finally:
        if live.proc.poll() is None:
            live.proc.kill()
        live.log.close()
    try:
        doc = json.loads((live.state / "HALT").read_text())
        assert doc["flatten"] == "done" and doc["by"] == "runner" and doc["requested_by"] == "tradelab live halt"
        [intent] = flatten_intents(live.state)
        assert (intent.strategy, intent.symbol, intent.side, intent.qty) == ("sma_cross", "AAPL", "sell", qty)
        assert doc["flatten_orders"] == [intent.client_order_id]
        open_orders = sim_broker.list_orders()
        assert [(o["client_order_id"], o["type"]) for o in open_orders] == [(intent.client_order_id, "market")]
        clock.step()  # the flatten order fills at the next open
        assert sim_broker.positions_json() == [] and sim_broker.list_orders() == []
    finally:
        back.stop()
    lines = [json.loads(x) for x in (live.state / "decisions.jsonl").read_text().splitlines()]
    [halt_line] = [x for x in lines if x["event"] == "halt"]
    assert halt_line["rule"] == "halt_file" and halt_line["flatten_orders"] == [intent.client_order_id]
    assert len(halt_line["cancelled"]) == 1  # the protective stop
    kinds = [b["alert"]["kind"] for b in got]
    assert kinds.count("broker_unreachable") == 1 and kinds.count("halt") == 1, kinds
    text = (work / "live.log").read_text()
    assert tracebacks(text) == [] and key not in text and secret not in text
    status = json.loads((live.state / "status.json").read_text())
    assert status["stopped"] and status["halting"]["state"] == "done"


def test_a_start_on_a_pending_halt_flattens_from_the_broker_positions_and_exits_without_trading(world):
    work, frames = world
    key, secret = "hlt-" + secrets.token_hex(4), secrets.token_hex(16)
    env = hermetic_env(key, secret)
    served, clock, sim_broker, live, qty = with_a_position(work, frames, key, secret, env)
    with served:
        live.stop()
        decided = decisions(live.state)
        by_hand = AlpacaBroker(key, secret, url_override=served.url, retry_wait=0)  # one share sold by hand:
        [stop] = by_hand.open_orders()  # the store still says the runner holds them all
        by_hand.cancel(stop.id)
        by_hand.submit(OrderIntent("by-hand-1", "AAPL", "sell", 1))
        clock.step()
        qty -= 1
        assert by_hand.positions()["AAPL"].qty == qty and by_hand.open_orders() == []
        (live.state / "HALT").write_text("halted at 2012-06-20T20:00:00+00:00\n")  # the format before issue 14

        r = cli(work, env, "live", "--url", served.url, "--poll", "0.05", "--lake", "lake")

        assert r.returncode == 0, r.stdout + r.stderr
        assert "HALT in runs/live (flatten pending" in r.stdout and "no trading" in r.stdout
        doc = json.loads((live.state / "HALT").read_text())
        assert doc["flatten"] == "done" and doc["by"] == "runner" and doc["halted_at"].startswith("2012-06-20T20:00")
        [intent] = flatten_intents(live.state)
        assert (intent.strategy, intent.symbol, intent.side, intent.qty) == ("sma_cross", "AAPL", "sell", qty)
        assert [o["client_order_id"] for o in sim_broker.list_orders()] == [intent.client_order_id]
        assert decisions(live.state) == decided > 0  # no trading
        clock.step()
        assert sim_broker.positions_json() == []

        again = cli(work, env, "live", "--url", served.url, "--poll", "0.05", "--lake", "lake")

    assert again.returncode == 2, again.stdout + again.stderr
    [line] = again.stderr.strip().splitlines()
    assert line.startswith("error: halted at 2012-06-20T20:00:00+00:00 (HALT in runs/live")
    assert line.endswith("remove it to resume") and "Traceback" not in r.stderr + again.stderr


def test_halt_with_a_runner_running_hands_the_flatten_to_it(world):
    """The command never closes what a running runner holds: the runner flattens with its own orders
    (its store books them for the strategy) and the command reports what it did."""
    work, frames = world
    key, secret = "hlt-" + secrets.token_hex(4), secrets.token_hex(16)
    env = hermetic_env(key, secret)
    served, clock, sim_broker, live, qty = with_a_position(work, frames, key, secret, env)
    with served:
        try:
            r = cli(work, env, "live", "halt", "--url", served.url, "--wait", "30")
            assert r.returncode == 0, r.stdout + r.stderr
            assert live.proc.wait(30) == 0
        finally:
            if live.proc.poll() is None:
                live.proc.kill()
            live.log.close()
        assert "a runner holds runs/live" in r.stdout and "closing orders sent by the runner" in r.stdout
        doc = json.loads((live.state / "HALT").read_text())
        assert doc["flatten"] == "done" and doc["by"] == "runner"
        [intent] = flatten_intents(live.state)
        assert (intent.strategy, intent.symbol, intent.side, intent.qty) == ("sma_cross", "AAPL", "sell", qty)
        assert intent.client_order_id in r.stdout
        clock.step()
        assert sim_broker.positions_json() == []


def test_halt_without_a_runner_flattens_under_its_ids_and_a_restart_finds_the_books_right(world):
    """No runner, but its store: the command sends the runner's own flatten orders, so after they fill
    and HALT is removed, a restarted runner counts their fills for the strategy: no mismatch, flat."""
    work, frames = world
    key, secret = "hlt-" + secrets.token_hex(4), secrets.token_hex(16)
    env = hermetic_env(key, secret)
    served, clock, sim_broker, live, qty = with_a_position(work, frames, key, secret, env)
    with served:
        live.stop()
        r = cli(work, env, "live", "halt", "--url", served.url, "--wait", "10")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "closing orders sent: AAPL sell" in r.stdout and "(sma_cross)" in r.stdout
        assert "under the runner's ids" in r.stdout and "Traceback" not in r.stdout + r.stderr
        doc = json.loads((live.state / "HALT").read_text())
        assert doc["flatten"] == "done" and doc["by"] == "tradelab live halt"
        [intent] = flatten_intents(live.state)
        assert (intent.strategy, intent.symbol, intent.side, intent.qty) == ("sma_cross", "AAPL", "sell", qty)
        lines = [json.loads(x) for x in (live.state / "decisions.jsonl").read_text().splitlines()]
        assert [x["flatten_orders"] for x in lines if x["event"] == "halt"] == [[intent.client_order_id]]
        clock.step()  # the flatten order fills at the next open, while no runner runs
        assert sim_broker.positions_json() == []
        (live.state / "HALT").unlink()
        again = Live(work, served.url, env, "--poll", "0.05")
        again.start()
        try:
            again.wait(lambda s: s.get("broker", {}).get("ok") is True and not s.get("stopped"),
                       "the restarted runner to reconcile and run", 60)
            assert again.proc.poll() is None, (work / "live.log").read_text()[-3000:]
        finally:
            again.stop()
    with StateStore(live.state / "state.db") as store:
        assert {k: p.qty for k, p in store.positions().items() if p.qty} == {}
        assert store.halt_marks()  # the halt is part of the decision path from its time on


def decisions(state) -> int:
    """The decision lines of the runner's log."""
    lines = (state / "decisions.jsonl").read_text().splitlines()
    return sum(json.loads(x).get("event") == "decision" for x in lines)
