"""research.metrics on hand-computed equity curves and trades: every metric, windows and regimes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from research.bars import Bars
from research.exits import ExitRules, Path, Trades, simulate_exits
from research.metrics import METRICS, equity_curve, path_metrics
from research.signals import Signals

M = {name: i for i, name in enumerate(METRICS)}
PPY = 252.0


def make(o, c) -> Bars:
    """Bars whose high / low never trigger anything the tests do not ask for."""
    o, c = np.asarray(o, float), np.asarray(c, float)
    n = len(o)
    return Bars(o, np.maximum(o, c) * 1.5, np.minimum(o, c) / 1.5, c, np.ones(n), np.arange(n, dtype=np.int64),
                np.zeros(n, np.int64), np.zeros(n, np.int64))


def sig(n, le=(), lx=(), se=(), sx=()) -> Signals:
    out = []
    for idx in (le, lx, se, sx):
        a = np.zeros(n, bool)
        a[list(idx)] = True
        out.append(a)
    return Signals(*out)


def trades_path(n, rows) -> Path:
    """A Path from trade rows (entry_bar, entry_price, exit_bar, exit_price, direction)."""
    cols = list(zip(*rows)) if rows else [[]] * 5
    e, ep, x, xp, d = (np.asarray(c, t) for c, t in zip(cols, (np.int64, float, np.int64, float, np.int8)))
    return Path(np.zeros(n, np.int8), np.zeros(n, np.int8), Trades(e, ep, x, xp, d, np.zeros(len(e), np.int8)))


# One long trade: decided at bar 1's close, filled at bar 2's open (10); exit decided at bar 3,
# filled at bar 4's open (9). q = 0.1 shares: equity 1, 1, 1.1, 1.2, 0.9, 0.9.
BARS = make([10, 10, 10, 12, 9, 10], [10, 10, 11, 12, 9, 12])
PATH = simulate_exits(BARS, sig(6, le=[1], lx=[3]), ExitRules())
EQ = [1.0, 1.0, 1.1, 1.2, 0.9, 0.9]
R = [0.0, 0.0, 0.1, 1.2 / 1.1 - 1, 0.9 / 1.2 - 1, 0.0]


def expected(r, total, mdd, trades, wins, gross_profit, gross_loss, trade_returns, bars_in_position):
    """Every metric from its formula (the module docstring), for hand-computed inputs."""
    r = np.asarray(r)
    n = len(r)
    cagr = (1 + total) ** (PPY / n) - 1
    std = r.std(ddof=1) if n >= 2 else 0.0
    down = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    return {
        "total_return": total, "cagr": cagr,
        "sharpe": r.mean() / std * math.sqrt(PPY) if std > 0 else np.nan,
        "sortino": r.mean() / down * math.sqrt(PPY) if down > 0 and n >= 2 else np.nan,
        "max_drawdown": mdd, "calmar": cagr / -mdd if mdd < 0 else np.nan,
        "win_rate": wins / trades if trades else np.nan,
        "profit_factor": gross_profit / -gross_loss if gross_loss < 0 else np.nan,
        "expectancy": np.mean(trade_returns) if trades else np.nan,
        "trades": float(trades), "exposure": bars_in_position / n,
    }


def check(row, want) -> None:
    got = dict(zip(METRICS, row))
    for name in METRICS:
        assert got[name] == pytest.approx(want[name], rel=1e-12, nan_ok=True), name


def test_one_long_trade_every_metric():
    eq = equity_curve(BARS.close, PATH, fees=0.0)
    np.testing.assert_allclose(eq.equity, EQ, rtol=1e-15)
    np.testing.assert_allclose(eq.returns, R, atol=1e-15)
    np.testing.assert_allclose(eq.trade_pnl, [-0.1], rtol=1e-12)
    out = path_metrics(BARS.close, PATH, fees=0.0, periods_per_year=PPY)
    assert out.shape == (1, 1, len(METRICS))
    # peak 1.2 at bar 3, trough 0.9: -25%; the only trade lost 10%; 2 of 6 bars closed in position
    check(out[0, 0], expected(R, -0.1, -0.25, 1, 0, 0.0, -0.1, [-0.1], 2))
    assert out[0, 0, M["profit_factor"]] == 0.0  # no winner: 0 / 0.1, defined


def test_fees_and_slippage_on_both_fills():
    fees, slip = 0.01, 0.002
    eq = equity_curve(BARS.close, PATH, fees=fees, slippage=slip)
    q = 1.0 / (10 * (1 + slip) * (1 + fees))
    cash = q * 9 * (1 - slip) * (1 - fees)
    np.testing.assert_allclose(eq.equity, [1, 1, q * 11, q * 12, cash, cash], rtol=1e-14)
    np.testing.assert_allclose(eq.trade_return, [cash - 1], rtol=1e-12)


def test_short_trade_accounting():
    bars = make([10, 10, 10, 8, 8], [10, 10, 9, 11, 8])
    path = simulate_exits(bars, sig(5, se=[1], sx=[2]), ExitRules())
    fees, slip = 0.001, 0.0005
    eq = equity_curve(bars.close, path, fees=fees, slippage=slip)
    p = 10 * (1 - slip)  # sold at bar 2's open, bought back at bar 3's open (8)
    q = 1.0 / (p * (1 + fees))
    x = 8 * (1 + slip)
    cash = q * p + q * (p - x) - q * x * fees
    # the ledger a broker (and vectorbt) keeps: cash + short proceeds - fees + position x close
    ledger = 1.0 + q * p * (1 - fees) - q * 9
    np.testing.assert_allclose(eq.equity, [1, 1, ledger, cash, cash], rtol=1e-14)
    np.testing.assert_allclose(eq.trade_pnl, [cash - 1], rtol=1e-12)


def test_open_trade_is_valued_at_the_last_close_without_exit_costs():
    path = simulate_exits(BARS, sig(6, le=[1]), ExitRules())
    fees = 0.01
    eq = equity_curve(BARS.close, path, fees=fees)
    q = 1.0 / (10 * (1 + fees))
    assert path.trades.exit_bar[0] == -1
    np.testing.assert_allclose(eq.trade_return, [q * 12 - 1], rtol=1e-12)
    out = path_metrics(BARS.close, path, fees=fees)
    assert out[0, 0, M["trades"]] == 1 and out[0, 0, M["win_rate"]] == 1.0
    assert out[0, 0, M["total_return"]] == pytest.approx(q * 12 - 1, rel=1e-12)
    assert out[0, 0, M["exposure"]] == pytest.approx(4 / 6)


def test_stop_on_the_entry_bar_and_a_reversal_at_an_open():
    # trade 0: long at bar 1's open 10, stopped at 9 inside bar 1; trade 1: long at bar 3 (10),
    # reversed at bar 4's open (12) into trade 2, a short closed at bar 5's open (11)
    path = trades_path(7, [(1, 10.0, 1, 9.0, 1), (3, 10.0, 4, 12.0, 1), (4, 12.0, 5, 11.0, -1)])
    close = np.array([10, 11, 10, 11, 13, 11, 11], float)
    eq = equity_curve(close, path, fees=0.0)
    e1 = 0.9  # after the stop
    e4 = e1 / 10 * 12  # the long closed at 12, all of it shorted at 12
    q2 = e4 / 12
    want = [1, e1, e1, e1 / 10 * 11, e4 + q2 * (12 - 13), e4 + q2 * (12 - 11), e4 + q2 * (12 - 11)]
    np.testing.assert_allclose(eq.equity, want, rtol=1e-14)
    np.testing.assert_allclose(eq.trade_return, [-0.1, 0.2, 1 / 12], rtol=1e-12)
    out = path_metrics(close, path, fees=0.0)[0, 0]
    assert out[M["trades"]] == 3 and out[M["win_rate"]] == pytest.approx(2 / 3)
    assert out[M["profit_factor"]] == pytest.approx((0.18 + e4 / 12) / 0.1, rel=1e-12)
    assert out[M["exposure"]] == pytest.approx(2 / 7)  # bars 3 and 4 close in position


def test_no_trade_is_nan_where_undefined():
    out = path_metrics(BARS.close, trades_path(6, []), fees=0.001)[0, 0]
    got = dict(zip(METRICS, out))
    assert got["total_return"] == 0 and got["cagr"] == 0 and got["max_drawdown"] == 0
    assert got["trades"] == 0 and got["exposure"] == 0
    for name in ("sharpe", "sortino", "calmar", "win_rate", "profit_factor", "expectancy"):
        assert math.isnan(got[name]), name


def test_windows_split_returns_and_attribute_trades_by_entry():
    out = path_metrics(BARS.close, PATH, fees=0.0, windows=np.array([[0, 3], [3, 6], [0, 6]]))
    # window [0, 3): r = 0, 0, 0.1 and the trade (entered at bar 2) with its full -10%
    check(out[0, 0], expected(R[:3], 0.1, 0.0, 1, 0, 0.0, -0.1, [-0.1], 1))
    # window [3, 6): starts from eq_2 = 1.1; 1.2 then 0.9: -25% from the peak; no entry inside
    check(out[1, 0], expected(R[3:], 0.9 / 1.1 - 1, -0.25, 0, 0, 0.0, 0.0, [], 1))
    np.testing.assert_array_equal(out[2], path_metrics(BARS.close, PATH, fees=0.0)[0])


def test_regimes_compound_their_own_bars():
    regimes = np.array([0, 1, 0, 1, 0, -1])
    out = path_metrics(BARS.close, PATH, fees=0.0, regimes=regimes, n_regimes=2)
    assert out.shape == (1, 3, len(METRICS))
    # regime 0: bars 0, 2, 4: r = 0, 0.1, -0.25 -> levels 1, 1.1, 0.825; the trade entered at bar 2
    r0 = [R[0], R[2], R[4]]
    check(out[0, 0], expected(r0, 1.1 * 0.75 - 1, 0.825 / 1.1 - 1, 1, 0, 0.0, -0.1, [-0.1], 1))
    # regime 1: bars 1, 3: no drawdown (calmar NaN), bar 3 in position
    check(out[0, 1], expected([R[1], R[3]], 1.2 / 1.1 - 1, 0.0, 0, 0, 0.0, 0.0, [], 1))
    # bar 5 (unknown) counts in "all" only, which equals the no-regime result
    np.testing.assert_array_equal(out[0, 2], path_metrics(BARS.close, PATH, fees=0.0)[0, 0])


def test_empty_cell_is_nan_with_zero_trades():
    out = path_metrics(BARS.close, PATH, fees=0.0, regimes=np.zeros(6, np.int64), n_regimes=2)
    assert out[0, 1, M["trades"]] == 0
    assert np.isnan(np.delete(out[0, 1], M["trades"])).all()


@pytest.mark.parametrize("windows, regimes, n_regimes, msg", [
    (np.array([[0, 7]]), None, 0, "0 <= a < b <= 6"),
    (np.array([[3, 3]]), None, 0, "0 <= a < b"),
    (np.array([0, 6]), None, 0, "shape"),
    (None, np.zeros(5, np.int64), 1, "one code per bar"),
    (None, np.full(6, 2), 2, "-1 .. 1"),
    (None, np.zeros(6, np.int64), 0, "n_regimes"),
])
def test_invalid_windows_and_regimes(windows, regimes, n_regimes, msg):
    with pytest.raises(ValueError, match=msg):
        path_metrics(BARS.close, PATH, fees=0.0, windows=windows, regimes=regimes, n_regimes=n_regimes)
