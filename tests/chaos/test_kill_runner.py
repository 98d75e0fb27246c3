"""kill -9 the live runner at 20+ random points of a daily replay (between an order's submit and its
ack among them), restart it each time: no order twice, the same positions and cash as an
uninterrupted replay, and a state store that is never corrupt."""

from __future__ import annotations

from collections import Counter

import pytest

from research.params import DataWindow, ExitRulesModel, dumps
from tests.chaos import harness
from tests.kit import entry, params_file

SYMBOLS = ["AAPL", "MSFT"]
START, END = "2012-03-01", "2013-03-01"


#: Protection by a plain stop, and by a stop and a target as one OCO (its stop leg's id is the broker's);
#: "netted": three strategies on AAPL at once (one net order per bar, runner_book.py), sma_cross on MSFT.
RULES = {"stop": ExitRulesModel(stop_loss=0.02, allow_short=False),
         "oco": ExitRulesModel(stop_loss=0.02, take_profit=0.03, allow_short=False),
         "netted": ExitRulesModel(stop_loss=0.03, allow_short=False)}
NETTED = {"sma_cross": {"fast": 10, "slow": 30, "short": False}, "rsi_reversion": {"n": 5, "lower": 30.0, "upper": 70.0,
                                                                                   "short": False},
          "breakout": {"n": 5, "k": 1.0, "exit_n": 3, "short": False}}  # as tests/live_bridge/test_parity_netted.py
LIMITS = {"netted": {"max_position_pct": 0.5, "max_gross_exposure": 1.0}}


@pytest.fixture(scope="module", params=sorted(RULES))
def setup(request, tmp_path_factory):
    from data_lake import Lake
    from data_lake.sources.sample import sample_bars, sample_meta

    root = tmp_path_factory.mktemp(f"kill-{request.param}")
    lake = Lake(root / "lake")
    for sym in SYMBOLS:
        lake.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    entries = [entry(symbol=s, params={"fast": 5, "slow": 20, "short": False},
                     exit_rules=RULES[request.param]) for s in SYMBOLS]
    if request.param == "netted":
        entries = entries[1:] + [entry(symbol="AAPL", strategy=s, params=p, exit_rules=RULES["netted"])
                                 for s, p in NETTED.items()]
    data = DataWindow(timeframe="1Day", start="2005-01-03", end="2013-03-01", symbols=SYMBOLS,
                      bars_hash={s: "x" for s in SYMBOLS})
    path = root / "params.json"
    path.write_bytes(dumps(params_file(entries, data=data)))
    clean = harness.run(lake, path, SYMBOLS, START, END, root / "clean", limits=LIMITS.get(request.param))
    return lake, path, root, clean, request.param


def _economics(orders: list[dict]) -> Counter:
    """Orders by economic effect: the decision (id without its digest), side, type, quantity, level."""
    return Counter((o["cid"].rsplit("-", 1)[0], o["side"], o["type"], o["qty"], o["stop_price"], o["filled"])
                   for o in orders)


def test_an_uninterrupted_child_runner_trades(setup):
    _, _, _, clean, kind = setup
    assert clean.steps >= 240 and sum(clean.kills.values()) == 0
    assert sum(o["filled"] > 0 for o in clean.orders) >= 10, "too few trades to prove anything"
    if kind == "oco":  # both sides of the OCO filled in the year: the target (parent) and the stop (leg)
        assert any(o["filled"] and o["type"] == "limit" for o in clean.orders)
        assert any(o["filled"] and o["cid"].endswith(":leg") for o in clean.orders)
    assert clean.store_problems == []


def test_kill_9_at_random_points_loses_and_doubles_nothing(setup, chaos):
    lake, path, root, clean, kind = setup
    kills = 22 if kind == "stop" else 12  # the OCO and netted runs: fewer kills, to stay inside make chaos's budget
    res = harness.run(lake, path, SYMBOLS, START, END, root / "killed", kills=kills, inner_kill=0.35, seed=7,
                      limits=LIMITS.get(kind))

    kills = sum(res.kills.values())
    chaos["kills_survived"] += kills
    dup = sum(n - 1 for n in res.accepted.values() if n > 1)
    extra = _economics(res.orders) - _economics(clean.orders)
    missing = _economics(clean.orders) - _economics(res.orders)
    chaos["duplicate_orders"] += dup + sum(extra.values())
    mismatched = {s for s in set(res.positions) | set(clean.positions)
                  if res.positions.get(s, 0) != clean.positions.get(s, 0)}
    chaos["position_mismatches"] += len(mismatched)

    assert kills >= (20 if kind == "stop" else 10), res.kills
    assert res.kills["after_submit"] + res.kills["after_intent"] >= 1, "no kill between an order's submit and its ack"
    assert dup == 0 and not extra, f"orders doubled: {extra}"
    assert not missing, f"orders lost: {missing}"
    assert not mismatched, f"positions {res.positions} vs uninterrupted {clean.positions}"
    assert res.cash == pytest.approx(clean.cash, abs=1e-6) and res.equity == pytest.approx(clean.equity, abs=1e-6)
    assert res.store_problems == []


def test_a_kill_between_an_exits_intent_and_its_cancels_loses_and_doubles_nothing(setup, chaos):
    """Four lives die at their first cancel (an exit's or a stop move's), once the decision has stored its
    order's intent: neither the cancel nor the order reached the broker. The restarted runner must cancel
    first and then send, like the decision it resumes: an exit resent over a live stop is refused (the stop
    holds the shares), and a moved stop resent over the old one doubles it."""
    lake, path, root, clean, kind = setup
    if kind == "oco":
        pytest.skip("the OCO year's positions all close at the broker (target or stop leg): the runner cancels nothing")
    res = harness.run(lake, path, SYMBOLS, START, END, root / "at-cancel", cancel_kills=4, seed=3, limits=LIMITS.get(kind))

    chaos["kills_survived"] += sum(res.kills.values())
    extra = _economics(res.orders) - _economics(clean.orders)
    missing = _economics(clean.orders) - _economics(res.orders)
    chaos["duplicate_orders"] += sum(extra.values())
    assert res.kills["at_cancel"] == 4, res.kills
    assert not extra and not missing, f"orders doubled {extra}, lost {missing}"
    assert res.positions == clean.positions and res.store_problems == []
    assert res.cash == pytest.approx(clean.cash, abs=1e-6)
