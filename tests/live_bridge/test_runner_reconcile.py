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
from tests.research.test_params import entry, params_file


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

    pf = params_file([entry(exit_rules=ExitRulesModel(stop_loss=0.02, take_profit=0.03, allow_short=False))])
    with StateStore(tmp_path / "state.db") as store:
        with pytest.raises(ValueError, match="take-profit orders are not traded live yet.*sma_cross AAPL all"):
            Runner(None, pf, {}, {}, store, RunnerConfig())
