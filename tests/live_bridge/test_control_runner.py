"""The control API steering a real `tradelab live` process trading the simulator through alpaca-py: flatten one
symbol (only that one, with the runner's own order, booked to its strategy, entries blocked for the
session), halt (the runner flattens the account and stops), resume at the next session (a start
waits for the market to be closed, removes HALT and trades). The dashboard is the real app on a
loopback port; every action leaves a decision line saying who asked and when."""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
import time
from datetime import date, datetime, timezone

import pytest

from dashboard import DashboardConfig
from live_bridge.control import EntryBlocks
from live_bridge.ids import parse_client_order_id
from live_bridge.ports import Account, MarketClock, OrderIntent, Position
from live_bridge.risk import DayState, Proposal, RiskContext, RiskLimits
from live_bridge.runner_halts import read_halt
from live_bridge.state import StateStore
from pipeline.params_store import install
from research.params import DataWindow, ExitRulesModel, dumps
from tests.dashboard.test_control_api import call, served
from tests.kit import entry, params_file
from tests.live_bridge.test_daemon import world  # noqa: F401 - fixture
from tests.soak.kit import Live, Lockstep, hermetic_env, simulator

TOKEN = "ctl-" + secrets.token_hex(12)
AUTH = {"Authorization": "Bearer " + TOKEN}


def two_symbols():
    """sma_cross 2/5 on AAPL and MSFT with a 5% stop: both enter within a few sessions of June 2012."""
    rules = ExitRulesModel(stop_loss=0.05, allow_short=False)
    return params_file([entry(symbol=s, params={"fast": 2, "slow": 5, "short": False}, exit_rules=rules)
                        for s in ("AAPL", "MSFT")],
                       data=DataWindow(timeframe="1Day", start="2010-01-04", end="2012-05-31", symbols=["AAPL", "MSFT"],
                                       bars_hash={"AAPL": "x", "MSFT": "x"}))


def held(sim_broker) -> dict[str, float]:
    return {p["symbol"]: float(p["qty"]) for p in sim_broker.positions_json()}


def log_lines(state) -> list[dict]:
    return [json.loads(x) for x in (state / "decisions.jsonl").read_text().splitlines()]


def test_flatten_one_symbol_then_halt_then_resume_through_the_api(world):
    work, frames = world
    key, secret = "ctl-" + secrets.token_hex(4), secrets.token_hex(16)
    env = hermetic_env(key, secret)
    install(two_symbols(), work / "params")
    served_sim, clock, sim_broker = simulator({s: frames[s] for s in ("AAPL", "MSFT")}, "1Day", key, secret)
    live = Live(work, served_sim.url, env, "--poll", "0.05")
    cfg = DashboardConfig(state_dir=live.state, params_dir=work / "params", lake=work / "lake", token=TOKEN)
    with served_sim, served(cfg) as url:
        live.start()
        step = Lockstep(clock, sim_broker, live)
        for _ in range(40):
            step.step()
            stops = {o["symbol"] for o in sim_broker.list_orders() if o["type"] == "stop"}
            if set(held(sim_broker)) == {"AAPL", "MSFT"} and stops == {"AAPL", "MSFT"}:
                break
        before = held(sim_broker)
        assert set(before) == {"AAPL", "MSFT"}

        status, answer, _ = call(url, "/api/flatten", {"symbol": "AAPL", "wait": 30}, **AUTH)

        assert status == 200 and answer["state"] == "done", answer
        [cid] = answer["orders"]
        assert parse_client_order_id(cid).intent == "flatten" and len(answer["cancelled"]) == 1
        end = time.monotonic() + 30  # the sender cancels AAPL's stop, then sends the flatten order
        while time.monotonic() < end and not any(o["type"] == "market" for o in sim_broker.list_orders()):
            time.sleep(0.02)
        live.wait(lambda s: s.get("idle"), "the runner to settle")
        orders = [(o["symbol"], o["type"], o["side"]) for o in sim_broker.list_orders()]
        assert sorted(orders) == [("AAPL", "market", "sell"), ("MSFT", "stop", "sell")]  # MSFT untouched
        clock.between = None
        clock.step()  # the flatten order fills at the next open
        live.wait(lambda s: s.get("idle") and s.get("fills_seen", -1) >= len(sim_broker.fills()), "the fill")
        assert held(sim_broker) == {"MSFT": before["MSFT"]}

        status, answer, _ = call(url, "/api/halt", {"wait": 30}, **AUTH, **{"User-Agent": "tradelab-cli/control"})

        assert status == 200 and answer["flatten"] == "done", answer
        assert live.proc.wait(30) == 0
        live.log.close()
        [msft] = answer["flatten_orders"]
        clock.step()
        assert sim_broker.positions_json() == [] and sim_broker.list_orders() == []
        halt = read_halt(live.state)
        assert halt.by == "runner" and halt.body["requested_by"] == "tradelab dashboard API (cli from 127.0.0.1)"

        status, answer, _ = call(url, "/api/resume", {}, **AUTH)
        assert status == 200 and read_halt(live.state).body["resume"]
        live.start()  # the market is closed between steps: it resumes at once, for the next open
        assert read_halt(live.state) is None
        sha = live.status()["params"]["sha256"]
        bare = ExitRulesModel(stop_loss=0.0, take_profit=0.05)  # a target without a stop: the runner refuses it
        (work / "params" / "current.json").write_bytes(dumps(params_file([entry(symbol="AAPL", exit_rules=bare)])))
        status, answer, _ = call(url, "/api/reload", {}, **AUTH)
        assert status == 422 and "take_profit but no stop_loss" in answer["detail"]
        assert not (live.state / "RELOAD").exists()
        live.wait(lambda s: any(a.get("event") == "reload_failed" for a in s.get("alerts") or []),
                  "the runner's own refusal of the file it watches")
        assert live.status()["params"]["sha256"] == sha  # the runner keeps the file in force
        live.stop()

    with StateStore(live.state / "state.db", read_only=True) as store:
        books = {k: p.qty for k, p in store.positions().items()}
        flattened = store.filled_qty(cid)
        no_external = [k for k in books if k[0] != "sma_cross"]
        halts = {h.scope: h.reason for h in store.recent_halts(10)}
        intent = store.intent(cid)[0]
    assert books.get(("sma_cross", "AAPL"), 0) == 0 and books.get(("sma_cross", "MSFT"), 0) == 0
    assert flattened == before["AAPL"] and no_external == []  # the flatten's fill is booked to sma_cross
    assert (intent.strategy, intent.symbol, intent.qty) == ("sma_cross", "AAPL", before["AAPL"])
    assert "symbol:AAPL" in halts and "*" in halts
    lines = log_lines(live.state)
    control = [(x["action"], x["who"]["via"]) for x in lines if x["event"] == "control"]
    assert control == [("flatten", "dashboard"), ("halt", "cli"), ("resume", "dashboard"), ("resumed", "runner"),
                       ("reload", "dashboard")]
    i = next(i for i, x in enumerate(lines) if x["event"] == "control" and x["action"] == "flatten")
    j = next(i for i, x in enumerate(lines) if x["event"] == "flatten_symbol")
    k = next(i for i, x in enumerate(lines) if x["event"] == "fill" and x["order"] == cid)
    assert i < j < k and lines[j]["orders"] == [cid] and lines[i]["who"]["client"] == "127.0.0.1"
    assert any(x["event"] == "halt" and x["flatten_orders"] == [msft] for x in lines)
    text = (work / "live.log").read_text()
    assert "Traceback" not in text and TOKEN not in text + (live.state / "decisions.jsonl").read_text()


def _ctx(session: date, held_qty: float) -> RiskContext:
    at = datetime(session.year, session.month, session.day, 19, 0, tzinfo=timezone.utc)
    clock = MarketClock(at, False, at, at)
    account = Account(100_000.0, 100_000.0, 200_000.0, 100_000.0)
    positions = {"AAPL": Position("AAPL", held_qty, 100.0, held_qty * 100.0)} if held_qty else {}
    return RiskContext(account, positions, (), DayState(session, 100_000.0), 100_000.0, clock)


@pytest.mark.parametrize("symbol, session, allowed", [("AAPL", date(2012, 6, 20), False), ("MSFT", date(2012, 6, 20), True),
                                                     ("AAPL", date(2012, 6, 21), True)])
def test_a_symbol_flattened_by_hand_takes_no_entry_until_the_next_session(tmp_path, symbol, session, allowed):
    with StateStore(tmp_path / "state.db") as store:
        store.record_halt(date(2012, 6, 20), "symbol:AAPL", "flatten AAPL asked")
        risk = EntryBlocks(RiskLimits(queue_for_next_open=True), store)  # the blocks a restart reads back
    entry_ = OrderIntent(f"e-{symbol}", symbol, "buy", 10, strategy="sma_cross")
    v = risk.check(Proposal(entry_, 100.0, 95.0), _ctx(session, 0.0))
    assert v.allowed is allowed, v
    if not allowed:
        assert v.rule == "symbol_flattened" and "no new entry until the next session" in v.message
    exit_ = risk.check(Proposal(OrderIntent("x-1", "AAPL", "sell", 5, strategy="sma_cross"), 100.0),
                       _ctx(date(2012, 6, 20), 5.0))
    assert exit_.allowed and exit_.reduces_risk  # an exit is never blocked



def test_no_new_stop_goes_out_while_a_flatten_order_of_the_symbol_works():
    from live_bridge.ids import client_order_id
    from live_bridge.ports import OrderAck

    at = datetime(2012, 6, 20, 19, 0, tzinfo=timezone.utc)
    flat = OrderAck("b-1", client_order_id("sma_cross", "AAPL", at, "flatten"), "AAPL", "sell", 5, 0.0, None, "new",
                    "market", None, None, at)
    ctx = _ctx(date(2012, 6, 20), 5.0)
    stop = OrderIntent(client_order_id("sma_cross", "AAPL", at, "stop"), "AAPL", "sell", 5, type="stop", stop_price=95.0,
                       time_in_force="gtc", strategy="sma_cross")
    risk = EntryBlocks(RiskLimits(queue_for_next_open=True))
    assert risk.check(Proposal(stop, 100.0), ctx).allowed  # no flatten working: the stop goes out
    v = risk.check(Proposal(stop, 100.0), replace(ctx, open_orders=(flat,)))
    assert (v.allowed, v.rule) == (False, "flatten_working")


def test_a_request_left_in_the_inbox_while_no_runner_ran_is_refused_not_acted_on(tmp_path):
    from live_bridge.control import serve_inbox

    inbox = tmp_path / "control"
    inbox.mkdir()
    old = {"id": "old", "action": "flatten", "symbol": "AAPL", "asked_at": "2012-06-20T20:00:00+00:00"}
    (inbox / "old.json").write_text(json.dumps(old))
    (inbox / "odd.json").write_text(json.dumps({**old, "id": "odd", "action": "buy"}))
    assert serve_inbox(tmp_path, runner=None) == 2  # the runner is never asked: nothing to act on
    assert json.loads((inbox / "old.done").read_text())["message"].endswith("(stale): ask again")
    assert json.loads((inbox / "odd.done").read_text()) == {"state": "refused", "message": "unknown request"}
    assert serve_inbox(tmp_path, runner=None) == 0 and sorted(p.suffix for p in inbox.iterdir()) == \
        [".done", ".done", ".taken", ".taken"]


def test_a_resumed_start_waits_for_the_close_and_leaves_a_new_halt_alone(tmp_path):
    import threading

    from live_bridge.control import ask_resume, wait_for_resume
    from live_bridge.runner_halts import write_halt

    at = datetime(2012, 6, 20, 15, 0, tzinfo=timezone.utc)
    opens = [True, True, False]  # the broker's clock: open twice, then closed
    asked = []

    def clock():
        asked.append(1)
        return MarketClock(at, opens[min(len(asked), len(opens)) - 1], at, at)

    write_halt(tmp_path, {"halted_at": "2012-06-19T15:00:00+00:00", "by": "runner", "flatten": "done"})
    ask_resume(tmp_path, "a test")
    assert wait_for_resume(tmp_path, clock, threading.Event(), 0.01) is True
    assert len(asked) == 3 and read_halt(tmp_path) is None  # removed once the market closed
    [line] = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert (line["action"], line["asked"]["by"], line["halted_at"]) == ("resumed", "a test", "2012-06-19T15:00:00+00:00")

    write_halt(tmp_path, {"halted_at": "2012-06-19T15:00:00+00:00", "by": "runner", "flatten": "done"})
    ask_resume(tmp_path, "a test")

    def halt_again():  # a new halt while the start waits for the close
        write_halt(tmp_path, {"halted_at": "2012-06-20T15:00:00+00:00", "by": "tradelab live halt",
                              "flatten": "pending"})
        return MarketClock(at, True, at, at)

    assert wait_for_resume(tmp_path, halt_again, threading.Event(), 0.01) is True
    assert read_halt(tmp_path).flatten == "pending"  # left for the runner's start to flatten
