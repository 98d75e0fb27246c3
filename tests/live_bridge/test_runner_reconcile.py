"""Start-up reconciliation against the simulator: an order sent just before a crash is found by its
client_order_id and adopted, never resent; positions the state store does not know halt the runner
with a report naming them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from live_bridge.ids import client_order_id
from live_bridge.ports import OrderIntent
from live_bridge.runner import ReconcileError, Runner, RunnerConfig
from live_bridge.state import StateStore
from tests.live_bridge.test_alpaca_adapter import simulator
from tests.kit import entry, params_file


def test_an_intent_sent_before_a_crash_is_adopted_not_resent(tmp_path):
    cid = client_order_id("sma_cross", "AAPL", datetime(2024, 1, 2, 14, 31, tzinfo=UTC), "entry")
    intent = OrderIntent(cid, "AAPL", "buy", 10, strategy="sma_cross", reason="entry")
    with simulator() as s:
        s.clock.step()
        with StateStore(tmp_path / "state.db") as store:
            store.record_intent(intent)  # recorded, then the process died before recording the ack
            s.broker.submit(intent)
        with StateStore(tmp_path / "state.db") as store:  # the restart
            assert [i.client_order_id for i in store.open_intents()] == [cid]
            runner = Runner(s.broker, params_file([entry()]), {}, {}, store, RunnerConfig())
            notes = runner.reconcile()
            assert notes == [f"adopted {cid} (new)"] and store.order(cid).status == "new"
            assert sum(o.client_order_id == cid for o in s.sim.orders()) == 1  # one order at the broker


def test_positions_the_store_does_not_know_halt_the_runner(tmp_path):
    with simulator() as s:
        s.clock.step()
        s.broker.submit(OrderIntent("manual-1", "AAPL", "buy", 7))  # someone traded by hand
        s.clock.step()
        with StateStore(tmp_path / "state.db") as store:
            runner = Runner(s.broker, params_file([entry()]), {}, {}, store, RunnerConfig())
            with pytest.raises(ReconcileError, match="AAPL: broker 7 vs store 0"):
                runner.reconcile()


def test_entries_the_live_bridge_cannot_trade_like_the_backtest_are_refused(tmp_path):
    from research.params import ExitRulesModel

    # a take-profit goes out with its stop as one OCO: without a stop there is nothing to pair it with
    pf = params_file([entry(exit_rules=ExitRulesModel(take_profit=0.03, allow_short=False))])
    with StateStore(tmp_path / "state.db") as store:
        with pytest.raises(ValueError, match="take_profit but no stop_loss or trailing_stop: sma_cross AAPL all"):
            Runner(None, pf, {}, {}, store, RunnerConfig())
        ok = params_file([entry(exit_rules=ExitRulesModel(stop_loss=0.02, take_profit=0.03, allow_short=False))])
        Runner(None, ok, {}, {}, store, RunnerConfig())


def test_an_oco_whose_stop_leg_filled_while_down_is_adopted_and_its_fill_counted_for_the_strategy(tmp_path):
    from live_bridge.ports import Fill

    t = datetime(2024, 1, 2, 14, 31, tzinfo=UTC)
    entry_cid = client_order_id("sma_cross", "AAPL", t, "entry")
    oco_cid = client_order_id("sma_cross", "AAPL", t, "stop", 1)
    buy = OrderIntent(entry_cid, "AAPL", "buy", 10, strategy="sma_cross", reason="entry")
    oco = OrderIntent(oco_cid, "AAPL", "sell", 10, type="stop", stop_price=97.0, time_in_force="gtc",
                      strategy="sma_cross", reason="protective stop", take_profit=110.0)
    rows = [(100, 101, 99, 100.5, 1000), (100, 100.5, 99.5, 100, 1000), (100, 100.5, 96, 96.5, 1000),
            (96.5, 97, 96, 96.5, 1000)]
    with simulator(rows) as s:
        s.clock.step()
        with StateStore(tmp_path / "state.db") as store:
            store.record_intent(buy)
            store.record_order(s.broker.submit(buy))
            s.clock.step()  # the entry fills at the open (100)
            f = s.sim.fills()[-1]
            store.record_fill(Fill(f.execution_id, f.order_id, f.client_order_id, f.symbol, f.side, f.qty, f.price,
                                   datetime.fromtimestamp(f.timestamp_us / 1e6, UTC)))
            store.record_intent(oco)  # recorded, sent, and the process died before the ack came back
            s.broker.submit(oco)
        s.clock.step()  # down: the bar trades through 97, the OCO's stop leg fills, its take-profit is canceled
        leg = s.sim.fills()[-1]
        assert leg.client_order_id != oco_cid and leg.price == 97.0
        with StateStore(tmp_path / "state.db") as store:  # the restart
            runner = Runner(s.broker, params_file([entry()]), {}, {}, store, RunnerConfig())
            notes = runner.reconcile()  # raises ReconcileError if the leg's fill were not counted
            assert f"adopted {oco_cid} (canceled)" in notes and any("counted 10 AAPL" in n for n in notes)
            assert store.position("sma_cross", "AAPL").qty == 0
            assert store.leg_parents() == {leg.client_order_id: oco_cid}
            strategy = store._db.execute("SELECT strategy FROM fills WHERE client_order_id = ?",
                                         (leg.client_order_id,)).fetchone()[0]
            assert strategy == "sma_cross"
            assert not any("placed the missing stop" in n for n in notes)


def test_an_order_the_broker_rejects_at_the_open_is_stored_logged_and_alerted(tmp_path):
    import json

    import pandas as pd

    from live_bridge.alpaca import AlpacaBroker
    from live_bridge.alpaca.feeds import AlpacaFillFeed
    from simulator import (SimBroker, BrokerConfig, ReplayClock, SimulatorState, StreamControl, broker_app,
                                       serve, streams_router)
    from tests.live_bridge.test_alpaca_adapter import FAST, KEY, SECRET, eventually

    # Daily bars: orders sent after the close wait for the open ("accepted"). Someone's AAA buy goes
    # first at the open, gaps up to 150 and spends 90k of the 100k; our BBB entry, accepted with 39k
    # of buying power held, is then rejected at the open, on trade_updates only.
    ts = pd.to_datetime(["2024-01-02 05:00", "2024-01-03 05:00", "2024-01-04 05:00"], utc=True)
    frame = lambda o: pd.DataFrame({"ts": ts, "open": o, "high": [x + 1 for x in o],  # noqa: E731
                                    "low": [x - 1 for x in o], "close": o, "volume": [1e6] * 3})
    clock = ReplayClock({"AAA": frame([100.0, 150, 150]), "BBB": frame([100.0, 100, 100])}, "1Day")
    state = SimulatorState(api_key=KEY, secret_key=SECRET)
    app = broker_app(clock, SimBroker(clock, BrokerConfig(cash=100_000)), state=state,
                     routers=[streams_router(state, clock.hub, StreamControl())])
    cid = client_order_id("sma_cross", "BBB", datetime(2024, 1, 2, 5, tzinfo=UTC), "entry")
    intent = OrderIntent(cid, "BBB", "buy", 390, strategy="sma_cross", reason="entry")
    log = tmp_path / "decisions.jsonl"
    with serve(app) as server, StateStore(tmp_path / "state.db") as store:
        broker = AlpacaBroker(KEY, SECRET, url_override=server.url, retry_wait=0, timeout=5)
        clock.step()
        runner = Runner(broker, params_file([entry(symbol="BBB")]), {}, {}, store, RunnerConfig(decision_log=log))
        broker.submit(OrderIntent("someone-else", "AAA", "buy", 600))
        store.record_intent(intent)
        store.record_order(broker.submit(intent))
        assert store.order(cid).status == "accepted"
        runner.start()
        feed = AlpacaFillFeed(KEY, SECRET, url_override_ws=server.url.replace("http", "ws") + "/stream",
                              url_override_rest=server.url, on_update=runner.on_update, **FAST)
        feed.start()
        try:
            eventually(lambda: feed.connected and clock.hub.subscribers("trade_update") == 1)
            clock.step()  # the open
            eventually(lambda: any(a["event"] == "order_rejected" for a in runner.alerts), timeout=10,
                       what="the rejection to reach the runner")
            runner.settle(10)
        finally:
            feed.stop()
            runner.stop()
        assert store.order(cid).status == "rejected"
        assert cid not in [i.client_order_id for i in store.open_intents()]  # a restart does not look for it again
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert {"event": "order_status", "order": cid, "status": "rejected"}.items() <= next(
        x for x in lines if x["event"] == "order_status").items()
    assert any(x["event"] == "order_rejected" and "not traded" in x["message"] for x in lines)
