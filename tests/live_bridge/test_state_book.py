"""The state store's netted orders (state_book.py) on a real SQLite store: a plan's fills are allocated
to its strategies deterministically and atomically, a repeated fill counts once, a zero-sum plan
crosses at the price given, and the strategies' sum is always the broker's fills."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from live_bridge import state_book
from live_bridge.ports import Fill
from live_bridge.state import StateStore

AT = datetime(2024, 5, 2, 13, 30, tzinfo=UTC)
CID = "tl-book-AAPL-20240501T2000-net-0-0123abcd"


def fill(eid, side, qty, price, cid=CID):
    return Fill(eid, "o1", cid, "AAPL", side, qty, price, AT)


def held(store):
    return {s: p.qty for (s, y), p in store.positions().items() if y == "AAPL" and p.qty}


def test_a_net_order_is_allocated_crossed_part_first_then_in_plan_order(tmp_path):
    with StateStore(tmp_path / "s.db") as store:
        store.record_fill(fill("e0", "buy", 100, 10.0, "tl-a-AAPL-20240430T2000-entry-0-00000000"), "a")
        assert state_book.record_plan(store, CID, "AAPL", [("a", -100.0, None), ("b", 80.0, '{"stop_loss": 0.02}'),
                                                           ("c", 50.0, None)], crossed=False)
        assert not state_book.record_plan(store, CID, "AAPL", [("a", -1.0, None)], crossed=False)  # stored: it stands

        assert state_book.record_book_fill(store, fill("e1", "buy", 10, 11.0)) == {"b": 80.0, "c": 30.0, "a": -100.0}
        assert held(store) == {"b": 80.0, "c": 30.0}
        assert state_book.record_book_fill(store, fill("e1", "buy", 10, 11.0)) == {}  # repeated: counted once
        assert state_book.record_book_fill(store, fill("e2", "buy", 20, 12.0)) == {"c": 20.0}

        assert held(store) == {"b": 80.0, "c": 50.0}
        assert store.net_positions()["AAPL"] == pytest.approx(100 + 10 + 20)  # the broker's fills, no more
        assert store.filled_qty(CID) == 30  # the broker's order keeps exactly the broker's quantity
        assert state_book.broker_fills(store, CID) == 2
        assert [r.remaining for r in state_book.plan(store, CID)] == [0.0, 0.0, 0.0]
        assert store.position("a", "AAPL").realized_pnl == pytest.approx(100 * (11.0 - 10.0))
        assert store.integrity_check().ok


def test_a_zero_sum_plan_crosses_once_at_the_price_given(tmp_path):
    with StateStore(tmp_path / "s.db") as store:
        store.record_fill(fill("e0", "buy", 50, 10.0, "tl-a-AAPL-20240430T2000-entry-0-00000000"), "a")
        state_book.record_plan(store, CID, "AAPL", [("a", -50.0, None), ("b", 50.0, None)], crossed=True)
        assert state_book.pending_crosses(store, "AAPL") == [CID]

        assert state_book.cross(store, CID, 10.5, AT) == {"a": -50.0, "b": 50.0}
        assert state_book.cross(store, CID, 99.0, AT) == {}

        assert state_book.pending_crosses(store, "AAPL") == []
        assert held(store) == {"b": 50.0} and store.position("b", "AAPL").avg_price == 10.5
        assert store.net_positions()["AAPL"] == 50.0 and store.filled_qty(CID) == 0


def test_a_fill_of_an_order_without_a_plan_is_not_the_books(tmp_path):
    with StateStore(tmp_path / "s.db") as store:
        assert state_book.record_book_fill(store, fill("e1", "buy", 1, 1.0)) is None
        with pytest.raises(ValueError, match="every row must change a position"):
            state_book.record_plan(store, CID, "AAPL", [("a", 0.0, None)], crossed=False)
        assert state_book.plan(store, CID) is None


def test_a_halts_one_flatten_order_of_a_netted_symbol_closes_each_strategy(tmp_path):
    from live_bridge.ports import OrderIntent
    from live_bridge.runner_halts import _flatten_plan
    from live_bridge.state import EXTERNAL

    with StateStore(tmp_path / "s.db") as store:
        store.record_fill(fill("e0", "buy", 100, 10.0, "tl-a-AAPL-20240430T2000-entry-0-00000000"), "a")
        store.record_fill(fill("e1", "buy", 40, 10.0, "tl-b-AAPL-20240430T2000-entry-0-00000000"), "b")
        cid = "tl-a-AAPL-20240502T1330-flatten-0-0badf00d"
        _flatten_plan(store, OrderIntent(cid, "AAPL", "sell", 150, strategy="a"))  # 10 more at the broker: not ours
        assert [(r.strategy, r.qty) for r in state_book.plan(store, cid)] == [("a", -100.0), ("b", -40.0), (EXTERNAL, -10.0)]

        assert state_book.record_book_fill(store, fill("f1", "sell", 150, 9.0, cid)) == \
            {"a": -100.0, "b": -40.0, EXTERNAL: -10.0}
        assert held(store) == {EXTERNAL: -10.0}  # a and b flat; the 10 bought outside tradelab were never in the store

        lone = "tl-c-MSFT-20240502T1330-flatten-0-0badf00d"
        _flatten_plan(store, OrderIntent(lone, "MSFT", "sell", 5, strategy="c"))  # one holder: a plain flatten
        assert state_book.plan(store, lone) is None
