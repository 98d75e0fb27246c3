"""Three strategies on one symbol at once: sma_cross, rsi_reversion and breakout all trade AAPL in every regime.

The real runner trades the simulator through alpaca-py for a year of daily bars. Each strategy is
its own sleeve with its own virtual position; the broker sees one net order per bar (runner_book.py)
and the state store allocates its fills back (state_book.py). Proven here:
* every strategy's virtual fills (the store's, per strategy) equal its OWN backtest trade for trade:
  bar, side and price (the next open, or its stop level);
* after every bar, the broker's position equals the sum of the strategies' positions;
* no order ever faced an opposite-side open order (the simulator refuses a wash trade), none was refused;
* a strategy that would enter against another's open position is refused by rule ``opposite_sleeves``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from live_bridge.parity import check
from live_bridge.replay import replay
from live_bridge.risk import RiskLimits
from live_bridge.runner_book import BOOK, netted_groups
from live_bridge.runner_params import check_sleeves
from live_bridge.sleeves import sleeve_path, sleeves
from live_bridge.state import StateStore
from live_bridge.state_book import PlanRow, allocate
from research.bars import bars_from_arrays
from research.params import DataWindow, ExitRulesModel
from tests.kit import entry, params_file
from tests.live_bridge.test_parity import lake  # noqa: F401 - the module's sample lake fixture

DATA = DataWindow(timeframe="1Day", start="2000-01-03", end="2013-03-01", symbols=["AAPL"], bars_hash={"AAPL": "x"})
STOP = ExitRulesModel(stop_loss=0.03, allow_short=False)
#: chosen so that, over 2012-03 .. 2013-03, they hold AAPL together on ~55 bars and one exits on the
#: bar another enters 6 times (a net order with a crossed part)
LONG = {
    "sma_cross": ({"fast": 10, "slow": 30, "short": False}, STOP),
    "rsi_reversion": ({"n": 5, "lower": 30.0, "upper": 70.0, "short": False}, STOP),
    "breakout": ({"n": 5, "k": 1.0, "exit_n": 3, "short": False}, STOP),
}
LIMITS = RiskLimits(queue_for_next_open=True, max_position_pct=0.5, max_gross_exposure=1.0)


def netted_file(strategies=LONG):
    return params_file([entry(symbol="AAPL", strategy=s, params=p, exit_rules=r) for s, (p, r) in strategies.items()],
                       data=DATA)


@pytest.fixture(scope="module")
def run(lake, tmp_path_factory):  # noqa: F811
    work = tmp_path_factory.mktemp("netted")
    return replay(lake, netted_file(), "2012-03-01", "2013-03-01", work_dir=work, limits=LIMITS), work


def stored_fills(work):
    with sqlite3.connect(f"file:{work / 'state.db'}?mode=ro", uri=True) as db:
        return pd.read_sql("SELECT execution_id, client_order_id, strategy, side, qty, price, timestamp FROM fills "
                           "ORDER BY rowid", db)


def test_two_strategies_in_one_regime_are_two_sleeves_netted():
    sls = sleeves(netted_file())
    assert sorted(s.strategy for s in sls) == sorted(LONG) and not any(s.strategies for s in sls)
    assert list(netted_groups(sls)) == ["AAPL"]
    check_sleeves(sls, {})  # accepted: netted
    with_target = {s: (p, r.model_copy(update={"take_profit": 0.05})) for s, (p, r) in LONG.items()}
    with pytest.raises(ValueError, match="netted.*take_profit: breakout AAPL, rsi_reversion AAPL, sma_cross AAPL"):
        check_sleeves(sleeves(netted_file(with_target)), {})


def test_every_strategys_virtual_fills_equal_its_own_backtest(run):
    result, work = run
    assert result.errors == []
    a = result.history["AAPL"]
    ts = a["ts"]
    bars = bars_from_arrays(dict(a), "1Day")
    first = int(result.bars["AAPL"]["ts"].iloc[0].value // 1000)
    fills = stored_fills(work)
    fills["bar"] = [int(np.searchsorted(ts, pd.Timestamp(t).value // 1000, side="right")) - 1 for t in fills["timestamp"]]
    traded = {}
    for sl in sleeves(result.params):
        path = sleeve_path(sl, a, bars, "1Day", None, first).path
        tr = path.trades
        want = []
        for e, x, d, pe, px in zip(tr.entry_bar, tr.exit_bar, tr.direction, tr.entry_price, tr.exit_price):
            want.append((int(e), "buy" if d > 0 else "sell", round(float(pe), 6)))
            if x >= 0 and x < len(ts):
                want.append((int(x), "sell" if d > 0 else "buy", round(float(px), 6)))
        mine = fills[fills["strategy"] == sl.strategy]
        got = [(int(b), s, round(float(p), 6)) for b, s, p in zip(mine["bar"], mine["side"], mine["price"])]
        # a virtual trade may fill in portions (a partial fill): its bar and price, whole
        got = list(dict.fromkeys(got))
        assert got == want, (sl.strategy, got[:6], want[:6])
        traded[sl.strategy] = len(want)
    assert min(traded.values()) >= 4, traded
    parity = check(result)  # tradelab parity's own check reads the same allocated fills
    assert parity.ok, parity.first_divergence
    # both strategies were in AAPL together at some point, so the broker's orders were netted
    crossed_or_net = fills[fills["client_order_id"].str.contains(f"-{BOOK}-|^x:", regex=True)]
    assert set(crossed_or_net["strategy"]) == set(LONG), crossed_or_net
    print(f"\nnetted parity: virtual trades per strategy {traded}; broker orders {result.fills['client_order_id'].nunique()}")


def test_the_broker_position_is_the_sum_of_the_strategies_after_every_bar(run):
    result, work = run
    fills = stored_fills(work)
    broker = result.fills.assign(q=np.where(result.fills["side"] == "buy", 1.0, -1.0) * result.fills["qty"])
    virtual = fills.assign(q=np.where(fills["side"] == "buy", 1.0, -1.0) * fills["qty"],
                           at=pd.to_datetime(fills["timestamp"], utc=True, format="ISO8601"))
    for close in result.equity.index:
        b = broker.loc[broker["ts"] <= close, "q"].sum()
        v = virtual.loc[virtual["at"] <= close, "q"].sum()
        assert b == pytest.approx(v, abs=1e-9), close
    with StateStore(work / "state.db", read_only=True) as store:
        per = {s: p.qty for (s, y), p in store.positions().items() if y == "AAPL"}
        assert sum(per.values()) == pytest.approx(broker["q"].sum(), abs=1e-9)
        assert all(q >= 0 for q in per.values())  # long-only sleeves: never against each other


def test_no_order_was_refused_and_stops_cover_each_strategy(run):
    result, work = run
    log = [json.loads(x) for x in (work / "decisions.jsonl").read_text().splitlines()]
    refused = [x for x in log if x.get("event") == "order" and x.get("status") in ("refused by the broker", "failed")]
    assert refused == []
    rejected = [a for x in log for a in x.get("actions", []) if a.get("allowed") is False]
    assert rejected == [], rejected[:3]
    books = [x for x in log if x.get("event") == "book" and x.get("plan")]
    several = [x for x in books if len(x["plan"]) > 1]  # one bar: a strategy exits, another enters
    against = [x for x in several if len({q > 0 for q in x["plan"].values()}) > 1]
    assert len(against) >= 3, [x["plan"] for x in several]
    adding = [x for x in books if any(q for q in x["held"].values())
              and any(a.get("cancel") for a in x["actions"])]  # entries beside held positions: their stops went first
    assert adding
    crossed = stored_fills(work)
    crossed = crossed[crossed["client_order_id"].str.startswith("x:")]
    assert len(crossed) >= 2 * len(against) - 1  # both sides of every crossed part (one plan may not have filled yet)
    print(f"\nbooks: {len(books)} plans, {len(several)} of several strategies, {len(against)} crossed; "
          f"{len(adding)} added beside held positions")


def test_allocation_is_deterministic_crossed_first_then_in_plan_order():
    rows = [PlanRow("a", "X", -100.0, 0.0, None), PlanRow("b", "X", 80.0, 0.0, None), PlanRow("c", "X", 50.0, 0.0, None)]
    # net +30: a sells 100 inside the book to b (80) and c (20); the broker's buy of 30 completes c
    crossed, net = allocate(rows, "buy", 10.0)
    assert crossed == [-100.0, 80.0, 20.0] and net == [0.0, 0.0, 10.0]
    done = [replace(r, filled=c + n) for r, c, n in zip(rows, crossed, net)]
    crossed, net = allocate(done, "buy", 20.0)
    assert crossed == [0.0, 0.0, 0.0] and net == [0.0, 0.0, 20.0]
    assert [r.qty for r in rows] == [r.filled + c + n for r, c, n in zip(done, crossed, net)]


def test_a_strategy_does_not_enter_against_anothers_position(lake, tmp_path):  # noqa: F811
    both_ways = {"sma_cross": ({"fast": 5, "slow": 20, "short": False}, ExitRulesModel(stop_loss=0.03, allow_short=False)),
                 "rsi_reversion": ({"n": 7, "lower": 35.0, "upper": 65.0, "short": True},
                                   ExitRulesModel(stop_loss=0.03, allow_short=True))}
    result = replay(lake, netted_file(both_ways), "2012-03-01", "2012-09-01", work_dir=tmp_path, limits=LIMITS)
    log = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    refusals = [a for x in log for a in x.get("actions", []) if a.get("rule") == "opposite_sleeves"]
    assert refusals and "hold AAPL the other way" in refusals[0]["skip"]
    with StateStore(tmp_path / "state.db", read_only=True) as store:
        net = store.net_positions().get("AAPL", 0.0)
        per = [p.qty for (s, y), p in store.positions().items() if y == "AAPL" and p.qty]
    assert len({np.sign(q) for q in per}) <= 1  # never one long and one short at once (at the end)
    assert result.errors == [] and net == pytest.approx(sum(per), abs=1e-9)
