"""The simulator's trading API on loopback, driven by the real alpaca-py TradingClient."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, timezone
from types import SimpleNamespace
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import (
    GetCalendarRequest,
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from data_lake.schema import Adjustment
from data_lake.sources.sample import sample_bars
from simulator import Asset, SimBroker, BrokerConfig, ReplayClock, broker_app, serve
from tests.simulator.test_broker import FLAT, frame

KEY, SECRET = "trade-key", "trade-secret"
DAY, GTC = TimeInForce.DAY, TimeInForce.GTC
BUY, SELL = OrderSide.BUY, OrderSide.SELL
NY = "America/New_York"
SUB_PENNY = "sub-penny increment does not fulfill minimum pricing criteria"


@contextmanager
def simulator(frames: dict[str, pd.DataFrame], timeframe: str = "1Min", assets=None, **config):
    clock = ReplayClock(frames, timeframe)
    broker = SimBroker(clock, BrokerConfig(**config), assets=assets)
    updates: list[dict] = []
    clock.hub.taps.append(lambda kind, e: updates.append(e) if kind == "trade_update" else None)
    with serve(broker_app(clock, broker, api_key=KEY, secret_key=SECRET)) as sim:
        client = TradingClient(KEY, SECRET, paper=True, url_override=sim.url)
        client._retry_wait = 0  # alpaca-py sleeps 3 s before retrying a 429/504; the retry itself is kept
        yield SimpleNamespace(sim=sim, clock=clock, broker=broker, client=client, updates=updates)


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    bars = sample_bars("AAPL", Adjustment.RAW)
    return bars[(bars["ts"] >= "2012-11-01") & (bars["ts"] < "2013-01-01")].reset_index(drop=True)


def market(symbol="AAPL", qty=10, side=BUY, **kw) -> MarketOrderRequest:
    tif = kw.pop("time_in_force", DAY)
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif, **kw)


def limit(price: float, symbol="AAPL", qty=10, side=BUY, **kw) -> LimitOrderRequest:
    return LimitOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=kw.pop("time_in_force", GTC),
                             limit_price=price, **kw)


def refused(call, *args) -> APIError:
    with pytest.raises(APIError) as err:
        call(*args)
    return err.value


# ------------------------------------------------------------------------------------ fills
def test_a_market_order_fills_at_the_next_daily_open_exactly(daily):
    with simulator({"AAPL": daily}, "1Day") as s:
        for _ in range(3):
            s.clock.step()  # now: the close of daily[2], the market is closed
        o = s.client.submit_order(market(client_order_id="d-1"))
        assert o.status == OrderStatus.ACCEPTED and o.order_class == OrderClass.SIMPLE and o.qty == "10"
        s.clock.step()
        got = s.client.get_order_by_client_id("d-1")
    session = pd.Timestamp(daily["ts"][3]).tz_convert(NY).strftime("%Y-%m-%d")
    assert got.status == OrderStatus.FILLED and float(got.filled_avg_price) == daily["open"][3]
    assert got.filled_at == pd.Timestamp(f"{session} 09:30", tz=NY) and got.id == o.id


def test_a_round_trip_leaves_positions_and_equity_as_a_hand_calculation(daily):
    o, c = daily["open"].to_numpy(), daily["close"].to_numpy()
    with simulator({"AAPL": daily}, "1Day") as s:
        s.clock.step()
        s.client.submit_order(market())
        s.clock.step()  # bought 10 at o[1], marked at c[1]
        pos = s.client.get_open_position("AAPL")
        account = s.client.get_account()
        assert (pos.qty, float(pos.avg_entry_price), float(pos.current_price)) == ("10", o[1], c[1])
        assert float(pos.unrealized_pl) == pytest.approx(10 * (c[1] - o[1]))
        assert float(account.equity) == pytest.approx(100_000 + 10 * (c[1] - o[1]))
        assert float(account.cash) == pytest.approx(100_000 - 10 * o[1]) == float(account.buying_power)
        close = s.client.close_position("AAPL")
        assert (close.side, close.type, close.qty) == (SELL, "market", "10")
        s.clock.step()  # sold 10 at o[2]
        account = s.client.get_account()
        assert s.client.get_all_positions() == []
        err = refused(s.client.get_open_position, "AAPL")
    expected = 100_000 + 10 * (o[2] - o[1])
    assert float(account.cash) == pytest.approx(expected) and float(account.equity) == pytest.approx(expected)
    assert (err.status_code, err.message) == (404, "position does not exist")


def test_a_bracket_fills_its_entry_at_the_open_then_its_stop_before_its_take_profit():
    rows = [(100, 100.5, 99.5, 100, 1000), (100, 104, 98, 101, 1000), (101, 101, 101, 101, 1000)]
    with simulator({"AAPL": frame("2024-01-02", rows)}) as s:
        s.clock.step()
        entry = s.client.submit_order(market(order_class=OrderClass.BRACKET, client_order_id="br",
                                             take_profit=TakeProfitRequest(limit_price=103),
                                             stop_loss=StopLossRequest(stop_price=99)))
        s.clock.step()
        nested = s.client.get_order_by_id(entry.id, GetOrderByIdRequest(nested=True))
        flat = s.client.get_order_by_id(entry.id)
    assert entry.order_class == OrderClass.BRACKET and flat.legs is None
    assert nested.status == OrderStatus.FILLED and float(nested.filled_avg_price) == 100
    assert [(leg.type, leg.status, leg.filled_avg_price) for leg in nested.legs] == [
        ("limit", OrderStatus.CANCELED, None), ("stop", OrderStatus.FILLED, "99")]
    events = [TradeUpdate(**u) for u in s.updates]
    assert [(e.event, e.order.type, e.price) for e in events] == [
        ("new", "market", None), ("fill", "market", 100.0), ("new", "limit", None), ("new", "stop", None),
        ("fill", "stop", 99.0), ("canceled", "limit", None)]
    assert [e.position_qty for e in events if e.event == "fill"] == [10.0, 0.0]


def test_a_stop_gapped_through_fills_at_the_open_and_a_limit_at_its_price():
    rows = [(100, 100.5, 99.5, 100, 1000), (103.4, 104, 99.2, 103, 1000)]
    with simulator({"AAPL": frame("2024-01-02", rows), "MSFT": frame("2024-01-02", rows)}) as s:
        s.clock.step()
        stop = s.client.submit_order(StopOrderRequest(symbol="AAPL", qty=5, side=BUY, time_in_force=DAY,
                                                      stop_price=101))
        lim = s.client.submit_order(limit(99.5, "MSFT", qty=5))
        s.clock.step()
        got = {o.symbol: float(o.filled_avg_price) for o in
               s.client.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))}
    assert stop.stop_price == "101" and lim.limit_price == "99.5"
    assert got == {"AAPL": 103.4, "MSFT": 99.5}


def test_partial_fills_show_on_the_order_until_it_is_complete():
    rows = [(100, 101, 99, 100, 400), (101, 102, 100, 101, 400), (102, 103, 101, 102, 400)]
    with simulator({"AAPL": frame("2024-01-02", rows)}, max_volume_fraction=0.25) as s:
        s.clock.step()
        o = s.client.submit_order(market(qty=150))
        s.clock.step()
        first = s.client.get_order_by_id(o.id)
        s.clock.step()
        done = s.client.get_order_by_id(o.id)
    assert (first.status, first.filled_qty) == (OrderStatus.PARTIALLY_FILLED, "100")
    assert first.filled_avg_price == "101"
    assert (done.status, done.filled_qty) == (OrderStatus.FILLED, "150")
    assert float(done.filled_avg_price) == pytest.approx((100 * 101 + 50 * 102) / 150)
    assert [u["event"] for u in s.updates] == ["new", "partial_fill", "fill"]


# ------------------------------------------------------------------------------------ changes
def test_replace_makes_a_new_order_and_marks_the_old_one_replaced():
    rows = [(100, 100.5, 99.5, 100, 1000), (100, 100.5, 94, 96, 1000)]
    with simulator({"AAPL": frame("2024-01-02", rows)}) as s:
        s.clock.step()
        old = s.client.submit_order(limit(90, client_order_id="r-old"))
        change = ReplaceOrderRequest(qty=5, limit_price=95, client_order_id="r-new")
        new = s.client.replace_order_by_id(old.id, change)
        before = s.client.get_order_by_id(old.id)
        s.clock.step()
        filled = s.client.get_order_by_client_id("r-new")
    assert (new.replaces, new.qty, new.limit_price, new.status) == (old.id, "5", "95", OrderStatus.NEW)
    assert (before.status, before.replaced_by) == (OrderStatus.REPLACED, new.id)
    assert (filled.status, filled.filled_avg_price) == (OrderStatus.FILLED, "95")
    assert [(u["event"], u["order"]["client_order_id"]) for u in s.updates] == [
        ("new", "r-old"), ("replaced", "r-old"), ("new", "r-new"), ("fill", "r-new")]


def test_cancel_cancel_all_and_close_all_answer_as_alpaca():
    with simulator({"AAPL": frame("2024-01-02", FLAT), "MSFT": frame("2024-01-02", FLAT)}) as s:
        s.clock.step()
        s.client.submit_order(market("MSFT"))
        one = s.client.submit_order(limit(90))
        s.client.cancel_order_by_id(one.id)
        canceled = s.client.get_order_by_id(one.id)
        again = refused(s.client.cancel_order_by_id, one.id)
        missing = refused(s.client.get_order_by_id, "00000000-0000-4000-8000-000000000000")
        two = s.client.submit_order(limit(91))
        three = s.client.submit_order(limit(92, qty=1))
        s.clock.step()  # MSFT bought
        cancel_all = s.client.cancel_orders()
        s.client.submit_order(limit(93))
        close_all = s.client.close_all_positions(cancel_orders=True)
        open_orders = s.client.get_orders()
    assert canceled.status == OrderStatus.CANCELED and canceled.canceled_at is not None
    assert (again.status_code, again.message) == (422, "order is not cancelable")
    assert missing.status_code == 404 and missing.message.startswith("order not found")
    assert sorted((r.id, r.status) for r in cancel_all) == sorted([(two.id, 200), (three.id, 200)])
    assert [(r.symbol, r.status, r.body.side, r.body.qty) for r in close_all] == [("MSFT", 200, SELL, "10")]
    assert [(o.symbol, o.side) for o in open_orders] == [("MSFT", SELL)]


def test_orders_list_by_status_symbol_and_side_and_nest_legs_on_request():
    with simulator({"AAPL": frame("2024-01-02", FLAT), "MSFT": frame("2024-01-02", FLAT)}) as s:
        s.clock.step()
        s.client.submit_order(limit(95, client_order_id="a"))
        s.client.submit_order(limit(96, "MSFT", client_order_id="m"))
        s.client.submit_order(limit(99, client_order_id="br", order_class=OrderClass.BRACKET,
                                    take_profit=TakeProfitRequest(limit_price=105),
                                    stop_loss=StopLossRequest(stop_price=95)))
        gone = s.client.submit_order(limit(94, "MSFT", client_order_id="gone"))
        s.client.cancel_order_by_id(gone.id)

        def ids(**kw) -> list[str]:
            return [o.client_order_id for o in s.client.get_orders(GetOrdersRequest(**kw))]

        flat = s.client.get_orders(GetOrdersRequest(symbols=["AAPL"]))
        nested = s.client.get_orders(GetOrdersRequest(symbols=["AAPL"], nested=True, direction="asc"))
        assert ids() == [o.client_order_id for o in s.client.get_orders()] and len(ids()) == 5
        assert ids(status=QueryOrderStatus.CLOSED) == ["gone"]
        assert ids(status=QueryOrderStatus.ALL, symbols=["MSFT"], direction="asc") == ["m", "gone"]
        assert ids(side=SELL) == [leg.client_order_id for leg in nested[1].legs][::-1]
        assert ids(limit=1) == [flat[0].client_order_id]
    assert [o.client_order_id for o in nested] == ["a", "br"] and nested[0].legs is None
    assert [(leg.type, leg.status) for leg in nested[1].legs] == [("limit", "held"), ("stop", "held")]


# ------------------------------------------------------------------------------------ refusals
def test_a_reused_client_order_id_is_refused_even_after_cancel_and_fill():
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        s.clock.step()
        first = s.client.submit_order(limit(90, client_order_id="dup-1"))
        s.client.cancel_order_by_id(first.id)
        after_cancel = refused(s.client.submit_order, limit(90, client_order_id="dup-1"))
        s.client.submit_order(market(client_order_id="dup-2"))
        s.clock.step()
        after_fill = refused(s.client.submit_order, market(client_order_id="dup-2"))
    for err in (after_cancel, after_fill):
        assert (err.status_code, err.code, err.message) == (422, 40010001, "client_order_id must be unique")
    assert s.broker.accepted == {"dup-1": 1, "dup-2": 1} and s.broker.duplicates == {"dup-1": 1, "dup-2": 1}


@pytest.mark.parametrize("setup, request_, status, message", [
    ([limit(90)], market(side=SELL), 422, "potential wash trade detected. use complex orders"),
    ([], market(qty=1001), 403, "insufficient buying power"),
    ([], limit(100.123), 422, f"invalid limit_price 100.123. {SUB_PENNY}"),
    ([], StopOrderRequest(symbol="AAPL", qty=1, side=BUY, time_in_force=DAY, stop_price=101.001), 422,
     f"invalid stop_price 101.001. {SUB_PENNY}"),
    ([], limit(0.12345, qty=1), 422,
     f"invalid limit_price 0.12345. {SUB_PENNY}"),
    ([], market("ZZZZ"), 422, "asset not found: ZZZZ"),
    ([], market(qty=0), 422, "qty must be > 0"),
    ([], market(qty=1.5), 422, "fractional qty is not supported by the simulator: qty must be whole shares"),
    ([market(qty=10), StopOrderRequest(symbol="AAPL", qty=10, side=SELL, time_in_force=GTC, stop_price=95)],
     market(qty=5, side=SELL), 403, "insufficient qty available for order (requested: 5, available: 0)"),
    ([], market(order_class=OrderClass.BRACKET, take_profit=TakeProfitRequest(limit_price=110),
                stop_loss=StopLossRequest(stop_price=100.5)), 422, "stop_loss.stop_price must be <= 99.99"),
])
def test_refusals_reach_alpaca_py_as_api_errors(setup, request_, status, message):
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        s.clock.step()
        for r in setup:
            s.client.submit_order(r)
            s.clock.step()
        err = refused(s.client.submit_order, request_)
        orders = s.client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert (err.status_code, err.message) == (status, message)
    assert len(orders) == len(setup)  # nothing was placed


def test_a_price_under_a_dollar_may_take_four_decimals_and_a_short_needs_a_shortable_asset():
    assets = [Asset("AAPL", shortable=False)]
    with simulator({"AAPL": frame("2024-01-02", FLAT)}, assets=assets, cash=1000) as s:
        cheap = s.client.submit_order(limit(0.1234, qty=1))
        s.client.cancel_order_by_id(cheap.id)
        short = refused(s.client.submit_order, market(side=SELL, qty=1))
        raw = requests.post(f"{s.sim.url}/v2/orders", json={"symbol": "AAPL", "qty": "1000", "side": "buy",
                            "type": "market", "time_in_force": "day"}, headers=auth(), timeout=5)
    assert cheap.limit_price == "0.1234"
    assert (short.status_code, short.code) == (422, 42210000)
    assert short.message == "asset AAPL cannot be sold short"
    assert raw.status_code == 403 and raw.json() == {
        "code": 40310000, "message": "insufficient buying power", "buying_power": "1000",
        "cost_basis": "100000", "symbol": "AAPL"}


def auth() -> dict:
    return {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}


def test_a_504_after_acceptance_makes_the_retry_a_duplicate_and_the_order_is_found_by_client_id():
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        s.clock.step()
        s.sim.app.state.after_accept.add("/v2/orders", status=504)
        err = refused(s.client.submit_order, market(client_order_id="once"))
        found = s.client.get_order_by_client_id("once")  # how a client resolves the lost answer
        s.sim.app.state.after_accept.add("/v2/orders", status=504)
        s.client.submit_order(market())  # no client_order_id: alpaca-py's retry places a second order
        s.clock.step()
        log = [r.status for r in s.sim.state.requests.all("/v2/orders") if r.method == "POST"]
    assert (err.status_code, err.message) == (422, "client_order_id must be unique")
    assert found.client_order_id == "once" and s.broker.accepted["once"] == 1
    assert log == [504, 422, 504, 200]
    assert len(s.broker.orders()) == 3 and len(s.broker.fills()) == 3


# ------------------------------------------------------------------------------------ clock, data
def test_clock_and_calendar_parse_in_alpaca_py_including_a_half_day(daily):
    with simulator({"AAPL": daily}, "1Day") as s:
        s.clock.step_until("2012-11-23 18:00Z")  # the half day's close: 13:00 New York
        clock = s.client.get_clock()
        calendar = s.client.get_calendar(GetCalendarRequest(start=date(2012, 11, 21), end=date(2012, 11, 26)))
        raw = requests.get(f"{s.sim.url}/v2/calendar", params={"start": "2012-11-23", "end": "2012-11-23"},
                           headers=auth(), timeout=5).json()
    assert clock.timestamp == pd.Timestamp("2012-11-23 13:00", tz=NY) and not clock.is_open
    assert clock.next_open == pd.Timestamp("2012-11-26 09:30", tz=NY)
    assert clock.next_close == pd.Timestamp("2012-11-26 16:00", tz=NY)
    assert [(c.date, c.open.time().isoformat(), c.close.time().isoformat()) for c in calendar] == [
        (date(2012, 11, 21), "09:30:00", "16:00:00"), (date(2012, 11, 23), "09:30:00", "13:00:00"),
        (date(2012, 11, 26), "09:30:00", "16:00:00")]
    assert raw == [{"date": "2012-11-23", "open": "09:30", "close": "13:00", "session_open": "0400",
                    "session_close": "1700", "settlement_date": "2012-11-28"}]


def test_the_clock_is_open_inside_a_session_and_assets_are_listed():
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        s.clock.step()
        clock = s.client.get_clock()
        assets = s.client.get_all_assets()
        aapl = s.client.get_asset("AAPL")
        missing = refused(s.client.get_asset, "ZZZZ")
    assert clock.is_open and clock.timestamp == pd.Timestamp("2024-01-02 09:31", tz=NY)
    assert clock.next_close == pd.Timestamp("2024-01-02 16:00", tz=NY)
    assert [a.symbol for a in assets] == ["AAPL"] and aapl.tradable and aapl.shortable
    assert isinstance(aapl.id, UUID) and missing.status_code == 404


def test_the_bars_endpoint_never_serves_a_bar_that_has_not_closed():
    frames = {"AAPL": frame("2024-01-02", [(100 + i, 101 + i, 99 + i, 100.5 + i, 1000) for i in range(5)])}
    with simulator(frames) as s:
        data = StockHistoricalDataClient(KEY, SECRET, url_override=s.sim.url)
        request = StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute,
                                   start=datetime(2024, 1, 2, tzinfo=timezone.utc),
                                   end=datetime(2024, 1, 3, tzinfo=timezone.utc))
        counts = []
        for _ in range(3):
            s.clock.step()
            counts.append(len(data.get_stock_bars(request).data.get("AAPL", [])))
        last = data.get_stock_bars(request).data["AAPL"][-1]
    assert counts == [1, 2, 3]
    assert last.timestamp == datetime(2024, 1, 2, 14, 32, tzinfo=timezone.utc) and last.close == 102.5
    assert np.isclose(last.open, 102)


def test_the_v3_clock_lists_one_clock_per_market_from_the_replay_clock():
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        s.clock.step()
        v2 = requests.get(f"{s.sim.url}/v2/clock", headers=auth(), timeout=5).json()
        now = requests.get(f"{s.sim.url}/v3/clock", headers=auth(), timeout=5).json()
        both = requests.get(f"{s.sim.url}/v3/clock", params={"markets": "NYSE,xnys"}, headers=auth(),
                            timeout=5)
    assert list(now) == ["clocks"] and len(now["clocks"]) == 1 and len(both.json()["clocks"]) == 2
    assert now["clocks"][0] == {
        "market": {"acronym": "NYSE", "mic": "XNYS", "name": "New York Stock Exchange", "timezone": NY},
        "timestamp": v2["timestamp"], "is_market_day": True, "next_market_open": v2["next_open"],
        "next_market_close": v2["next_close"], "phase": "core", "phase_until": "2024-01-02T16:00:00-05:00"}


@pytest.mark.parametrize("time, phase, until, market_day", [
    ("2024-01-02T08:59:00Z", "closed", "2024-01-02T04:00:00-05:00", True),
    ("2024-01-02T09:00:00Z", "pre", "2024-01-02T09:30:00-05:00", True),
    ("2024-01-02T21:00:00Z", "post", "2024-01-02T20:00:00-05:00", True),
    ("2024-01-03T01:00:00Z", "closed", "2024-01-03T04:00:00-05:00", True),  # 20:00 New York, still Jan 2
    ("2024-01-06T12:00:00Z", "closed", "2024-01-08T04:00:00-05:00", False),  # a Saturday
    ("2024-11-29T18:30:00Z", "post", "2024-11-29T17:00:00-05:00", True),  # a half day: closed at 13:00
])
def test_the_v3_clock_phases_follow_the_calendar_at_a_given_time(time, phase, until, market_day):
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        r = requests.get(f"{s.sim.url}/v3/clock", params={"time": time}, headers=auth(), timeout=5)
    clock = r.json()["clocks"][0]
    assert (clock["phase"], clock["phase_until"], clock["is_market_day"]) == (phase, until, market_day)
    assert pd.Timestamp(clock["timestamp"]) == pd.Timestamp(time)


@pytest.mark.parametrize("params, message", [
    ({"markets": "LSE"}, "market LSE is not supported by the simulator (NYSE, XNYS)"),
    ({"time": "noon"}, "invalid time: noon"),
])
def test_the_v3_clock_refuses_what_it_cannot_tell(params, message):
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        r = requests.get(f"{s.sim.url}/v3/clock", params=params, headers=auth(), timeout=5)
    assert (r.status_code, r.json()) == (400, {"code": 40010001, "message": message})


UNMODELLED = [
    ({"notional": "500"}, 42210000,
     "notional orders are not supported by the simulator: send qty in whole shares"),
    ({"qty": "1.5"}, 42210000, "fractional qty is not supported by the simulator: qty must be whole shares"),
    *[({"time_in_force": tif}, 40010001, f"time_in_force {tif} is not supported by the simulator (day, gtc)")
      for tif in ("ioc", "fok", "opg", "cls")],
    ({"type": "trailing_stop", "trail_percent": "1"}, 40010001,
     "order type trailing_stop is not supported by the simulator"),
    ({"type": "limit", "limit_price": "99", "extended_hours": True}, 40010001,
     "extended_hours orders are not supported by the simulator"),
]


@pytest.mark.parametrize("fields, code, message", UNMODELLED)
def test_what_the_simulator_does_not_model_is_refused_with_alpacas_error_body(fields, code, message):
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day", **fields}
    if "notional" in fields:
        del body["qty"]
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        r = requests.post(f"{s.sim.url}/v2/orders", json=body, headers=auth(), timeout=5)
        placed = s.broker.orders()
    assert (r.status_code, r.json()) == (422, {"code": code, "message": message}) and placed == []


def test_wrong_keys_get_alpacas_401_body_on_the_trading_api():
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        r = requests.get(f"{s.sim.url}/v2/account", headers={"APCA-API-KEY-ID": KEY}, timeout=5)
        err = refused(TradingClient("bad", "keys", paper=True, url_override=s.sim.url).get_account)
    assert (r.status_code, r.json()) == (401, {"code": 40110000, "message": "request is not authorized"})
    assert (err.status_code, err.code, err.message) == (401, 40110000, "request is not authorized")


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v2/watchlists", 404), ("GET", "/v2/stocks/AAPL/quotes/latest", 404), ("PUT", "/v2/orders", 405),
])
def test_an_endpoint_the_simulator_does_not_model_is_refused_in_alpacas_shape(method, path, status):
    with simulator({"AAPL": frame("2024-01-02", FLAT)}) as s:
        r = requests.request(method, f"{s.sim.url}{path}", headers=auth(), timeout=5)
    message = f"{method} {path} is not supported by the simulator"
    assert (r.status_code, r.json()) == (status, {"code": status * 100_000 + 10_000, "message": message})
