"""The replay clock and the broker's matching engine, driven directly (no HTTP), on hand-made bars."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from data_lake.calendar import US_PER_MIN, nyse
from simulator import SimBroker, BrokerConfig, ReplayClock, Timeframe
from tests.kit import minute_bars

BUY = {"side": "buy", "time_in_force": "day", "type": "market"}


def session_open(day: str) -> int:
    s = nyse()
    return int(s.open_us[s.dates.searchsorted(pd.Timestamp(day))])


def frame(day: str, rows: list[tuple], first_minute: int = 0) -> pd.DataFrame:
    """1Min bars from ``first_minute`` after the open of ``day``; rows: (open, high, low, close, volume)."""
    o, h, low, c, v = (np.array(x, dtype=float) for x in zip(*rows))
    ts = session_open(day) + (first_minute + np.arange(len(rows))) * US_PER_MIN
    return pd.DataFrame({"ts": pd.to_datetime(ts, unit="us", utc=True), "open": o, "high": h, "low": low,
                         "close": c, "volume": v})


FLAT = [(100.0, 100.5, 99.5, 100.0, 1000)] * 5


def make(frames: dict[str, pd.DataFrame], timeframe: str = "1Min",
         **config) -> tuple[ReplayClock, SimBroker, list]:
    clock = ReplayClock(frames, timeframe)
    broker = SimBroker(clock, BrokerConfig(**config))
    updates: list[dict] = []
    clock.hub.taps.append(lambda kind, e: updates.append(e) if kind == "trade_update" else None)
    return clock, broker, updates


def order(broker: SimBroker, symbol: str = "AAPL", qty: int = 10, **kw):
    return broker.submit({"symbol": symbol, "qty": qty, **BUY, **kw})


def trail(updates: list[dict]) -> list[tuple[str, str]]:
    return [(u["event"], u["order"]["client_order_id"]) for u in updates]


def test_market_order_fills_at_the_next_bars_open_against_the_trader_by_the_slippage():
    rows = [(100, 101, 99, 100.5, 1000), (101, 102, 100, 101.5, 1000), (102, 103, 101, 102.5, 1000)]
    clock, broker, updates = make({"AAPL": frame("2024-01-02", rows)}, slippage=0.001)
    clock.step()  # bar 0 closed: now 09:31
    o = order(broker, client_order_id="m-1")
    assert o.status == "new" and broker.fills() == []
    clock.step()
    [fill] = broker.fills()
    assert fill.price == pytest.approx(101 * 1.001)
    assert fill.timestamp_us == session_open("2024-01-02") + US_PER_MIN
    assert broker.ledger.cash == pytest.approx(100_000 - 10 * 101 * 1.001)
    assert trail(updates) == [("new", "m-1"), ("fill", "m-1")]
    assert updates[-1]["qty"] == "10" and updates[-1]["position_qty"] == "10"
    assert updates[-1]["price"] == "101.101" and updates[-1]["order"]["status"] == "filled"


def test_stop_fills_at_its_price_inside_the_bar_and_at_the_open_through_a_gap():
    rows = [(100, 100.5, 99.5, 100, 1000), (100.2, 102.5, 100, 102, 1000), (103.4, 104, 103, 103.5, 1000)]
    clock, broker, _ = make({"AAPL": frame("2024-01-02", rows), "MSFT": frame("2024-01-02", rows)})
    clock.step()
    order(broker, "AAPL", type="stop", stop_price=102, client_order_id="inside")
    order(broker, "MSFT", type="stop", stop_price=103, client_order_id="gap")
    clock.step()  # AAPL's high reaches 102; MSFT's does not reach 103
    clock.step()  # MSFT opens at 103.4, beyond its stop
    assert {f.client_order_id: f.price for f in broker.fills()} == {"inside": 102.0, "gap": 103.4}
    gap = [(100, 101, 99, 100, 1000), (97, 98, 96, 97, 1000)]
    clock2, broker2, _ = make({"AAPL": frame("2024-01-02", gap)})
    order(broker2, "AAPL")
    clock2.step()  # long 10 at 100
    broker2.submit({"symbol": "AAPL", "qty": 10, "side": "sell", "type": "stop", "stop_price": 99,
                    "time_in_force": "gtc", "client_order_id": "protect"})
    clock2.step()  # opens at 97, through the 99 stop
    assert broker2.fills()[-1].price == 97.0 and broker2.ledger.positions == {}


def test_the_stop_fills_first_when_stop_and_take_profit_both_lie_inside_one_bar():
    rows = [(100, 100.5, 99.5, 100, 1000), (100, 104, 98, 101, 1000), (101, 101, 101, 101, 1000)]
    clock, broker, updates = make({"AAPL": frame("2024-01-02", rows)})
    clock.step()
    parent = order(broker, order_class="bracket", client_order_id="br", take_profit={"limit_price": 103},
                   stop_loss={"stop_price": 99})
    tp, sl = parent.legs
    assert (tp.type, tp.status, sl.type, sl.status) == ("limit", "held", "stop", "held")
    clock.step()  # entry at the open 100, then 104 and 98 both inside the bar
    assert [(f.side, f.price) for f in broker.fills()] == [("buy", 100.0), ("sell", 99.0)]
    assert (tp.status, sl.status, broker.ledger.positions) == ("canceled", "filled", {})
    assert [(u["event"], u["order"]["type"]) for u in updates] == [
        ("new", "market"), ("fill", "market"), ("new", "limit"), ("new", "stop"), ("fill", "stop"),
        ("canceled", "limit")]
    assert broker.ledger.cash == pytest.approx(100_000 - 1000 + 990)


def long_with_oco(rows: list[tuple]):
    """Long 10 at the second bar's open, protected by an OCO (target 105, stop 95); the rest of the
    rows stepped through."""
    clock, broker, _ = make({"AAPL": frame("2024-01-02", rows)})
    order(broker)
    clock.step()  # long 10 at 100
    oco = broker.submit({"symbol": "AAPL", "qty": 10, "side": "sell", "type": "limit", "time_in_force": "gtc",
                         "order_class": "oco", "take_profit": {"limit_price": 105},
                         "stop_loss": {"stop_price": 95}})
    for _ in rows[1:]:
        clock.step()
    return broker, oco


def test_an_oco_exit_also_fills_its_stop_first_and_cancels_the_take_profit():
    rows = [(100, 100.5, 99.5, 100, 1000), (100, 100, 100, 100, 1000), (100, 106, 94, 100, 1000)]
    broker, oco = long_with_oco(rows)
    assert (oco.status, oco.legs[0].status, broker.fills()[-1].price) == ("canceled", "filled", 95.0)


def test_an_oco_whose_bar_opens_beyond_the_target_takes_the_target_at_the_open_as_research_does():
    from research.exits import ExitRules, simulate_exits
    from tests.research.test_exits import make as bars_of
    from tests.research.test_exits import sig

    # bar 2 opens at 106 (beyond the 105 target) and trades down to 94 (through the 95 stop)
    rows = [(100, 100.5, 99.5, 100, 1000), (100, 100, 100, 100, 1000), (106, 107, 94, 100, 1000)]
    broker, oco = long_with_oco(rows)
    assert (oco.status, oco.legs[0].status, broker.fills()[-1].price) == ("filled", "canceled", 106.0)
    o, h, lo, c = ([float(r[i]) for r in rows] for i in range(4))
    path = simulate_exits(bars_of(o, h, lo, c), sig(3, le=[0]), ExitRules(stop_loss=0.05, take_profit=0.05))
    assert (path.trades.exit_bar[0], path.trades.exit_price[0]) == (2, 106.0)  # the same fill, by the backtest


def test_limits_fill_at_the_limit_when_traded_through_or_at_a_better_open():
    rows = [(100, 100.5, 99.5, 100, 1000), (100, 100.4, 99.0, 99.8, 1000), (99.8, 100, 99.6, 99.9, 1000)]
    clock, broker, _ = make({"AAPL": frame("2024-01-02", rows)})
    clock.step()
    order(broker, type="limit", limit_price=99.5, client_order_id="through")
    order(broker, type="limit", limit_price=101, client_order_id="better-open")
    never = order(broker, type="limit", limit_price=98, time_in_force="gtc", client_order_id="never")
    clock.step()
    clock.step()
    assert {f.client_order_id: f.price for f in broker.fills()} == {"through": 99.5, "better-open": 100.0}
    assert never.status == "new"


def test_partial_fills_share_a_volume_cap_per_bar_and_the_rest_keeps_working():
    rows = [(100 + i, 101 + i, 99 + i, 100 + i, 500) for i in range(4)]
    clock, broker, updates = make({"AAPL": frame("2024-01-02", rows)}, max_volume_fraction=0.1)
    clock.step()
    o = order(broker, qty=120, client_order_id="big")
    clock.step()
    assert (o.status, o.filled_qty) == ("partially_filled", 50)
    clock.step()
    clock.step()
    assert [(f.qty, f.price) for f in broker.fills()] == [(50, 101.0), (50, 102.0), (20, 103.0)]
    assert [u["event"] for u in updates] == ["new", "partial_fill", "partial_fill", "fill"]
    assert o.filled_avg_price == pytest.approx((50 * 101 + 50 * 102 + 20 * 103) / 120)
    assert updates[-1]["order"]["filled_qty"] == "120" and updates[1]["position_qty"] == "50"


def test_day_orders_expire_at_a_half_days_13_00_close_and_gtc_orders_stay():
    clock, broker, updates = make({"AAPL": minute_bars(["2024-11-29"], price=100.0)})
    day = order(broker, type="limit", limit_price=50, client_order_id="day")
    gtc = order(broker, type="limit", limit_price=50, time_in_force="gtc", client_order_id="gtc")
    assert day.to_json()["expires_at"] == "2024-11-29T18:00:00Z"  # 13:00 New York
    while clock.step() is not None:
        pass
    assert (day.status, gtc.status) == ("expired", "new")
    assert updates[-1]["event"] == "expired" and updates[-1]["timestamp"] == "2024-11-29T18:00:00Z"
    assert clock.now == pd.Timestamp("2024-11-29 18:00", tz="UTC") and not clock.is_open()


def test_orders_placed_while_closed_are_accepted_and_routed_at_the_next_open():
    frames = {"AAPL": pd.concat([frame("2024-01-02", FLAT, first_minute=385),
                                 frame("2024-01-03", [(101, 102, 100, 101, 1000)])])}
    clock, broker, updates = make(frames)
    for _ in range(5):
        clock.step()
    assert clock.now == pd.Timestamp("2024-01-02 21:00", tz="UTC") and not clock.is_open()
    o = order(broker, client_order_id="night")
    assert o.status == "accepted" and trail(updates) == [("accepted", "night")]
    clock.step()
    assert trail(updates)[1:] == [("new", "night"), ("fill", "night")]
    assert updates[1]["timestamp"] == "2024-01-03T14:30:00Z" and broker.fills()[0].price == 101.0


def test_queued_orders_are_rechecked_for_buying_power_at_the_open():
    day1 = [(100, 100, 100, 100, 1000)]
    frames = {s: pd.concat([frame("2024-01-02", day1, first_minute=389), frame("2024-01-03", [row])])
              for s, row in (("AAA", (110, 110, 110, 110, 1000)), ("BBB", (100, 100, 100, 100, 1000)))}
    clock, broker, updates = make(frames, cash=10_000)
    clock.step()  # the close of 2024-01-02: both marked at 100
    order(broker, "AAA", qty=50, client_order_id="a")  # holds 5000
    order(broker, "BBB", qty=49, client_order_id="b")  # holds 4900: 9900 <= 10000
    clock.step()  # AAA gaps up to 110: 5500 spent, 4500 left for BBB's 4900
    assert trail(updates)[2:] == [("new", "a"), ("fill", "a"), ("rejected", "b")]
    assert updates[-1]["order"]["failed_at"] == "2024-01-03T14:30:00Z"


def test_bars_are_visible_only_once_closed_and_coarser_bars_only_when_complete():
    clock, _, _ = make({"AAPL": minute_bars(["2024-01-02"])})
    store = clock.store
    assert len(store.bars("AAPL", Timeframe(1))["ts"]) == 0
    for _ in range(7):
        clock.step()
    minutes, five = store.bars("AAPL", Timeframe(1)), store.bars("AAPL", Timeframe(5))
    assert len(minutes["ts"]) == 7 and minutes["ts"][-1] + US_PER_MIN == clock.now_us
    assert len(five["ts"]) == 1  # 09:30-09:35 is complete, 09:35-09:40 is not
    assert len(store.bars("AAPL", Timeframe(0))["ts"]) == 0  # the daily bar completes at 16:00
    clock.step_until("2024-01-02 21:00Z")
    assert clock.done and len(store.bars("AAPL", Timeframe(0))["ts"]) == 1


def test_the_clock_publishes_each_bar_after_matching_it():
    clock, broker, _ = make({"AAPL": frame("2024-01-02", FLAT[:2])})
    seen: list[tuple[str, str]] = []
    clock.hub.taps.append(lambda kind, e: seen.append((kind, e.get("event") or e["t"])))
    order(broker)
    clock.step()
    assert seen == [("trade_update", "new"), ("trade_update", "fill"), ("bar", "2024-01-02T14:30:00Z")]
    bar = clock.last_bar("AAPL").message()
    assert bar == {"T": "b", "S": "AAPL", "t": "2024-01-02T14:30:00Z", "o": 100.0, "h": 100.5, "l": 99.5,
                   "c": 100.0, "v": 1000, "n": 0, "vw": 100.0}  # no trade count: 0; no vwap: (h + l + c) / 3


def test_stream_bars_carry_int_volume_and_trade_count_and_a_number_vwap():
    rows = [(100.0, 101.0, 99.0, 100.5, 1000.5), (100.5, 101.0, 100.0, 100.8, 1001.5)]
    minutes = minute_bars(["2024-01-02"])[:2]
    clock, _, _ = make({"AAPL": frame("2024-01-02", rows), "MSFT": minutes})
    clock.step()
    first = clock.last_bar("AAPL").message()
    clock.step()
    aapl, msft = clock.last_bar("AAPL").message(), clock.last_bar("MSFT").message()
    assert (first["v"], aapl["v"]) == (1000, 1002)  # split-adjusted volumes round half to even
    assert aapl["n"] == 0 and aapl["vw"] == pytest.approx((101 + 100 + 100.8) / 3)  # none in the lake
    assert (msft["v"], msft["n"], msft["vw"]) == (int(minutes["volume"][1]), int(minutes["trade_count"][1]),
                                                  minutes["vwap"][1])
    types = (("v", int), ("n", int), ("vw", float))
    assert all(type(m[k]) is t for m in (first, aapl, msft) for k, t in types)


def test_a_round_trip_with_fees_and_a_short_match_a_hand_calculation():
    rows = [(100, 100, 100, 100, 1000), (101, 101, 101, 101, 1000), (103, 103, 103, 103, 1000),
            (102, 102, 102, 102, 1000), (99, 99, 99, 99, 1000), (98, 98, 98, 98, 1000)]
    clock, broker, _ = make({"AAPL": frame("2024-01-02", rows)}, fee_rate=0.001)
    clock.step()
    order(broker)
    clock.step()  # buy 10 at 101
    broker.submit({"symbol": "AAPL", "qty": 10, "side": "sell", "type": "market", "time_in_force": "day"})
    clock.step()  # sell 10 at 103
    broker.submit({"symbol": "AAPL", "qty": 5, "side": "sell", "type": "market", "time_in_force": "day"})
    clock.step()  # short 5 at 102
    position = broker.positions_json()[0]
    assert (position["qty"], position["side"], position["market_value"]) == ("-5", "short", "-510")
    order(broker, qty=5)
    clock.step()  # cover 5 at 99
    fees = 0.001 * (1010 + 1030 + 510 + 495)
    expected = 100_000 - 1010 + 1030 + 510 - 495 - fees
    account = broker.account_json()
    assert broker.ledger.positions == {} and float(account["cash"]) == pytest.approx(expected)
    assert float(account["equity"]) == pytest.approx(expected) and account["long_market_value"] == "0"


def test_run_steps_in_the_background_at_a_chosen_speed():
    clock, broker, _ = make({"AAPL": frame("2024-01-02", FLAT[:3])})
    order(broker)
    started = time.monotonic()
    clock.run(speed=600)  # a minute bar every 0.1 s
    assert clock.wait(timeout=5) and clock.done
    assert time.monotonic() - started >= 0.25 and len(broker.fills()) == 1
    fast, _, _ = make({"AAPL": minute_bars(["2024-01-02", "2024-01-03"])})
    fast.run(speed=0)
    assert fast.wait(timeout=10) and fast.now == pd.Timestamp("2024-01-03 21:00", tz="UTC")
    slow, _, _ = make({"AAPL": frame("2024-01-02", FLAT)})
    slow.run(speed=1)
    slow.stop()
    assert not slow.done


def test_a_stop_placed_on_the_entry_fill_works_inside_the_entry_bar():
    # bar 1 opens at 101 (the entry fill), then trades down to 98: the backtest's 2% stop from the
    # entry (98.98) is live from the entry bar on, so the live stop placed on the fill must be too.
    rows = [(100, 101, 99, 100.5, 1000), (101, 101.5, 98, 99, 1000), (99, 100, 97, 98, 1000)]
    clock, broker, updates = make({"AAPL": frame("2024-01-02", rows)})
    seen_at_between: list[list] = []

    def react(bars):  # the trader's reaction between the open and the close (lock released)
        fills = broker.fills()
        seen_at_between.append(fills)
        if len(fills) == 1 and not any(o.client_order_id == "stop-1" for o in broker.orders()):
            broker.submit({"symbol": "AAPL", "qty": 10, "side": "sell", "type": "stop", "time_in_force": "gtc",
                           "stop_price": round(fills[0].price * 0.98, 2), "client_order_id": "stop-1"})

    clock.between = react
    clock.step()
    order(broker, client_order_id="entry-1")
    clock.step()
    entry, stop = broker.fills()
    assert entry.price == 101 and stop.price == pytest.approx(98.98)  # at its level, in the entry bar
    assert stop.timestamp_us == entry.timestamp_us + US_PER_MIN - 1  # inside that bar, just before its close
    assert len(seen_at_between[1]) == 1  # between the phases the entry had filled and the stop had not
    assert [e for e, _ in trail(updates)][-2:] == ["new", "fill"]


def test_last_equity_is_the_previous_sessions_close_until_the_new_york_date_changes():
    # as Alpaca: after today's close, last_equity still says yesterday's (a runner starting its day
    # state in the evening must not take today's loss as its starting point)
    ts = pd.to_datetime(["2024-01-02 05:00", "2024-01-03 05:00", "2024-01-04 05:00"], utc=True)
    close = [100.0, 110.0, 121.0]
    daily = pd.DataFrame({"ts": ts, "open": close, "high": close, "low": close, "close": close, "volume": 1e6})
    clock, broker, _ = make({"AAPL": daily}, "1Day", cash=100_000)
    order(broker)  # before the first session: fills at its open, 100
    seen = []
    for _ in range(3):
        clock.step()  # a whole session, through its close
        a = broker.account_json()
        seen.append((float(a["equity"]), float(a["last_equity"])))
    assert seen == [(100_000.0, 100_000.0), (100_100.0, 100_000.0), (100_210.0, 100_100.0)]
