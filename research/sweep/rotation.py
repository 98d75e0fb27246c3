"""Rotation in the sweep engine: a grid of ``Rotation`` params on one basket (assets + benchmark), metrics only.

What a combination computes, inside one numba kernel parallel over params (``sweep_rotation_nb``):

* the weights, with the kernels the live bridge and parity trade with: ``relative_strength_nb``
  and ``rs_order_nb`` (once per distinct lookback, shared by its params), ``ranked_weights_nb`` and
  ``effective_weights_nb`` (``research.baskets.weights`` / ``effective`` call the same kernels;
  ``start`` = 0: a backtest has no warm-up cut). So the weights a sweep scores are bit for bit the
  weights the live runner trades, and a test checks it;
* the shared-cash account of the pairs sweep (``research.sweep.pairs.pair_account_nb``: initial
  equity 1.0; the weights decided at bar t's close are traded at bar t+1's open, only on the legs
  whose weight changed, sized on the value at that open before costs; fees and slippage on each
  leg's traded notional; equity at each close), in ``basket_account_nb``: the same bar loop, its
  equity bit for bit that of ``pair_account_nb`` (a test checks it), with one difference, the trade:
* a trade is one leg's position, from the open that enters it from flat to the open that takes it
  back to flat (vectorbt's trades of a column); its PnL is the leg's cash flows (fees and slippage
  included) plus, while open at the end, its value at the last close; its return is the PnL over
  what the entry committed (the entry's notional plus its fee). The pairs account's trade (a run
  of bars holding any leg) would make a rotation, invested nearly all the time, one long trade;
* the cells and formulas of ``research.metrics`` (``step_cells_nb``, ``attribute_trade_nb``,
  ``finalize_nb``): the same METRICS layout as ``run_grid``, [n_params, n_windows, n_regimes + 1, M];
  a trade counts in the cells of its entry bar, exposure is the share of bars holding any leg.

The benchmark is data only (never traded); only its closes are read.

Named difference from vectorbt (``rotation_portfolio``: ``vbt.Portfolio.from_orders`` with
``group_by=True, cash_sharing=True, size_type="targetpercent"``, the same values, sells first):
vectorbt caps a buy at the available cash, this account (as the runner's orders) lets the cash go
negative. A rebalance sizes the changed legs on the value at the open and leaves a held leg as it
has drifted, so when the held legs have gained, or when fees and slippage are paid on a switch that
reinvests everything, the buys cost more than the cash the sells freed and vectorbt buys less. With
no costs and nothing held through a rebalance long-only (top_k 1), or with shorts whose proceeds
fund the longs, the cash never runs short and the two agree to rounding (a test checks equity,
total return, Sharpe and the trades to 1e-9; the costs are checked against a plain-Python account).

``sweep_rotation`` sweeps several baskets with the same params; ``RotationSweep.n_trials`` counts
every basket's combinations, so the deflated Sharpe of the best basket is not flattered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from ..bars import Bars
from ..kernels.pairs import effective_weights_nb
from ..kernels.rotation import ranked_weights_nb, relative_strength_nb, rs_order_nb
from ..metrics import (METRICS, N_ACC, attribute_trade_nb, cell_counts, check_regimes, check_windows, finalize_nb,
                       init_acc_nb, step_cells_nb)
from ..signals.rotation import Rotation
from .engine import Costs

PARAM_FIELDS = tuple(f.name for f in fields(Rotation))  # the columns of the kernel's params array


class RotationPath(NamedTuple):
    """One combination's per-bar effective weights (decided at each close) and equity (at each close)."""

    weights: np.ndarray  # (n, n_assets)
    equity: np.ndarray  # (n,)


class Basket(NamedTuple):
    """A basket's aligned prices: traded legs' opens and closes (n, m), the benchmark's closes (n,)."""

    opens: np.ndarray
    closes: np.ndarray
    bench: np.ndarray


# ---------------------------------------------------------------- kernels
@njit(cache=True)
def basket_account_nb(opens, closes, w, fees, slippage, win, regimes, n_regimes, acc, equity_out):
    """Run (n, m) effective weights through the shared-cash account, one trade per leg (module docstring).

    ``pair_account_nb``'s bar loop (the same equity, bit for bit); ``acc`` comes from ``init_acc_nb``;
    ``equity_out`` (length n) is filled when it has that length. Flat bars are not visited. A leg
    resized or flipped without going flat (effective weights never flip) stays in its trade.

    >>> opens = np.array([[10.0, 10.0], [10.0, 10.0], [10.0, 10.0], [11.0, 9.0]])
    >>> closes = np.array([[10.0, 10.0], [10.0, 10.0], [11.0, 9.0], [11.0, 9.0]])  # A +10 %, B -10 % in bar 2
    >>> w = np.array([[0.5, 0.5], [0.5, 0.0], [0.5, 0.0], [0.5, 0.0]])  # both from bar 1, B out at bar 2's open
    >>> acc, eq = np.empty((1, 1, N_ACC)), np.empty(4)
    >>> init_acc_nb(acc)
    >>> basket_account_nb(opens, closes, w, 0.0, 0.0, np.array([[0, 4]]), np.empty(0, np.int64), 0, acc, eq)
    >>> eq  # B sold flat at 10; A +10 % on half the equity
    array([1.  , 1.  , 1.05, 1.05])
    >>> from research.metrics import TRADES, WINS
    >>> float(acc[0, 0, TRADES]), float(acc[0, 0, WINS])  # two trades (A open at the end, B closed flat)
    (2.0, 1.0)
    """
    n, m = w.shape
    keep_eq = equity_out.shape[0] == n
    q = np.zeros(m)
    entry = np.full(m, -1)  # fill bar of each leg's open trade, -1 when flat
    flow = np.zeros(m)  # each open trade's cash flows so far
    basis = np.zeros(m)  # what each open trade's entry committed: notional + fee
    cash = 1.0
    eq_prev = 1.0
    held = False
    if keep_eq and n > 0:
        equity_out[0] = 1.0
    for u in range(1, n):
        t = u - 1  # the decision filled at u's open
        was = held
        trade = False
        for i in range(m):
            if w[t, i] != (w[t - 1, i] if t > 0 else 0.0):
                trade = True
        if trade:
            value = cash
            for i in range(m):
                if q[i] != 0.0:
                    value += q[i] * opens[u, i]
            held = False
            for i in range(m):
                if w[t, i] != (w[t - 1, i] if t > 0 else 0.0):
                    d = w[t, i] * value / opens[u, i] - q[i]
                    c = 0.0
                    notional = 0.0
                    if d > 0.0:
                        notional = d * (opens[u, i] * (1.0 + slippage))
                        c = -(notional + notional * fees)
                    elif d < 0.0:
                        notional = -d * (opens[u, i] * (1.0 - slippage))
                        c = notional - notional * fees
                    cash += c
                    if q[i] == 0.0 and d != 0.0:  # a leg entered from flat: a new trade
                        entry[i] = u
                        flow[i] = 0.0
                        basis[i] = notional + notional * fees
                    q[i] += d
                    flow[i] += c
                    if q[i] == 0.0 and entry[i] >= 0:  # the leg is flat again: its trade's result
                        attribute_trade_nb(acc, win, regimes, n_regimes, entry[i], flow[i], flow[i] / basis[i])
                        entry[i] = -1
                if q[i] != 0.0:
                    held = True
        if not (was or held):
            if keep_eq:
                equity_out[u] = eq_prev
            continue
        eq = cash
        for i in range(m):
            if q[i] != 0.0:
                eq += q[i] * closes[u, i]
        step_cells_nb(u, eq, eq_prev, 1.0 if held else 0.0, acc, win, regimes, n_regimes)
        if keep_eq:
            equity_out[u] = eq
        eq_prev = eq
    for i in range(m):  # open at the end: valued at the last close
        if entry[i] >= 0:
            pnl = flow[i] + q[i] * closes[n - 1, i]
            attribute_trade_nb(acc, win, regimes, n_regimes, entry[i], pnl, pnl / basis[i])


@njit(cache=True)
def rotation_combo_weights_nb(desc, asc, valid, prow):
    """Effective (n, m) weights of one params row (PARAM_FIELDS order) from the lookback's RS rankings.

    >>> desc, asc, valid = rs_order_nb(np.array([[np.nan, np.nan], [0.1, -0.1], [-0.1, 0.1], [-0.1, 0.1]]))
    >>> rotation_combo_weights_nb(desc, asc, valid, np.array([1.0, 1.0, 1.0, 1.0]))  # flat first, then flipped
    array([[ 0.,  0.],
           [ 1., -1.],
           [ 0.,  0.],
           [-1.,  1.]])
    """
    w, _ = ranked_weights_nb(desc, asc, valid, np.int64(prow[1]), np.int64(prow[2]), prow[3] != 0.0)
    return effective_weights_nb(w, 0)


@njit(parallel=True, cache=True)
def sweep_rotation_nb(desc, asc, valid, opens, closes, p, rows, fees, slippage, win, regimes, n_regimes, counts,
                      ppy, out):
    """Metrics of params rows p (one lookback's RS rankings, ``rs_order_nb``) into out[rows[k]], prange over params.

    >>> rs = np.array([[np.nan, np.nan], [0.1, -0.1], [0.1, -0.1], [0.1, -0.1]])  # A the strongest from bar 1
    >>> opens = np.array([[10.0, 10.0], [10.0, 10.0], [10.0, 10.0], [11.0, 9.0]])
    >>> closes = np.array([[10.0, 10.0], [10.0, 10.0], [11.0, 9.0], [11.0, 9.0]])  # A +10 % in bar 2
    >>> p = np.array([[1.0, 1.0, 1.0, 0.0]])  # PARAM_FIELDS order: lookback, rebalance, top_k, short
    >>> out = np.empty((1, 1, 1, len(METRICS)))
    >>> sweep_rotation_nb(*rs_order_nb(rs), opens, closes, p, np.array([0]), 0.0, 0.0, np.array([[0, 4]]),
    ...                   np.empty(0, np.int64), 0, np.array([[4]]), 252.0, out)
    >>> m = dict(zip(METRICS, out[0, 0, 0].round(12).tolist()))
    >>> m["total_return"], m["trades"], m["exposure"]  # all in A from bar 2's open: held, still open
    (0.1, 1.0, 0.5)
    """
    none = np.empty(0)
    for k in prange(p.shape[0]):
        w = rotation_combo_weights_nb(desc, asc, valid, p[k])
        acc = np.empty((win.shape[0], n_regimes + 1, N_ACC))
        init_acc_nb(acc)
        basket_account_nb(opens, closes, w, fees, slippage, win, regimes, n_regimes, acc, none)
        finalize_nb(acc, counts, ppy, out[rows[k]])


# ---------------------------------------------------------------- the Python layer
def basket_arrays(assets: Sequence[Bars], bench: Bars) -> Basket:
    """The basket's price matrices after checking the legs are Bars, aligned and priced."""
    assets = list(assets)
    if not assets:
        raise ValueError("rotation needs at least one traded asset")
    every = [*assets, bench]
    if not all(isinstance(b, Bars) for b in every):
        bad = next(b for b in every if not isinstance(b, Bars))
        raise ValueError(f"assets and bench must be research.bars.Bars, got {type(bad).__name__}")
    ref = bench
    for b in assets:
        if len(b) != len(ref) or not (np.array_equal(b.session, ref.session)
                                      and np.array_equal(b.bar_in_session, ref.bar_in_session)):
            raise ValueError("rotation needs the assets and the benchmark aligned bar for bar "
                             "(research.baskets.align them first)")
    if len(ref) == 0:
        raise ValueError("no bars to sweep")
    opens = np.column_stack([b.open for b in assets]).astype(np.float64)
    closes = np.column_stack([b.close for b in assets]).astype(np.float64)
    for name, a in (("open", opens), ("close", closes)):
        if not (np.isfinite(a).all() and (a > 0).all()):
            raise ValueError(f"traded {name} prices must be finite and positive")
    return Basket(opens, closes, np.ascontiguousarray(bench.close, dtype=np.float64))


def _param_rows(params: list) -> np.ndarray:
    if not params:
        raise ValueError("nothing to sweep: no params")
    bad = [p for p in params if not isinstance(p, Rotation)]
    if bad:
        raise ValueError(f"params must be Rotation instances (see valid_params), got {bad[0]!r}")
    return np.array([[float(getattr(p, f)) for f in PARAM_FIELDS] for p in params], dtype=np.float64)


def run_rotation_grid(assets: Sequence[Bars], bench: Bars, params: list, costs: Costs, *,
                      windows: np.ndarray | None = None, regimes: np.ndarray | None = None, n_regimes: int = 0,
                      periods_per_year: float = 252.0) -> np.ndarray:
    """METRICS per (params, window, regime slot) of one basket: [n_params, n_windows, n_regimes + 1, M].

    ``assets`` are the traded legs, ``bench`` the benchmark (data only), all aligned bar for bar.
    ``windows`` and ``regimes`` as in ``run_grid``. Rotation has no exit rules (it rebalances on
    its schedule): combo c is params[c].
    """
    bk = basket_arrays(assets, bench)
    p = _param_rows(list(params))
    if not isinstance(costs, Costs):
        raise ValueError(f"costs must be Costs, got {type(costs).__name__}")
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year}")
    n = bk.closes.shape[0]
    win = check_windows(windows, n)
    reg = check_regimes(regimes, n_regimes, n)
    counts = cell_counts(win, reg, n_regimes)
    out = np.empty((p.shape[0], win.shape[0], n_regimes + 1, len(METRICS)))
    with numba.parallel_chunksize(1):  # tasks are handed out one at a time: the cores are shared
        for lookback in np.unique(p[:, 0]):
            rows = np.flatnonzero(p[:, 0] == lookback).astype(np.int64)
            desc, asc, valid = rs_order_nb(relative_strength_nb(bk.closes, bk.bench, int(lookback)))
            sweep_rotation_nb(desc, asc, valid, bk.opens, bk.closes, np.ascontiguousarray(p[rows]), rows, float(costs.fees),
                              float(costs.slippage), win, reg, int(n_regimes), counts, float(periods_per_year), out)
    return out


def rotation_path(assets: Sequence[Bars], bench: Bars, p: Rotation, costs: Costs) -> RotationPath:
    """The effective weights and the equity curve of one combination (what ``run_rotation_grid`` scores)."""
    bk = basket_arrays(assets, bench)
    row = _param_rows([p])[0]
    w = rotation_combo_weights_nb(*rs_order_nb(relative_strength_nb(bk.closes, bk.bench, p.lookback)), row)
    n = bk.closes.shape[0]
    acc, eq = np.empty((1, 1, N_ACC)), np.empty(n)
    init_acc_nb(acc)
    basket_account_nb(bk.opens, bk.closes, w, float(costs.fees), float(costs.slippage), np.array([[0, n]], np.int64),
                    np.empty(0, np.int64), 0, acc, eq)
    return RotationPath(w, eq)


def rotation_portfolio(assets: Sequence[Bars], bench: Bars, p: Rotation, costs: Costs, index=None, *,
                       freq: str = "1D"):
    """One combination as a vectorbt Portfolio: one column per asset, one cash pool, target-percent orders.

    The weights are the live bridge's (``research.baskets`` path: ``signals`` then ``effective``);
    a weight decided at bar t's close is ordered at bar t+1's open on the legs whose weight changed
    (the module docstring names the one difference). vectorbt is imported here only.
    """
    import pandas as pd
    import vectorbt as vbt

    from ..baskets import effective
    from ..signals.rotation import signals

    bk = basket_arrays(assets, bench)
    w = effective(signals(bk.closes, bk.bench, p).weights, 0)
    prev = np.vstack([np.zeros((1, w.shape[1])), w[:-1]])
    size = np.full(w.shape, np.nan)
    size[1:] = np.where(w[:-1] != prev[:-1], w[:-1], np.nan)  # decided at t, ordered at t + 1's open
    cols = [f"leg{i}" for i in range(w.shape[1])]
    close = pd.DataFrame(bk.closes, index=index, columns=cols)
    return vbt.Portfolio.from_orders(close, size=pd.DataFrame(size, index=close.index, columns=cols),
                                     size_type="targetpercent", price=pd.DataFrame(bk.opens, index=close.index,
                                                                                    columns=cols),
                                     direction="both", fees=float(costs.fees), slippage=float(costs.slippage),
                                     init_cash=1.0, group_by=True, cash_sharing=True, call_seq="auto", freq=freq)


@dataclass(frozen=True)
class RotationSweep:
    """A rotation sweep over baskets. ``n_trials`` counts every basket's combinations."""

    names: tuple[str, ...]  # "A,B,C/BENCH", the params file's symbol of a rotation entry
    metrics: tuple[np.ndarray, ...]  # run_rotation_grid's array per basket
    params: tuple[Rotation, ...]

    @property
    def n_trials(self) -> int:
        return len(self.names) * len(self.params)


def sweep_rotation(baskets: Mapping[str, tuple[Sequence[Bars], Bars]], params: list, costs: Costs,
                   **grid_kw) -> RotationSweep:
    """``run_rotation_grid`` on each basket "A,B,C/BENCH" -> (assets, bench), the same params for all.

    ``grid_kw`` (windows, regimes, n_regimes, periods_per_year) go to ``run_rotation_grid``.
    """
    params = list(params)
    _param_rows(params)
    if not baskets:
        raise ValueError("nothing to sweep: no baskets")
    for assets, bench in baskets.values():  # every basket checked before any is swept
        basket_arrays(assets, bench)
    out = tuple(run_rotation_grid(assets, bench, params, costs, **grid_kw) for assets, bench in baskets.values())
    return RotationSweep(tuple(baskets), out, tuple(params))
