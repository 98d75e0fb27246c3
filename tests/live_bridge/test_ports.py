"""The port's shared rules: which order status can follow which, and the fill made from an order's totals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from live_bridge.ports import OrderAck, status_can_follow, synthetic_fill

T0 = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)


def ack(filled: float, avg: float | None, qty: float = 10.0) -> OrderAck:
    return OrderAck("oid-1", "cid-1", "AAPL", "buy", qty, filled, avg, "partially_filled", "market", None, None, T0)


@pytest.mark.parametrize(("old", "new", "ok"), [
    ("new", "partially_filled", True), ("accepted", "new", True), ("partially_filled", "filled", True),
    ("new", "canceled", True), ("partially_filled", "partially_filled", True),
    ("partially_filled", "new", False),  # never back to an early status
    ("filled", "partially_filled", False), ("canceled", "canceled", False),  # a terminal status is final
])
def test_a_status_can_follow_another_only_forward(old, new, ok):
    assert status_can_follow(old, new) is ok


def test_the_synthetic_fill_makes_the_counted_notional_add_up():
    fill = synthetic_fill(ack(filled=10, avg=101.0), counted_qty=4, counted_notional=4 * 100.0, at=T0)

    assert (fill.execution_id, fill.order_id, fill.client_order_id) == ("oid-1:10", "oid-1", "cid-1")
    assert fill.qty == 6 and fill.price == pytest.approx((10 * 101.0 - 400.0) / 6) and fill.timestamp == T0


@pytest.mark.parametrize(("filled", "avg"), [(4, 100.0), (10, None), (10, 0.0)])
def test_no_synthetic_fill_when_nothing_is_missing_or_unpriced(filled, avg):
    assert synthetic_fill(ack(filled=filled, avg=avg), counted_qty=4, counted_notional=400.0, at=T0) is None
