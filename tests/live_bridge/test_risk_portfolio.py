"""The portfolio rules (issue 17): per-strategy capital budgets and the correlated-positions limit,
pure, then through the live runner against the simulator (the decision log names the rule)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from data_lake.calendar import nyse
from live_bridge.correlation import Correlations, correlations_from_sessions, session_index
from live_bridge.ids import client_order_id
from live_bridge.ports import OrderAck, OrderIntent, Position
from live_bridge.risk import DEFAULT_BUDGETS, Proposal, RiskLimits, RiskManager
from tests.live_bridge.test_risk import NOW, ctx, pos

RISK = RiskManager(RiskLimits())
SYMS = ["AAPL", "MSFT", "NVDA", "AMD", "XOM"]


def intent(symbol="AAPL", qty=50.0, side="buy", kind="entry", strategy="sma_cross") -> OrderIntent:
    return OrderIntent(client_order_id(strategy, symbol, NOW, kind), symbol, side, qty, strategy=strategy, reason=kind)


def entry_order(symbol, qty, strategy="sma_cross", limit=None) -> OrderAck:
    cid = client_order_id(strategy, symbol, NOW, "entry")
    return OrderAck(f"id-{cid}", cid, symbol, "buy", qty, 0.0, None, "new", "limit" if limit else "market",
                    None, limit, NOW)


def books(strategy="sma_cross", **held) -> dict:
    """strategy_positions: {strategy: {symbol: Position at 100}} from symbol=qty."""
    return {strategy: {s: pos(s, q) for s, q in held.items()}}


def corr(pairs: dict[tuple[str, str], float], symbols=SYMS, **kw) -> Correlations:
    m = np.eye(len(symbols))
    for (a, b), c in pairs.items():
        i, j = symbols.index(a), symbols.index(b)
        m[i, j] = m[j, i] = c
    return Correlations.from_matrix(symbols, m, **kw)


def check(it=None, c=None, price=100.0, risk=RISK):
    return risk.check(Proposal(it or intent(), price), c or ctx())


# --- capital budgets --------------------------------------------------------------------------

def test_the_default_budgets_are_the_documented_ones():
    assert dict(DEFAULT_BUDGETS) == {"gap": 0.15, "breakout": 0.20, "momentum": 0.20, "pairs": 0.25,
                                     "vwap_reversion": 0.10, "rotation": 0.10, "sma_cross": 0.15,
                                     "rsi_reversion": 0.15, "sma_convergence": 0.15}
    limits = RiskLimits()
    assert limits.budget_of("pairs") == 0.25 and limits.budget_of("brand_new") == limits.default_budget == 0.15


def test_an_entry_that_fills_the_budget_exactly_passes_untrimmed():
    v = check(intent(qty=50), ctx(strategy_positions=books(MSFT=100)))  # 10,000 + 5,000 = 15% of 100k

    assert v.allowed and v.qty == 50 and "strategy_budget" not in v.message


def test_an_entry_beyond_the_budget_is_trimmed_to_fit():
    it = intent(qty=60)

    v = check(it, ctx(strategy_positions=books(MSFT=100)))

    assert v.allowed and v.qty == 50 and v.order(it).qty == 50
    assert "strategy_budget: qty 60 -> 50: sma_cross exposure 10,000.00" in v.message, v.message
    assert "> budget 0.15 x equity 100,000.00 = 15,000.00" in v.message


def test_an_entry_with_no_room_for_one_share_is_refused():
    v = check(intent(qty=10), ctx(strategy_positions=books(MSFT=149.5)))  # 14,950 used: 50 left < 1 share

    assert (v.allowed, v.rule) == (False, "strategy_budget")
    assert "room 50.00 buys no share at 100" in v.message


def test_pending_entries_count_against_their_own_strategy_only():
    orders = [entry_order("NVDA", 60), entry_order("AMD", 20, limit=50.0),  # 6,000 at the mark + 1,000
              entry_order("XOM", 500, strategy="pairs")]  # another strategy's: not counted
    c = ctx(open_orders=orders, marks={"NVDA": 100.0}, strategy_positions=books(MSFT=30))  # 3,000 held

    v = check(intent(qty=80), c)  # 10,000 used: room for 50

    assert v.allowed and v.qty == 50 and "sma_cross exposure 10,000.00" in v.message, v.message


def test_the_strategys_own_position_in_the_symbol_is_valued_at_the_price():
    c = ctx(strategy_positions=books(AAPL=100), positions={"AAPL": Position("AAPL", 100, 80.0, 8_000.0)})

    v = check(intent(qty=80), c, risk=RiskManager(RiskLimits(max_position_pct=0.2)))  # 10,000 at 100 now, not 8,000

    assert v.allowed and v.qty == 50


def test_budgets_are_configurable_and_validated():
    risk = RiskManager(RiskLimits(strategy_budgets={"sma_cross": 0.05}, default_budget=0.5))

    assert check(intent(qty=60), risk=risk).qty == 50
    assert check(intent(qty=60, strategy="other"), risk=risk).qty == 60
    for kw, field in ((dict(strategy_budgets={"gap": 1.5}), "strategy_budgets"), (dict(default_budget=0), "default_budget"),
                      (dict(max_correlated=0), "max_correlated"), (dict(correlation_threshold=1), "correlation_threshold"),
                      (dict(correlation_days=1), "correlation_days")):
        with pytest.raises(ValueError, match=f"RiskLimits.{field}"):
            RiskLimits(**kw)


# --- correlated positions ---------------------------------------------------------------------

def held(*symbols) -> dict:
    return {s: pos(s, 10) for s in symbols}


@pytest.mark.parametrize("n_correlated, allowed", [(2, True), (3, False)])
def test_the_fourth_member_of_a_correlated_group_is_refused(n_correlated, allowed):
    others = ["MSFT", "NVDA", "AMD"][:n_correlated]
    c = ctx(positions=held("MSFT", "NVDA", "AMD", "XOM"),
            correlations=corr({("AAPL", s): 0.9 for s in others} | {("AAPL", "XOM"): 0.2}))

    v = check(c=c)

    assert v.allowed is allowed, v.message
    if not allowed:
        assert v.rule == "correlated_positions"
        assert "AAPL would be position 4 of a correlated group" in v.message and "MSFT 0.90" in v.message


def test_a_correlation_of_exactly_the_threshold_does_not_count():
    c = ctx(positions=held("MSFT", "NVDA", "AMD"),
            correlations=corr({("AAPL", "MSFT"): 0.9, ("AAPL", "NVDA"): 0.9, ("AAPL", "AMD"): 0.7}))

    assert check(c=c).allowed
    assert check(c=replace(c, correlations=corr({("AAPL", s): 0.7000001 for s in ("MSFT", "NVDA", "AMD")}))).rule \
        == "correlated_positions"


def test_pending_entries_are_members_and_adding_to_a_held_symbol_is_not_a_new_one():
    c = ctx(positions=held("MSFT", "NVDA"), open_orders=[entry_order("AMD", 10, strategy="rsi_reversion")],
            correlations=corr({("AAPL", s): 0.9 for s in ("MSFT", "NVDA", "AMD")}), marks={"AMD": 100.0})

    assert check(c=c).rule == "correlated_positions"
    c = replace(c, positions=held("MSFT", "NVDA", "AAPL"))
    assert check(c=c).allowed  # AAPL is held: buying more adds no member (the position cap limits it)


def test_too_little_history_skips_the_rule_and_says_so():
    short = corr({}, symbols=["MSFT", "NVDA", "AMD"], short={"AAPL": "AAPL has 12 of the 60 daily returns needed"})
    c = ctx(positions=held("MSFT", "NVDA", "AMD"), correlations=short)

    v = check(c=c)

    assert v.allowed and "correlated_positions: not checked: AAPL has 12 of the 60 daily returns needed" in v.message
    none = check(c=ctx(positions=held("MSFT")))
    assert none.allowed and "correlated_positions: not checked: no daily returns" in none.message


def test_a_held_symbol_without_history_counts_as_uncorrelated_and_is_named():
    c = ctx(positions=held("MSFT", "NVDA", "NEWCO"),
            correlations=corr({("AAPL", "MSFT"): 0.9, ("AAPL", "NVDA"): 0.9}, symbols=["AAPL", "MSFT", "NVDA"]))

    v = check(c=c)

    assert v.allowed and "not measured, counted as uncorrelated: NEWCO" in v.message


@pytest.mark.parametrize("kind", ["exit", "stop", "flatten"])
def test_risk_reducing_orders_pass_both_rules(kind):
    c = ctx(positions=held("AAPL", "MSFT", "NVDA", "AMD"), strategy_positions=books(AAPL=10, MSFT=1_000),
            correlations=corr({("AAPL", s): 0.99 for s in ("MSFT", "NVDA", "AMD")}))
    it = intent(side="sell", qty=10, kind=kind)

    v = RISK.check(Proposal(it, 100.0), c)

    assert v.allowed and v.reduces_risk and v.qty == 10


# --- the returns matrix -----------------------------------------------------------------------

def daily_series(n_symbols: int, sessions: int, end: int, seed=0, common=0.8):
    """symbol -> (session index, close): a common factor plus noise, ``sessions`` closes up to ``end``."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0, 0.01, sessions)
    sess = np.arange(end - sessions + 1, end + 1)
    return {f"S{i}": (sess, 100 * np.exp(np.cumsum(common * f + (1 - common) * rng.normal(0, 0.01, sessions))))
            for i in range(n_symbols)}


def test_the_window_is_the_sessions_before_today_and_matches_numpy():
    today = session_index(datetime(2024, 3, 1, tzinfo=UTC).date())
    series = daily_series(6, 200, today)  # bars through today's session
    before = {s: (x[:-1], c[:-1]) for s, (x, c) in series.items()}

    got = correlations_from_sessions(series, today, 60)

    assert got.as_of == datetime(2024, 2, 29).date()
    same = correlations_from_sessions(before, today, 60)  # today's bar changes nothing: no future
    np.testing.assert_array_equal(got.z, same.z)
    rets = np.vstack([np.diff(np.log(c[-62:-1])) for _, c in series.values()])
    np.testing.assert_allclose(got.z @ got.z.T, np.corrcoef(rets), atol=1e-12)
    found, _ = got.with_others("S0", ["S1", "S2"])
    assert found == pytest.approx({"S1": np.corrcoef(rets)[0, 1], "S2": np.corrcoef(rets)[0, 2]}, abs=1e-12)


def test_short_and_gappy_histories_are_not_measured():
    today = 5000
    series = daily_series(3, 200, today - 1)
    sess, close = series["S0"]
    series["NEW"] = (sess[-30:], close[-30:])
    keep = np.ones(len(sess), bool)
    keep[-20:-10] = False  # 10 sessions missing > 60 // 10
    series["GAPPY"] = (sess[keep], close[keep])
    keep = np.ones(len(sess), bool)
    keep[-5:-2] = False  # 3 missing: the previous close repeats
    series["FEW_GAPS"] = (sess[keep], close[keep])

    c = correlations_from_sessions(series, today, 60)

    assert c.why_not("NEW") == "NEW has 29 of the 60 daily returns needed (closes of 30 of the 61 sessions before today)"
    assert "GAPPY has 50 of the 60" in c.why_not("GAPPY")
    assert c.why_not("FEW_GAPS") is None and c.why_not("S1") is None
    assert "no daily closes" in c.why_not("ZZZ")


def test_intraday_bars_give_their_sessions_last_close():
    today = 5000
    daily = daily_series(2, 80, today - 1)
    intraday = {s: (np.repeat(x, 3), np.repeat(c, 3) * np.tile([0.9, 1.1, 1.0], len(c))) for s, (x, c) in daily.items()}

    a, b = correlations_from_sessions(daily, today, 60), correlations_from_sessions(intraday, today, 60)

    np.testing.assert_allclose(a.z, b.z, atol=1e-12)


def test_500_symbols_build_once_per_session_and_check_in_well_under_a_millisecond():
    today = session_index(datetime(2024, 3, 1, tzinfo=UTC).date())
    series = daily_series(500, 300, today - 1)
    t0 = time.perf_counter()
    c = correlations_from_sessions(series, today, 60)
    build = time.perf_counter() - t0
    positions = {f"S{i}": pos(f"S{i}", 1) for i in range(1, 60)}
    books_ = {"sma_cross": dict(positions)}
    orders = [entry_order(f"S{i}", 1) for i in range(60, 160)]  # 100 pending entries
    ctx_ = ctx(positions=positions, strategy_positions=books_, open_orders=orders, correlations=c,
               marks=dict.fromkeys(series, 100.0), account=replace(ctx().account, equity=1e7, buying_power=2e7))
    risk = RiskManager(RiskLimits(max_correlated=1_000, strategy_budgets={"sma_cross": 1.0}))
    it = intent("S0", qty=1)
    risk.check(Proposal(it, 100.0), ctx_)  # the ids' parse cache warms up
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        v = risk.check(Proposal(it, 100.0), ctx_)
    per_check = (time.perf_counter() - t0) / n

    assert v.allowed, v.message
    print(f"\n500 symbols: matrix built in {build * 1e3:.1f} ms; a check with 59 positions and 100 pending "
          f"entries {per_check * 1e3:.3f} ms")
    assert build < 0.5 and per_check < 0.005  # loose: shared CI cores


# --- through the runner, against the simulator ------------------------------------------------

def correlated_bars(seed: int) -> pd.DataFrame:
    """Daily bars moving together (one factor, a little noise each): their sma crossings coincide."""
    days = nyse().dates
    days = days[(days >= pd.Timestamp("2023-01-03")) & (days < pd.Timestamp("2024-04-01"))]
    t = np.arange(len(days))
    factor = 0.012 * np.sin(t / 4.0) + np.random.default_rng(0).normal(0, 0.004, len(days))
    close = 100 * np.exp(np.cumsum(factor + np.random.default_rng(seed).normal(0, 0.001, len(days))))
    open_ = np.r_[close[0], close[:-1]]
    ts = pd.DatetimeIndex(days).tz_localize("America/New_York").tz_convert("UTC")
    return pd.DataFrame({"ts": ts, "open": open_, "high": np.maximum(open_, close) * 1.002,
                         "low": np.minimum(open_, close) * 0.998, "close": close, "volume": 1e6})


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from data_lake import Lake
    from data_lake.sources.synthetic import synthetic_meta

    lk = Lake(tmp_path_factory.mktemp("portfolio") / "lake")
    for i, sym in enumerate(("AAA", "BBB", "CCC", "DDD")):
        lk.write_bars(sym, "1Day", correlated_bars(i + 1), synthetic_meta())
    return lk


def replayed(lake, work, limits):
    from live_bridge.replay import replay
    from research.params import DataWindow, ExitRulesModel
    from tests.kit import entry, params_file

    syms = ["AAA", "BBB", "CCC", "DDD"]
    pf = params_file([entry(symbol=s, params={"fast": 2, "slow": 5, "short": False},
                            exit_rules=ExitRulesModel(stop_loss=0.04, allow_short=False)) for s in syms],
                     data=DataWindow(timeframe="1Day", start="2023-01-03", end="2024-03-28", symbols=syms,
                                     bars_hash=dict.fromkeys(syms, "synthetic")))
    result = replay(lake, pf, "2024-02-01", "2024-03-01", work_dir=work, limits=limits)
    lines = [json.loads(x) for x in (work / "decisions.jsonl").read_text().splitlines()]
    actions = [a for x in lines if x["event"] == "decision" for a in x["actions"] if "allowed" in a]
    return result, actions


def test_the_runner_refuses_the_fourth_correlated_entry_and_logs_the_rule(lake, tmp_path):
    limits = RiskLimits(queue_for_next_open=True, strategy_budgets={"sma_cross": 0.8})

    result, actions = replayed(lake, tmp_path, limits)

    assert result.errors == []
    refused = [a for a in actions if a["rule"] == "correlated_positions"]
    assert refused, [a["risk"] for a in actions]
    assert "would be position 4 of a correlated group (60-day daily return correlation > 0.7" in refused[0]["risk"]


def test_the_runner_trims_an_entry_to_the_strategys_budget_and_logs_it(lake, tmp_path):
    limits = RiskLimits(queue_for_next_open=True)  # sma_cross: 15%; each entry 0.25% risk / 4% stop = 6.25%

    result, actions = replayed(lake, tmp_path, limits)

    assert result.errors == []
    trimmed = [a for a in actions if a["allowed"] and "strategy_budget: qty" in a["risk"]]
    assert trimmed, [a["risk"] for a in actions]
    assert "> budget 0.15 x equity" in trimmed[0]["risk"]
    fills = result.fills[result.fills["client_order_id"] == trimmed[0]["order"]]
    assert len(fills) == 0 or fills["qty"].sum() < trimmed[0]["qty"]  # sent trimmed (logged qty: the intent's)


def test_no_symbol_with_the_history_gives_an_empty_lookup_not_an_error():
    series = daily_series(3, 5, 4999)  # an intraday runner's few sessions

    c = correlations_from_sessions(series, 5000, 60)

    assert c.index == {} and "S0 has 4 of the 60 daily returns needed" in c.why_not("S0")


def test_a_pending_exit_frees_the_budget_a_rotation_entry_uses():
    exit_ = OrderAck("x1", client_order_id("rotation", "MSFT", NOW, "exit"), "MSFT", "sell", 100.0, 0.0, None, "new",
                     "market", None, None, NOW)
    c = ctx(strategy_positions=books("rotation", MSFT=100))  # 10,000 = the whole 10% budget

    assert check(intent(qty=50, strategy="rotation"), c).rule == "strategy_budget"
    v = check(intent(qty=50, strategy="rotation"), replace(c, open_orders=[exit_]))
    assert v.allowed and v.qty == 50
