"""A symbol that switches strategy at the regime boundary: sma_cross trades AAPL and MSFT in the up
regimes, rsi_reversion in the ranging ones. The live runner trades each symbol as one mixed sleeve
(one switching path, so one position per symbol), through the real alpaca-py clients against the
simulator, and makes exactly the backtest's fills; every order, fill and stored position is the
strategy of the entry that opened it, and the shadow backtest agrees. Two strategies in one regime
on one symbol are netted instead (test_parity_netted.py)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import date

import numpy as np
import pandas as pd
import pytest

from live_bridge.ids import parse_client_order_id
from live_bridge.parity import check
from live_bridge.replay import replay
from live_bridge.runner_params import check_sleeves
from live_bridge.shadow import StoredRun, shadow_fills
from live_bridge.sleeves import sleeve_path, sleeves, sleeves_over
from live_bridge.state import StateStore
from research.bars import bars_from_arrays
from research.params import DataWindow, EntryVerdict, ExitRulesModel
from tests.kit import entry, params_file
from tests.live_bridge.test_parity import lake  # noqa: F401 - the module's sample lake fixture

SYMBOLS = ("AAPL", "MSFT")
#: strategy -> (labels, params, exit rules); the labels of 2012-03 .. 2013-03 (IBM) are mostly these
BY_REGIME = {
    "sma_cross": (("up_low", "up_normal", "up_high"), {"fast": 5, "slow": 20, "short": False},
                  ExitRulesModel(stop_loss=0.03, trailing_stop=0.04, time_stop=15, allow_short=False)),
    "rsi_reversion": (("range_low", "range_normal", "range_high"), {"n": 7, "lower": 35.0, "upper": 65.0, "short": False},
                      ExitRulesModel(stop_loss=0.03, allow_short=False)),
}
DATA = DataWindow(timeframe="1Day", start="2000-01-03", end="2013-03-01", symbols=list(SYMBOLS),
                  bars_hash={s: "x" for s in SYMBOLS}, benchmark="IBM")


def switching_file(extra=()):
    entries = [entry(symbol=sym, regime=lab, strategy=s, params=p, exit_rules=r)
               for sym in SYMBOLS for s, (labels, p, r) in BY_REGIME.items() for lab in labels]
    return params_file([*entries, *extra], data=DATA)


@pytest.fixture(scope="module")
def run(lake, tmp_path_factory):  # noqa: F811
    work = tmp_path_factory.mktemp("switching")
    return replay(lake, switching_file(), "2012-03-01", "2013-03-01", work_dir=work), work


def backtest(result):
    """Per symbol: the sleeve, its path over warm-up + replay, and (bar, side) -> the trade's strategy."""
    first = int(result.bars["AAPL"]["ts"].iloc[0].value // 1000)
    out = {}
    for sl in sleeves(result.params):
        a = result.history[sl.symbol]
        sp = sleeve_path(sl, a, bars_from_arrays(dict(a), "1Day"), "1Day", result.regimes["IBM"], first)
        tr, whose = sp.path.trades, {}
        for e, x, d, who in zip(tr.entry_bar, tr.exit_bar, tr.direction, sp.trade_strategies(sl)):
            whose[(int(e), "buy" if d > 0 else "sell")] = who
            if x >= 0:
                whose[(int(x), "sell" if d > 0 else "buy")] = who
        out[sl.symbol] = (sl, sp, whose)
    return out


def test_one_mixed_sleeve_per_symbol():
    sls = sleeves(switching_file())
    assert [(s.symbol, s.strategy) for s in sls] == [(s, "rsi_reversion+sma_cross") for s in SYMBOLS]
    sl = sls[0]
    assert sl.names == ("sma_cross", "rsi_reversion") and sl.strategies == ("sma_cross",) * 3 + ("rsi_reversion",) * 3
    check_sleeves(sls, {"IBM": object()})  # disjoint regimes: accepted


def test_a_symbol_switching_strategy_matches_the_backtest_fill_for_fill(run):
    result, work = run

    parity = check(result)

    assert result.errors == []
    assert parity.ok, parity.first_divergence
    owners = [parse_client_order_id(result.legs.get(c, c), ["rsi_reversion", "sma_cross"]).strategy
              for c in result.fills["client_order_id"]]
    counts = pd.Series(owners).value_counts().to_dict()
    assert counts.get("sma_cross", 0) >= 4 and counts.get("rsi_reversion", 0) >= 4, counts
    print(f"\nparity: {parity.summary()}; fills per strategy {counts}")
    # the rule live: positions held while the next session belonged to the other strategy kept their own
    held = [(s.symbol, s.strategy_at(int(sp.active[t])), s.strategy_at(int(sp.codes[t])))
            for s, sp, _ in backtest(result).values() for t in range(len(sp.active))
            if sp.active[t] >= 0 and sp.codes[t] >= 0 and s.strategy_at(int(sp.active[t])) != s.strategy_at(int(sp.codes[t]))]
    assert held, "no position was held across a regime flip to the other strategy"
    labels = {lab: s for s, (labels, _, _) in BY_REGIME.items() for lab in labels}
    across = [d for d in result.decisions if d.position != 0 and labels.get(d.regime_next, d.strategy) != d.strategy]
    assert across and all(d.reason.startswith(("hold", "exit")) for d in across)


def test_every_fill_is_the_strategy_whose_entry_opened_it_and_the_books_add_up(run):
    result, work = run
    expected = backtest(result)
    bar_of = {c: int(np.searchsorted(result.history[s]["ts"], int(b.value // 1000), side="right")) - 1
              for c, s, b in zip(result.fills["client_order_id"], result.fills["symbol"], result.fills["bar"])}

    with sqlite3.connect(f"file:{work / 'state.db'}?mode=ro", uri=True) as db:
        stored = db.execute("SELECT client_order_id, strategy, symbol, side, qty FROM fills ORDER BY rowid").fetchall()

    assert len(stored) == len(result.fills)
    running: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for cid, strategy, symbol, side, qty in stored:
        assert expected[symbol][2][(bar_of[cid], side)] == strategy, (cid, strategy)
        assert parse_client_order_id(result.legs.get(cid, cid), ["rsi_reversion", "sma_cross"]).strategy == strategy
        running[symbol][strategy] += qty if side == "buy" else -qty
        assert sum(1 for q in running[symbol].values() if abs(q) > 1e-9) <= 1, f"two strategies hold {symbol}"
    broker = result.fills.assign(q=np.where(result.fills["side"] == "buy", 1.0, -1.0) * result.fills["qty"])
    broker = broker.groupby("symbol")["q"].sum()
    with StateStore(work / "state.db", read_only=True) as store:
        per_strategy = store.positions()
        for sym in SYMBOLS:
            total = sum(p.qty for (s, y), p in per_strategy.items() if y == sym)
            assert total == pytest.approx(broker.get(sym, 0.0), abs=1e-9)
            assert store.net_positions().get(sym, 0.0) == pytest.approx(broker.get(sym, 0.0), abs=1e-9)
        # an open position at the end is the strategy of the trade still open in the backtest
        for sym, (sl, sp, _) in expected.items():
            if sp.path.position[-1] != 0:
                owner = sl.strategy_at(int(sp.active[-1]))
                assert {s for (s, y) in per_strategy if y == sym} == {owner}


def test_the_shadow_backtest_attributes_the_same_strategies(run, lake):  # noqa: F811
    result, work = run
    first = int(result.bars["AAPL"]["ts"].iloc[0].value // 1000)

    shadow = shadow_fills(lake, StoredRun(first, [(0, result.params)], []), date(2013, 2, 28))

    live = result.fills.copy()
    live["strategy"] = [parse_client_order_id(result.legs.get(c, c), ["rsi_reversion", "sma_cross"]).strategy
                        for c in live["client_order_id"]]
    got = sorted(zip(live["bar"], live["symbol"], live["side"], live["strategy"]))
    want = sorted(zip(shadow["bar"], shadow["symbol"], shadow["side"], shadow["strategy"]))
    assert got == want and {s for *_, s in want} == {"rsi_reversion", "sma_cross"}


def test_two_strategies_in_one_regime_of_one_symbol_are_netted_not_mixed():
    # rejected candidates replayed with --candidates can overlap an active entry's regime: the symbol is
    # then netted (one sleeve per strategy, runner_book.py; tests/live_bridge/test_parity_netted.py)
    def candidate(symbol, regime):
        return entry(symbol=symbol, regime=regime, strategy="breakout", params={"n": 20, "short": False},
                     status="flat", gate=EntryVerdict(passed=False, reasons=("pbo 0.7 > 0.5",)))

    clash = switching_file([candidate("AAPL", "up_low")])
    assert [s.strategy for s in sleeves(clash) if s.symbol == "AAPL"] == ["rsi_reversion+sma_cross"]
    netted = sleeves(clash, candidates=True)
    assert sorted(s.strategy for s in netted if s.symbol == "AAPL") == ["breakout", "rsi_reversion", "sma_cross"]
    assert [s.strategy for s in netted if s.symbol == "MSFT"] == ["rsi_reversion+sma_cross"]  # still one mixed sleeve
    check_sleeves(netted, {"IBM": object()})


def test_a_reload_may_switch_a_symbols_strategy():
    """Epochs: a file of sma_cross on AAPL, then one of rsi_reversion: one mixed sleeve (a position keeps
    the entry it was opened under until it exits, so the two never hold AAPL at once)."""
    old = params_file([entry(symbol="AAPL")], data=DATA)
    new = params_file([entry(symbol="AAPL", strategy="rsi_reversion", params={"n": 7, "short": False})], data=DATA)

    (sl,) = sleeves_over([(0, old), (10**15, new)])

    assert sl.names == ("sma_cross", "rsi_reversion") and sl.epoch_of == (0, 1)
    check_sleeves([sl], {"IBM": object()})


def test_a_strategy_halt_stops_only_that_strategys_entries(lake):  # noqa: F811
    from research.regimes import load_regimes

    (sl,) = [s for s in sleeves(switching_file()) if s.symbol == "MSFT"]
    a = lake.load_arrays("MSFT", "1Day")
    a = {k: v[a["ts"] < int(pd.Timestamp("2013-03-01").value // 1000)] for k, v in a.items()}
    bars, regimes = bars_from_arrays(dict(a), "1Day"), load_regimes(lake, "IBM")
    first = int(pd.Timestamp("2012-03-01").value // 1000)
    base = sleeve_path(sl, a, bars, "1Day", regimes, first)
    entered = dict(zip(base.path.trades.entry_bar.tolist(), base.trade_strategies(sl)))
    for who in ("sma_cross", "rsi_reversion"):
        e = next(b for b, s in entered.items() if s == who and a["ts"][b] >= first)
        for scope in ("sma_cross", "rsi_reversion"):
            halted = sleeve_path(sl, a, bars, "1Day", regimes, first, [(int(a["ts"][e - 1]), scope)])
            assert (e in halted.path.trades.entry_bar.tolist()) == (scope != who), (who, scope)


def test_who_acts_on_a_mixed_sleeves_decision():
    from live_bridge.sleeves import holder

    assert holder("rsi_reversion", {"sma_cross": 0.0, "rsi_reversion": 0.0}) == ("rsi_reversion", 0.0)
    # sma_cross still holds the shares (its stop's fill report is on its way): it acts, not the next regime's
    assert holder("rsi_reversion", {"sma_cross": 12.0, "rsi_reversion": 0.0}) == ("sma_cross", 12.0)
    assert holder("sma_cross", {"sma_cross": 12.0, "rsi_reversion": 0.0}) == ("sma_cross", 12.0)
