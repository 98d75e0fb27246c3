"""Performance metrics of a simulated path: the accounting convention and every formula, exactly.

Accounting (one symbol, all in, initial equity 1.0, costs ``fees`` and ``slippage`` as fractions).
Fills come from ``research.kernels.simulate.simulate_nb`` (raw prices: next open, or a stop's level);
slippage moves each fill against the trader, fees are charged on the traded notional:

* long entry with equity E at fill P: shares q = E / (P (1 + slippage) (1 + fees)), cash 0.
* long exit at fill X: cash = q X (1 - slippage) (1 - fees).
* short entry with equity E at fill P: entry price p = P (1 - slippage), q = E / (p (1 + fees));
  after the entry fee the cash is q p (= E - q p fees).
* short exit at fill X: x = X (1 + slippage), cash = q p + q (p - x) - q x fees.
* equity marked at every bar close c_t: flat: cash; long: q c_t; short: cash + q (p - c_t).
  An open position is valued at the last close (no exit costs).
  (These equal a cash + position * close ledger that credits short-sale proceeds, e.g. vectorbt's.)

Per-bar return r_t = eq_t / eq_{t-1} - 1, computed as (eq_t - eq_{t-1}) / eq_{t-1}, with
eq_{-1} = 1.0 (so r_0 = 0: nothing fills at bar 0).

Cells. Metrics are computed per WINDOW (bar range [a, b)) x REGIME (code per bar, -1 = unknown;
slots 0..n_regimes-1 plus a last slot "all bars of the window"). A cell's bars are the window's
bars of that regime; n is their number. Returns are attributed to the bar they end on, so a
window's first return r_a runs from close a-1 to close a. A cell's compounded equity is
L_t = prod(1 + r_s) = exp(sum log1p(r_s)) over its bars s <= t, starting from L = 1 (for the
"all" slot this is eq_t / eq_{a-1}, computed from the equity itself). Trades are attributed to
the cell of their ENTRY bar (whatever window or regime they exit in). A trade's return is
(exit value / entry cost) - 1, fees and slippage included: the entry cost is the equity the trade
committed, an open trade's exit value its value at the series' last close. Its PnL is exit value
minus entry cost (equity units).

Formulas (ppy = periods per year; std uses ddof = 1):

* total_return = L_end - 1 (the "all" slot of window [a, b): eq_{b-1} / eq_{a-1} - 1)
* cagr = (1 + total_return) ** (ppy / n) - 1
* sharpe = mean(r) / std(r) * sqrt(ppy)
* sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(ppy)
* max_drawdown = min over the cell of L_t / max(L_s, s <= t, and the starting 1.0) - 1 (<= 0)
* calmar = cagr / |max_drawdown|
* win_rate = trades with PnL > 0 / trades
* profit_factor = sum of positive PnL / |sum of negative PnL|
* expectancy = mean trade return
* trades = number of trades entered in the cell (an open one included)
* exposure = bars in position at their close / n

NaN where undefined: every metric but ``trades`` when n = 0; sharpe and sortino when n < 2;
any ratio whose denominator is 0 (sharpe: std = 0; sortino: no negative return; calmar: no
drawdown; win_rate and expectancy: no trade; profit_factor: no losing trade; vectorbt says inf
in some of these). cagr is NaN if equity went negative (possible with shorts). Everything is computed from running sums (n, sum r,
sum r^2, sum min(r,0)^2, the compounded level, its running peak and drawdown, bars in position,
and trade count / wins / gross profit / gross loss / sum of returns), so no equity is stored.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate",
           "profit_factor", "expectancy", "trades", "exposure")

# Accumulator slots of one cell. START is the level the cell starts from: in the "all" slot the
# level is the equity itself and START is NaN until the window's first change; 1.0 in regime slots.
START, LEVEL, PEAK, MDD, S1, S2, SNEG2, INPOS, TRADES, WINS, GPROFIT, GLOSS, SRET = range(13)
N_ACC = 13


class Equity(NamedTuple):
    """The per-bar equity and per-trade results of one path under the accounting convention."""

    equity: np.ndarray  # eq_t at each bar close
    returns: np.ndarray  # r_t
    trade_pnl: np.ndarray  # exit value - entry cost, per trade (equity units)
    trade_return: np.ndarray  # exit value / entry cost - 1, per trade


@njit(cache=True)
def init_acc_nb(acc):
    """Reset every cell's accumulators (the last regime slot is the window's "all" slot).

    >>> acc = np.empty((1, 2, N_ACC))  # one window, one regime slot + the "all" slot
    >>> init_acc_nb(acc)
    >>> acc[0, :, START], acc[0, :, TRADES]  # the "all" slot starts when its equity first changes
    (array([ 1., nan]), array([0., 0.]))
    """
    acc[:] = 0.0
    g_all = acc.shape[1] - 1
    for w in range(acc.shape[0]):
        for g in range(acc.shape[1]):
            start = np.nan if g == g_all else 1.0
            acc[w, g, START] = start
            acc[w, g, LEVEL] = start
            acc[w, g, PEAK] = start


@njit(cache=True, inline="always")
def _fold_nb(s1, s2, sn, peak, mdd, r, level):
    """One return and the new compounded level folded into a cell's running sums and drawdown."""
    rn = min(r, 0.0)
    peak = max(peak, level)
    return s1 + r, s2 + r * r, sn + rn * rn, peak, min(mdd, level / peak - 1.0)


@njit(cache=True, inline="always")
def _add_return_nb(acc, w, g, r, level, inpos):
    """_fold_nb on cell (w, g) of acc, in place (indexed, not viewed: no refcounting per bar)."""
    s1, s2, sn, peak, mdd = _fold_nb(acc[w, g, S1], acc[w, g, S2], acc[w, g, SNEG2], acc[w, g, PEAK],
                                     acc[w, g, MDD], r, level)
    acc[w, g, S1] = s1
    acc[w, g, S2] = s2
    acc[w, g, SNEG2] = sn
    acc[w, g, PEAK] = peak
    acc[w, g, MDD] = mdd
    acc[w, g, LEVEL] = level
    acc[w, g, INPOS] += inpos


@njit(cache=True)
def _add_trade_nb(acc, w, g, pnl, ret):
    acc[w, g, TRADES] += 1.0
    if pnl > 0.0:
        acc[w, g, WINS] += 1.0
        acc[w, g, GPROFIT] += pnl
    elif pnl < 0.0:
        acc[w, g, GLOSS] += pnl
    acc[w, g, SRET] += ret


@njit(cache=True)
def attribute_trade_nb(acc, win, regimes, n_regimes, bar, pnl, ret):
    """Count a trade in every cell its entry bar belongs to (public: research/sweep/pairs.py's account too).

    >>> acc = np.empty((2, 1, N_ACC))  # two windows, no regimes
    >>> init_acc_nb(acc)
    >>> attribute_trade_nb(acc, np.array([[0, 5], [5, 10]]), np.empty(0, np.int64), 0, 6, 0.1, 0.1)
    >>> acc[:, 0, TRADES]  # entered at bar 6: counted in the second window only
    array([0., 1.])
    """
    g_all = acc.shape[1] - 1
    g = regimes[bar] if n_regimes > 0 else -1
    for w in range(win.shape[0]):
        if win[w, 0] <= bar < win[w, 1]:
            _add_trade_nb(acc, w, g_all, pnl, ret)
            if g >= 0:
                _add_trade_nb(acc, w, g, pnl, ret)


@njit(cache=True, inline="always")
def step_cells_nb(t, eq, eq_prev, inpos, acc, win, regimes, n_regimes):
    """Account bar t, whose equity moved from eq_prev to eq, in every cell t belongs to.

    Public: research/sweep/pairs.py's two-leg account steps its bars through it (the same formulas).

    >>> acc = np.empty((1, 1, N_ACC))
    >>> init_acc_nb(acc)
    >>> step_cells_nb(0, 1.1, 1.0, 1.0, acc, np.array([[0, 2]]), np.empty(0, np.int64), 0)
    >>> acc[0, 0, [START, LEVEL, INPOS]]  # the window started from 1.0
    array([1. , 1.1, 1. ])
    """
    r = (eq - eq_prev) / eq_prev
    g_all = acc.shape[1] - 1
    g = regimes[t] if n_regimes > 0 else -1
    for w in range(win.shape[0]):
        if win[w, 0] <= t < win[w, 1]:
            if acc[w, g_all, START] != acc[w, g_all, START]:  # the window's first change:
                acc[w, g_all, START] = eq_prev  # it started from eq_prev
                acc[w, g_all, PEAK] = eq_prev
            _add_return_nb(acc, w, g_all, r, eq, inpos)
            if g >= 0:
                _add_return_nb(acc, w, g, r, acc[w, g, LEVEL] * (1.0 + r), inpos)


@njit(cache=True, inline="always")
def _step_one_nb(st, t, eq, eq_prev, inpos, a, b):
    """step_cells_nb when the only cell is window [a, b)'s "all" slot, held in scalars ``st``:
    (start, s1, s2, sneg2, peak, mdd, inpos, level), the hot path of a plain sweep."""
    if not (a <= t < b):
        return st
    start, s1, s2, sn, peak, mdd, ip, _ = st
    if start != start:
        start = eq_prev
        peak = eq_prev
    s1, s2, sn, peak, mdd = _fold_nb(s1, s2, sn, peak, mdd, (eq - eq_prev) / eq_prev, eq)
    return (start, s1, s2, sn, peak, mdd, ip + inpos, eq)


@njit(cache=True, inline="always")
def _mark_nb(d, q, p, cash, c):
    """Equity at a close c while holding q shares entered at p (after slippage), direction d."""
    return q * c if d == 1 else cash + q * (p - c)


@njit(cache=True)
def _hold_one_nb(st, close, e, end, d, q, p, cash, eq_prev, a, b):
    """_step_one_nb over the bars e .. end-1 of a position (the tight loop)."""
    u = max(e, a)
    v = min(end, b)
    if u >= v:
        return st
    if u > e:
        eq_prev = _mark_nb(d, q, p, cash, close[u - 1])
    st = _step_one_nb(st, u, _mark_nb(d, q, p, cash, close[u]), eq_prev, 1.0, a, b)
    start, s1, s2, sn, peak, mdd, ip, eq = st
    for t in range(u + 1, v):  # _step_one_nb's arithmetic, unrolled: t is inside [a, b)
        eq_prev = eq
        eq = _mark_nb(d, q, p, cash, close[t])
        s1, s2, sn, peak, mdd = _fold_nb(s1, s2, sn, peak, mdd, (eq - eq_prev) / eq_prev, eq)
    return (start, s1, s2, sn, peak, mdd, ip + (v - u - 1), eq)


@njit(cache=True)
def account_nb(close, e_bar, e_px, x_bar, x_px, direction, fees, slippage, win, regimes, n_regimes,
               acc, equity_out, pnl_out, ret_out):
    """Run a path's trades through the accounting convention into the cells' accumulators.

    ``acc`` [n_windows, n_regimes + 1, N_ACC] must come from ``init_acc_nb``. ``equity_out``
    (length n) and ``pnl_out`` / ``ret_out`` (length n_trades) are filled when they have that
    length (pass empty arrays to skip them). The loop runs over trades: flat bars are never
    visited (their return is 0 and their count comes from the caller's cell counts). With one
    window, no regimes and no equity output, the one cell is kept in scalars (same arithmetic).

    >>> close = np.array([8.0, 8.0, 10.0, 10.0])  # one long: in at 8 (bar 1), out at 10 (bar 3)
    >>> trade = (np.array([1]), np.array([8.0]), np.array([3]), np.array([10.0]), np.array([1], np.int8))
    >>> win, no_regimes = np.array([[0, 4]]), np.empty(0, np.int64)
    >>> acc, eq, pnl, ret = np.empty((1, 1, N_ACC)), np.empty(4), np.empty(1), np.empty(1)
    >>> init_acc_nb(acc)
    >>> account_nb(close, *trade, 0.0, 0.0, win, no_regimes, 0, acc, eq, pnl, ret)
    >>> eq, pnl, ret  # 1 / 8 shares, worth 1.25 at 10
    (array([1.  , 1.  , 1.25, 1.25]), array([0.25]), array([0.25]))
    """
    n = close.shape[0]
    k = e_bar.shape[0]
    keep_eq = equity_out.shape[0] == n
    keep_tr = pnl_out.shape[0] == k
    one = win.shape[0] == 1 and n_regimes == 0 and not keep_eq
    a0 = win[0, 0]
    b0 = win[0, 1]
    st = (np.nan, 0.0, 0.0, 0.0, np.nan, 0.0, 0.0, np.nan)
    cash = 1.0
    eq_prev = 1.0
    done = 0  # bars before this one are accounted (or flat)
    for j in range(k):
        e = e_bar[j]
        x = x_bar[j]
        d = direction[j]
        if keep_eq:
            equity_out[done:e] = eq_prev
        # the entry fill at e's open (after the previous trade's exit at that open, if any)
        cost = cash
        if d == 1:
            p = e_px[j] * (1.0 + slippage)
            q = cash / (p * (1.0 + fees))
            cash = 0.0
        else:
            p = e_px[j] * (1.0 - slippage)
            q = cash / (p * (1.0 + fees))
            cash = q * p
        end = x if x >= 0 else n  # bars e .. end-1 close in position
        if one:
            st = _hold_one_nb(st, close, e, end, d, q, p, cash, eq_prev, a0, b0)
            if end > e:
                eq_prev = _mark_nb(d, q, p, cash, close[end - 1])
        else:
            for t in range(e, end):
                eq = _mark_nb(d, q, p, cash, close[t])
                step_cells_nb(t, eq, eq_prev, 1.0, acc, win, regimes, n_regimes)
                if keep_eq:
                    equity_out[t] = eq
                eq_prev = eq
        done = end
        if x < 0:  # open at the end: valued at the last close
            pnl = eq_prev - cost
            ret = eq_prev / cost - 1.0
        else:
            if d == 1:
                cash = q * x_px[j] * (1.0 - slippage) * (1.0 - fees)
            else:
                xf = x_px[j] * (1.0 + slippage)
                cash = cash + q * (p - xf) - q * xf * fees
            pnl = cash - cost
            ret = cash / cost - 1.0
            # bar x closes flat, unless the next trade enters at its open (a reversal): then
            # bar x is that trade's first bar
            if not (j + 1 < k and e_bar[j + 1] == x):
                if one:
                    st = _step_one_nb(st, x, cash, eq_prev, 0.0, a0, b0)
                else:
                    step_cells_nb(x, cash, eq_prev, 0.0, acc, win, regimes, n_regimes)
                if keep_eq:
                    equity_out[x] = cash
                eq_prev = cash
                done = x + 1
        if keep_tr:
            pnl_out[j] = pnl
            ret_out[j] = ret
        attribute_trade_nb(acc, win, regimes, n_regimes, e, pnl, ret)
    if keep_eq:
        equity_out[done:] = eq_prev
    if one:
        g_all = acc.shape[1] - 1
        for m, slot in enumerate((START, S1, S2, SNEG2, PEAK, MDD, INPOS, LEVEL)):
            acc[0, g_all, slot] = st[m]


@njit(cache=True)
def finalize_nb(acc, counts, ppy, out):
    """Metrics [n_windows, n_regimes + 1, len(METRICS)] from the cells' accumulators and bar counts.

    >>> acc, out = np.empty((1, 1, N_ACC)), np.empty((1, 1, len(METRICS)))
    >>> init_acc_nb(acc)  # a window of 5 bars where nothing happened
    >>> finalize_nb(acc, np.array([[5]]), 252.0, out)
    >>> m = dict(zip(METRICS, out[0, 0].tolist()))
    >>> m["total_return"], m["trades"], m["exposure"], m["sharpe"]  # no return varies: sharpe undefined
    (0.0, 0.0, 0.0, nan)
    """
    g_all = acc.shape[1] - 1
    ann = np.sqrt(ppy)
    for w in range(acc.shape[0]):
        for g in range(acc.shape[1]):
            a = acc[w, g]
            o = out[w, g]
            n = counts[w, g]
            o[:] = np.nan
            o[9] = a[TRADES]
            if n == 0:
                continue
            if g == g_all:
                growth = 1.0 if a[START] != a[START] else a[LEVEL] / a[START]
            else:
                growth = a[LEVEL]
            o[0] = growth - 1.0
            cagr = growth ** (ppy / n) - 1.0 if growth >= 0.0 else np.nan
            o[1] = cagr
            mean = a[S1] / n
            if n >= 2:
                var = (a[S2] - a[S1] * mean) / (n - 1)
                if var > 0.0:
                    o[2] = mean / np.sqrt(var) * ann
                if a[SNEG2] > 0.0:
                    o[3] = mean / np.sqrt(a[SNEG2] / n) * ann
            o[4] = a[MDD]
            if a[MDD] < 0.0:
                o[5] = cagr / -a[MDD]
            if a[TRADES] > 0.0:
                o[6] = a[WINS] / a[TRADES]
                o[8] = a[SRET] / a[TRADES]
            if a[GLOSS] < 0.0:
                o[7] = a[GPROFIT] / -a[GLOSS]
            o[10] = a[INPOS] / n


@njit(cache=True)
def path_metrics_nb(close, e_bar, e_px, x_bar, x_px, direction, fees, slippage, win, regimes, n_regimes,
                    counts, ppy, out):
    """account_nb then finalize_nb for one path, writing ``out`` [n_windows, n_regimes + 1, n_metrics].

    >>> close = np.array([8.0, 8.0, 10.0, 10.0])  # one long: in at 8 (bar 1), out at 10 (bar 3)
    >>> trade = (np.array([1]), np.array([8.0]), np.array([3]), np.array([10.0]), np.array([1], np.int8))
    >>> win, no_regimes = np.array([[0, 4]]), np.empty(0, np.int64)
    >>> out = np.empty((1, 1, len(METRICS)))
    >>> path_metrics_nb(close, *trade, 0.0, 0.0, win, no_regimes, 0, np.array([[4]]), 252.0, out)
    >>> m = dict(zip(METRICS, out[0, 0].tolist()))
    >>> m["total_return"], m["trades"], m["win_rate"], m["exposure"]  # in position at closes 1 and 2
    (0.25, 1.0, 1.0, 0.5)
    """
    acc = np.empty((win.shape[0], out.shape[1], N_ACC))
    init_acc_nb(acc)
    none = np.empty(0)
    account_nb(close, e_bar, e_px, x_bar, x_px, direction, fees, slippage, win, regimes, n_regimes, acc,
               none, none, none)
    finalize_nb(acc, counts, ppy, out)


# ---------------------------------------------------------------- the Python layer
def check_windows(windows: np.ndarray | None, n: int) -> np.ndarray:
    """Windows as int64 [n_windows, 2] of [a, b) with 0 <= a < b <= n (default: the whole range)."""
    if windows is None:
        return np.array([[0, n]], dtype=np.int64)
    w = np.asarray(windows)
    if w.ndim != 2 or w.shape[1] != 2 or w.shape[0] == 0 or not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"windows must be an int array of shape [n_windows, 2], got {w.dtype} {w.shape}")
    bad = (w[:, 0] < 0) | (w[:, 0] >= w[:, 1]) | (w[:, 1] > n)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"window {i} = [{w[i, 0]}, {w[i, 1]}) is not a bar range with 0 <= a < b <= {n}")
    return np.ascontiguousarray(w, dtype=np.int64)


def check_regimes(regimes: np.ndarray | None, n_regimes: int, n: int) -> np.ndarray:
    """Regime codes as int64 [n] in -1 .. n_regimes-1 (an empty array when there are none)."""
    if n_regimes < 0:
        raise ValueError(f"n_regimes must be >= 0, got {n_regimes}")
    if regimes is None:
        if n_regimes:
            raise ValueError(f"n_regimes={n_regimes} but no regimes were given")
        return np.empty(0, np.int64)
    r = np.asarray(regimes)
    if r.shape != (n,) or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"regimes must be an int array with one code per bar ({n}), got {r.dtype} {r.shape}")
    if n_regimes == 0:
        raise ValueError("regimes given but n_regimes is 0: pass the number of regime codes")
    if n and (r.min() < -1 or r.max() >= n_regimes):
        raise ValueError(f"regime codes must be in -1 .. {n_regimes - 1} (-1 = unknown), "
                         f"got {r.min()} .. {r.max()}")
    return np.ascontiguousarray(r, dtype=np.int64)


def cell_counts(windows: np.ndarray, regimes: np.ndarray, n_regimes: int) -> np.ndarray:
    """Bars per (window, regime slot) cell, int64 [n_windows, n_regimes + 1] (last slot: all bars)."""
    out = np.zeros((windows.shape[0], n_regimes + 1), np.int64)
    for w, (a, b) in enumerate(windows):
        out[w, -1] = b - a
        if n_regimes:
            codes = regimes[a:b]
            out[w, :-1] = np.bincount(codes[codes >= 0], minlength=n_regimes)
    return out


def equity_curve(close: np.ndarray, path, fees: float, slippage: float = 0.0) -> Equity:
    """Per-bar equity, returns and per-trade PnL / return of a ``research.exits.Path``."""
    close = np.ascontiguousarray(close, dtype=np.float64)
    n, tr = close.shape[0], path.trades
    k = tr.entry_bar.shape[0]
    eq, pnl, ret = np.empty(n), np.empty(k), np.empty(k)
    win = np.array([[0, max(n, 1)]], np.int64)
    acc = np.empty((1, 1, N_ACC))
    init_acc_nb(acc)
    account_nb(close, tr.entry_bar, tr.entry_price, tr.exit_bar, tr.exit_price, tr.direction, float(fees),
               float(slippage), win, np.empty(0, np.int64), 0, acc, eq, pnl, ret)
    returns = np.diff(eq, prepend=1.0) / np.r_[1.0, eq[:-1]]
    return Equity(eq, returns, pnl, ret)


def path_metrics(close: np.ndarray, path, fees: float, slippage: float = 0.0, *,
                 windows: np.ndarray | None = None, regimes: np.ndarray | None = None, n_regimes: int = 0,
                 periods_per_year: float = 252.0) -> np.ndarray:
    """METRICS of one ``research.exits.Path`` per (window, regime slot): [n_windows, n_regimes + 1, M]."""
    close = np.ascontiguousarray(close, dtype=np.float64)
    n = close.shape[0]
    win = check_windows(windows, n)
    reg = check_regimes(regimes, n_regimes, n)
    out = np.empty((win.shape[0], n_regimes + 1, len(METRICS)))
    tr = path.trades
    path_metrics_nb(close, tr.entry_bar, tr.entry_price, tr.exit_bar, tr.exit_price, tr.direction, float(fees),
                    float(slippage), win, reg, n_regimes, cell_counts(win, reg, n_regimes),
                    float(periods_per_year), out)
    return out
