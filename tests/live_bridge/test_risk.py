"""Pre-trade risk: each rule alone rejects by name, exits always pass, sizing, rounding, the halts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from live_bridge.correlation import Correlations
from live_bridge.ids import client_order_id
from live_bridge.ports import Account, MarketClock, OrderAck, OrderIntent, Position
from live_bridge.risk import (
    ACCOUNT, RULES, DayState, Proposal, RiskContext, RiskLimits, RiskManager, drawdown_factor,
    orders_in_last_minute, round_price, size,
)

NOW = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)  # 10:30 ET
OPENS, CLOSES = datetime(2024, 1, 3, 14, 30, tzinfo=UTC), datetime(2024, 1, 2, 21, 0, tzinfo=UTC)
CLOCK = MarketClock(NOW, True, next_open=OPENS, next_close=CLOSES)
ACCT = Account(equity=100_000.0, cash=100_000.0, buying_power=200_000.0, last_equity=100_000.0)
RISK = RiskManager(RiskLimits())


def intent(kind="entry", side="buy", qty=50.0, symbol="AAPL", strategy="smacross", seq=0,
           **kw) -> OrderIntent:
    cid = client_order_id(strategy, symbol, NOW, kind, seq)
    return OrderIntent(cid, symbol, side, qty, strategy=strategy, reason=kind, **kw)


def order(oid, side, qty=10.0, symbol="AAPL", type="limit", price=99.0) -> OrderAck:
    return OrderAck(oid, f"cid-{oid}", symbol, side, qty, 0.0, None, "new", type,
                    price if type == "stop" else None, price if type == "limit" else None, NOW)


def pos(symbol, qty, price=100.0) -> Position:
    return Position(symbol, qty, price, qty * price)


def ctx(**kw) -> RiskContext:
    base = RiskContext(ACCT, {}, [], DayState.begin(CLOCK, ACCT), peak_equity=100_000.0, clock=CLOCK)
    return replace(base, **kw)


def check(it=None, c=None, price=100.0, **kw):
    return RISK.check(Proposal(it or intent(), price, **kw), c or ctx())


def test_a_plain_entry_passes_with_the_default_stop():
    v = check()

    assert v.allowed and v.rule is None and not v.reduces_risk
    assert v.qty == 50 and v.stop_loss == 98.0 and "default stop 2.00%" in v.message


# Each case breaks exactly one rule of an otherwise valid entry (buy 50 AAPL at 100 = 5% of equity).
REJECTIONS = {
    "daily_loss": (dict(c=ctx(account=replace(ACCT, equity=97_900.0))), "day loss 2.10% >= 2.00%"),
    "strategy_loss": (dict(c=ctx(day=replace(ctx().day, strategy_pnl={"smacross": -1_100.0}))),
                      "strategy smacross lost 1.10% of capital today >= 1.00%"),
    "market_hours": (dict(c=ctx(clock=replace(CLOCK, is_open=False))),
                     "market closed at 2024-01-02 15:30 UTC"),
    "entry_cutoff": (dict(c=ctx(clock=replace(CLOCK, timestamp=CLOCK.next_close - timedelta(minutes=10)))),
                     "no new entries in the last 15 min: 10.0 min to the close"),
    "rate_limit": (dict(c=ctx(recent_orders=[NOW - timedelta(seconds=s / 2) for s in range(100)])),
                   "100 orders sent in the last minute >= limit 100"),
    "require_stop": (dict(stop_loss=101.0), "stop loss 101 is not below the buy price 100"),
    "spread": (dict(bid=99.8, ask=100.2), "spread 0.40% > 0.30% (bid 99.8 ask 100.2)"),
    "wash_trade": (dict(c=ctx(open_orders=[order("o9", "sell", price=105.0)])),
                   "opposite-side open orders on AAPL must be cancelled first: o9"),
    "fractional": (dict(it=intent(qty=0.5, type="limit", limit_price=100.0)), "qty 0.5 is 0 whole shares"),
    "position_cap": (dict(it=intent(qty=120)), "AAPL position 0.12 of equity > cap 0.10 after this order"),
    "gross_exposure": (dict(c=ctx(positions={"MSFT": pos("MSFT", 380), "XOM": pos("XOM", 380)})),
                       "gross exposure 0.81 > 0.80 after this order"),
    "sector": (dict(c=ctx(positions={s: pos(s, 10) for s in ("MSFT", "NVDA", "AMD")},
                          sectors=dict.fromkeys(("AAPL", "MSFT", "NVDA", "AMD"), "tech"))),
               "3 positions in sector tech already (AMD, MSFT, NVDA); limit 3"),
    "buying_power": (dict(c=ctx(account=replace(ACCT, buying_power=4_000.0))),
                     "order notional 5,000.00 > buying power 4,000.00"),
}

# the portfolio rules (issue 17): a strategy out of budget, a 4th correlated position
REJECTIONS["strategy_budget"] = (
    dict(c=ctx(strategy_positions={"smacross": {"MSFT": pos("MSFT", 150)}})),
    "smacross exposure 15,000.00 (positions net of pending exits, and pending entries) + this order "
    "5,000.00 > budget 0.15 x "
    "equity 100,000.00 = 15,000.00: room 0.00 buys no share at 100")
REJECTIONS["correlated_positions"] = (
    dict(c=ctx(positions={s: pos(s, 10) for s in ("MSFT", "NVDA", "AMD")},
               correlations=Correlations.from_matrix(["AAPL", "MSFT", "NVDA", "AMD"], [
                   [1.0, 0.8, 0.75, 0.71], [0.8, 1.0, 0.5, 0.5], [0.75, 0.5, 1.0, 0.5], [0.71, 0.5, 0.5, 1.0]]))),
    "AAPL would be position 4 of a correlated group (60-day daily return correlation > 0.7 with it: "
    "MSFT 0.80, NVDA 0.75, AMD 0.71); limit 3")


@pytest.mark.parametrize("rule", REJECTIONS)
def test_each_rule_alone_rejects_by_name(rule):
    kwargs, message = REJECTIONS[rule]

    v = check(**kwargs)

    assert (v.allowed, v.rule) == (False, rule)
    assert message in v.message, v.message
    with pytest.raises(ValueError, match=rule):
        v.order(intent())


def test_every_entry_rule_has_a_case():
    assert set(REJECTIONS) | {"not_reducing"} == set(RULES)


def test_require_stop_without_a_default_rejects_a_naked_entry():
    strict = RiskManager(RiskLimits(default_stop_pct=None))

    v = strict.check(Proposal(intent(), 100.0), ctx())

    assert v.rule == "require_stop" and "without a stop loss" in v.message
    assert strict.check(Proposal(intent(), 100.0, stop_loss=98.5), ctx()).allowed


def test_wash_trade_rejection_names_the_orders_to_cancel():
    orders = [order("o1", "sell"), order("o2", "buy"), order("o3", "sell", symbol="MSFT")]

    v = check(c=ctx(open_orders=orders))

    assert v.rule == "wash_trade" and v.cancel_first == ("o1",)


def worst_context() -> RiskContext:
    """Every entry rule broken at once: halted, closed, rate-limited, opposite orders, no buying power."""
    day = replace(DayState.begin(CLOCK, ACCT), halted="day loss", disabled={"smacross": "loss"})
    return ctx(account=replace(ACCT, equity=90_000.0, buying_power=0.0), positions={"AAPL": pos("AAPL", 100)},
               open_orders=[order("buy-entry", "buy"),
                            order("held-stop", "sell", 100, type="stop", price=95.0)],
               day=day, peak_equity=200_000.0, clock=replace(CLOCK, is_open=False),
               recent_orders=[NOW] * 500)


@pytest.mark.parametrize("kind", ["exit", "stop", "target", "flatten"])
def test_exits_are_never_blocked(kind):
    stop = {"type": "stop", "stop_price": 95.123} if kind == "stop" else {}
    it = intent(kind, "sell", 100, **stop)

    v = RISK.check(Proposal(it, 100.0, bid=90.0, ask=110.0), worst_context())

    assert v.allowed and v.reduces_risk, v.message
    assert v.qty == 100
    # the opposite buy is a wash-trade risk; the stop holds the shares this sell needs
    assert set(v.cancel_first) == {"buy-entry", "held-stop"}
    if kind == "stop":
        assert v.stop_price == 95.13  # a sell stop rounds up: it fires no later than asked


def test_a_flatten_larger_than_the_position_is_trimmed_not_blocked():
    v = RISK.check(Proposal(intent("flatten", "sell", 150), 100.0), worst_context())

    assert v.allowed and v.qty == 100 and "trimmed" in v.message
    assert v.order(intent("flatten", "sell", 150)).qty == 100


def test_a_reducing_order_is_exempt_whatever_its_label():
    v = RISK.check(Proposal(intent("entry", "sell", 40), 100.0), worst_context())

    assert v.allowed and v.reduces_risk
    assert v.cancel_first == ("buy-entry", "held-stop")  # 40 to sell + 100 held by the stop > 100 owned


def test_an_exit_within_the_unheld_shares_keeps_the_stop():
    stop = order("stop", "sell", 60, type="stop", price=95.0)
    c = ctx(positions={"AAPL": pos("AAPL", 100)}, open_orders=[stop])

    v = RISK.check(Proposal(intent("exit", "sell", 40), 100.0), c)

    assert v.allowed and v.cancel_first == ()


def test_an_exit_with_nothing_to_exit_is_refused():
    v = check(intent("exit", "sell", 10))

    assert v.rule == "not_reducing" and "would not reduce the position (0)" in v.message


def test_flipping_through_zero_is_an_entry():
    v = check(intent("entry", "sell", 150), ctx(positions={"AAPL": pos("AAPL", 100)}))

    assert not v.reduces_risk and v.allowed and v.qty == 150  # short 50 = 5%: within the cap


@pytest.mark.parametrize("price, side, expected", [
    (12.345, "buy", 12.34), (12.345, "sell", 12.35),
    (0.12345, "buy", 0.1234), (0.12345, "sell", 0.1235),
    (12.34, "buy", 12.34), (12.34, "sell", 12.34),  # already on the grid: binary noise must not move it
    (1.0, "sell", 1.0), (0.99999, "sell", 1.0), (1.009, "buy", 1.0),
    (95.00000000000001, "sell", 95.0), (94.99999999999999, "buy", 95.0),  # float noise is not a tick
])
def test_rounding_buys_down_sells_up(price, side, expected):
    assert round_price(price, side) == expected


def test_the_bridge_rounds_a_level_exactly_as_the_backtest_placed_it():
    """A stop or target the sweep simulated (research.exits.stop_price / target_price) is sent unchanged:
    rounding it again for the broker moves no level by a tick, noise-prone fractions included."""
    from research.exits import ExitRules, stop_price, target_price

    rng = np.random.default_rng(5)
    for entry in np.r_[rng.uniform(0.05, 0.99, 300), rng.uniform(1, 900, 700), [100.0, 20.0, 1.0, 0.5]]:
        rules = ExitRules(stop_loss=float(rng.choice([0.01, 0.02, 0.05, 0.07])),
                          take_profit=float(rng.choice([0.02, 0.04, 0.1])))
        for direction, exit_side in ((1, "sell"), (-1, "buy")):
            stop, take = stop_price(direction, entry, entry, rules), target_price(direction, entry, rules)
            assert round_price(stop, exit_side) == stop and round_price(take, exit_side) == take, (entry, rules)


def test_check_rounds_limits_and_the_protective_stop():
    it = intent(qty=50, type="limit", limit_price=12.345)

    v = check(it, price=12.345)

    assert v.limit_price == 12.34  # a buy limit never pays more than asked
    assert v.stop_loss == 12.10  # 12.345 * 0.98 = 12.0981; the long's sell stop rounds up
    assert v.order(it).limit_price == 12.34


def test_limit_orders_are_whole_shares():
    v = check(intent(qty=10.7, type="limit", limit_price=100.0))

    assert v.allowed and v.qty == 10 and "whole shares" in v.message
    assert check(intent(qty=10.7)).qty == 10.7  # a market/day buy may be fractional


@pytest.mark.parametrize("stop_distance, factor, expected", [
    (1.0, 1.0, 200),  # risk says 250 shares, the 10% cap says 200
    (2.5, 1.0, 100),  # 0.25% of 100k = 250 dollars at risk / 2.5
    (2.5, 0.5, 50),  # halved in drawdown
])
def test_size_from_the_stop_distance_and_the_cap(stop_distance, factor, expected):
    assert size(100_000, 50.0, stop_distance, RiskLimits(), factor) == expected


def test_size_fractional_and_degenerate():
    assert size(100_000, 333.0, 5.0, RiskLimits(), whole_shares=False) == 30.03003
    assert size(0, 50.0, 1.0, RiskLimits()) == 0
    with pytest.raises(ValueError):
        size(100_000, 50.0, 0.0, RiskLimits())


def test_drawdown_halves_sizes_and_the_cap():
    limits = RiskLimits()
    assert drawdown_factor(92_000, 100_000, limits) == 0.5
    assert drawdown_factor(92_001, 100_000, limits) == 1.0

    v = check(intent(qty=60), ctx(peak_equity=110_000.0))  # equity 100k is 9.1% below the peak

    assert v.rule == "position_cap" and "cap 0.05 (0.10 halved in drawdown)" in v.message
    assert check(intent(qty=40), ctx(peak_equity=110_000.0)).allowed


def test_orders_per_minute_counts_only_the_last_minute():
    times = [NOW - timedelta(seconds=s) for s in (0, 30, 59.9, 60, 61, 3600)]

    assert orders_in_last_minute(times, NOW) == 3
    recent = [NOW - timedelta(seconds=70)] * 50 + [NOW - timedelta(seconds=1)] * 99
    assert check(c=ctx(recent_orders=recent)).allowed


def test_entry_cutoff_follows_the_broker_close_on_a_half_day():
    half_day = replace(CLOCK, next_close=datetime(2024, 11, 29, 18, 0, tzinfo=UTC))  # 13:00 ET
    day = replace(ctx().day, session=date(2024, 11, 29))

    def at(minute: int) -> MarketClock:
        return replace(half_day, timestamp=datetime(2024, 11, 29, 17, minute, tzinfo=UTC))

    late, early = check(c=ctx(clock=at(50), day=day)), check(c=ctx(clock=at(40), day=day))

    assert late.rule == "entry_cutoff" and "at 18:00 UTC" in late.message
    assert early.allowed


def test_halt_flow_day_loss_flattens_once_and_lasts_the_session():
    limits, day = RiskLimits(), DayState.begin(CLOCK, ACCT)

    day, events = day.update(98_000.0, {"smacross": -900.0}, limits)  # -2.00%

    assert [(e.scope, e.rule, e.flatten_all) for e in events] == [(ACCOUNT, "daily_loss", True)]
    assert "flatten all and halt until the next session" in events[0].message
    day, events = day.update(99_000.0, {"smacross": -900.0}, limits)  # recovering does not un-halt
    assert events == () and day.halted
    c = ctx(account=replace(ACCT, equity=99_000.0), day=day, positions={"AAPL": pos("AAPL", 100)})
    assert check(intent(symbol="MSFT"), c).rule == "daily_loss"
    assert check(intent("flatten", "sell", 100), c).allowed

    restarted = DayState.begin(CLOCK, ACCT, day.halts())  # a restart in the same session stays halted
    assert restarted.halted == day.halted
    tomorrow = replace(CLOCK, timestamp=datetime(2024, 1, 3, 14, 31, tzinfo=UTC))
    fresh = day.roll(tomorrow, replace(ACCT, last_equity=99_000.0))
    assert fresh.session == date(2024, 1, 3) and fresh.halted is None and fresh.start_equity == 99_000.0
    assert day.roll(CLOCK, ACCT) is day


def test_halt_flow_strategy_loss_turns_off_only_that_strategy():
    limits, day = RiskLimits(), DayState.begin(CLOCK, ACCT)

    day, events = day.update(99_200.0, {"smacross": -1_000.0, "pairs": 200.0}, limits)

    assert [(e.scope, e.rule, e.flatten_all) for e in events] == [("smacross", "strategy_loss", False)]
    assert day.halted is None and set(day.halts()) == {"smacross"}
    c = ctx(day=day)
    assert check(intent(strategy="smacross"), c).rule == "strategy_loss"
    assert check(intent(strategy="pairs"), c).allowed
    assert day.update(99_200.0, {"smacross": -1_000.0, "pairs": 200.0}, limits)[1] == ()


def test_a_stale_day_state_blocks_entries():
    tomorrow = replace(CLOCK, timestamp=datetime(2024, 1, 3, 15, 0, tzinfo=UTC))

    v = check(c=ctx(clock=tomorrow))

    assert v.rule == "daily_loss" and "roll it first" in v.message


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_gross_exposure"):
        RiskLimits(max_gross_exposure=80)
