"""Pairs in the sweep engine: a grid of ``Pairs`` params on one (y, x) pair, metrics only, and a pair screen.

What a combination computes, inside one numba kernel parallel over params (``sweep_pairs_nb``):

* the plan, with the kernels the live bridge and parity trade with: ``pair_spread_nb`` (once per
  distinct lookback, shared by its params), ``pair_signals_nb``, ``pair_weights_nb`` and
  ``effective_weights_nb`` (``research.baskets.pair_weights`` / ``effective`` call the same two
  weight kernels; ``start`` = 0: a backtest has no warm-up cut). So the weights a sweep scores are
  bit for bit the weights the live runner trades, and a test checks it;
* a two-leg account with shared cash (``pair_account_nb``), initial equity 1.0, the house fill
  convention: the weights decided at bar t's close are traded at bar t+1's open, only on the legs
  whose weight changed (a leg whose weight is unchanged is not rebalanced, as the runner does);
* the cells and formulas of ``research.metrics`` (``step_cells_nb``, ``attribute_trade_nb``,
  ``finalize_nb``): the same METRICS layout as ``run_grid``, [n_params, n_windows, n_regimes + 1, M].

The account (vectorbt's target-percent orders with cash sharing, ``update_value=False``; a test
checks it against ``vbt.Portfolio.from_orders(group_by=True, cash_sharing=True)``):

* at bar u's open, V = cash + sum of q_i * open_i (the value before any of u's orders);
* a leg whose weight changed to w trades d = w V / open_i - q_i shares: a buy pays
  d open_i (1 + slippage) (1 + fees), a sell receives |d| open_i (1 - slippage) (1 - fees);
  short-sale proceeds are credited to the cash (fees and slippage on each leg's traded notional);
* equity at each close: cash + sum of q_i * close_i (an open position valued at the last close).
* a trade is a run of bars holding any leg: from the open that enters from flat (its entry bar,
  the cell it counts in) to the open after which both legs are flat; its return is the cash
  after the exit over V at the entry (an open trade: the last equity over V), its PnL the difference.

Named difference from vectorbt: vectorbt caps a buy at the available cash; this account lets the
cash go negative (a pair with beta < 0 is long both legs). With min_corr >= 0 the hedge ratio is
positive, the legs have opposite signs and the short's proceeds fund the long: the two agree.
Unlike the single-symbol convention (all-in: shares sized so that fees fit in the equity), a leg
is sized on the value before costs and the costs are paid from the cash, as the runner's orders.

``sweep_pairs`` screens candidate pairs with the Engle-Granger test (``engle_granger``) on a
training range first; a pair that fails is not swept, but its combinations still count as trials
(``PairsSweep.n_trials``), so the deflated Sharpe of the best pair is not flattered by the screen.
``research.sweep.pairs_walkforward.walk_forward_pairs`` is the nightly's walk-forward of it (the
screen per selection window, on bars before its end only; the choice, out-of-sample record and guards).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from ..bars import Bars
from ..kernels.pairs import effective_weights_nb, pair_signals_nb, pair_spread_nb, pair_weights_nb
from ..metrics import (METRICS, N_ACC, attribute_trade_nb, cell_counts, check_regimes, check_windows, finalize_nb,
                       init_acc_nb, step_cells_nb)
from ..signals.pairs import CointResult, Pairs, engle_granger
from .engine import Costs

PARAM_FIELDS = tuple(f.name for f in fields(Pairs))  # the columns of the kernel's params array


class PairPath(NamedTuple):
    """One combination's per-bar effective weights (decided at each close) and equity (at each close)."""

    weights: np.ndarray  # (n, 2): y, x
    equity: np.ndarray  # (n,)


# ---------------------------------------------------------------- kernels
@njit(cache=True)
def pair_account_nb(opens, closes, w, fees, slippage, win, regimes, n_regimes, acc, equity_out):
    """Run (n, m) effective weights through the shared-cash account (module docstring) into the cells.

    ``opens`` / ``closes`` are (n, m) prices per leg; ``acc`` comes from ``init_acc_nb``;
    ``equity_out`` (length n) is filled when it has that length. Flat bars are not visited (their
    return is 0), as in ``research.metrics.account_nb``.

    >>> px = np.array([[10.0, 10.0], [10.0, 10.0], [11.0, 9.0], [11.0, 9.0]])  # y up 10 %, x down 10 %
    >>> w = np.array([[0.5, -0.5], [0.5, -0.5], [0.0, 0.0], [0.0, 0.0]])  # long the spread, out at bar 2's close
    >>> acc, eq = np.empty((1, 1, N_ACC)), np.empty(4)
    >>> init_acc_nb(acc)
    >>> pair_account_nb(px, px, w, 0.0, 0.0, np.array([[0, 4]]), np.empty(0, np.int64), 0, acc, eq)
    >>> eq  # half long y, half short x: +5 % and +5 %
    array([1. , 1. , 1.1, 1.1])
    """
    n, m = w.shape
    keep_eq = equity_out.shape[0] == n
    q = np.zeros(m)
    cash = 1.0
    eq_prev = 1.0
    cost = 1.0
    entry = -1  # fill bar of the open trade's entry, -1 when flat
    if keep_eq and n > 0:
        equity_out[0] = 1.0
    for u in range(1, n):
        t = u - 1  # the decision filled at u's open
        held = entry >= 0
        now = held
        trade = False
        for i in range(m):
            if w[t, i] != (w[t - 1, i] if t > 0 else 0.0):
                trade = True
        if trade:
            value = cash
            for i in range(m):
                if q[i] != 0.0:
                    value += q[i] * opens[u, i]
            now = False
            for i in range(m):
                if w[t, i] != (w[t - 1, i] if t > 0 else 0.0):
                    d = w[t, i] * value / opens[u, i] - q[i]
                    if d > 0.0:
                        notional = d * (opens[u, i] * (1.0 + slippage))
                        cash -= notional + notional * fees
                    elif d < 0.0:
                        notional = -d * (opens[u, i] * (1.0 - slippage))
                        cash += notional - notional * fees
                    q[i] += d
                if q[i] != 0.0:
                    now = True
            if now and not held:
                entry = u
                cost = value
        if not (held or now):
            if keep_eq:
                equity_out[u] = eq_prev
            continue
        eq = cash
        for i in range(m):
            if q[i] != 0.0:
                eq += q[i] * closes[u, i]
        step_cells_nb(u, eq, eq_prev, 1.0 if now else 0.0, acc, win, regimes, n_regimes)
        if keep_eq:
            equity_out[u] = eq
        eq_prev = eq
        if held and not now:  # both legs flat after u's open: the trade's result
            attribute_trade_nb(acc, win, regimes, n_regimes, entry, cash - cost, cash / cost - 1.0)
            entry = -1
    if entry >= 0:  # open at the end: valued at the last close
        attribute_trade_nb(acc, win, regimes, n_regimes, entry, eq_prev - cost, eq_prev / cost - 1.0)


@njit(cache=True)
def pair_combo_weights_nb(beta, corr, z, prow):
    """Effective (n, 2) weights of one params row (PARAM_FIELDS order) from the lookback's spread series.

    >>> z, one = np.array([-1.5, 0.0, 0.0]), np.ones(3)  # beta 1: long the spread at bar 0, out at bar 1
    >>> pair_combo_weights_nb(one, one, z, np.array([60, 1.2, 0.2, 2.8, 80, 0.7, 1.0]))
    array([[ 0.5, -0.5],
           [ 0. ,  0. ],
           [ 0. ,  0. ]])
    """
    le, lx, se, sx = pair_signals_nb(z, corr, prow[1], prow[2], prow[3], np.int64(prow[4]), prow[5], prow[6] != 0.0)
    return effective_weights_nb(pair_weights_nb(le, lx, se, sx, beta), 0)


@njit(parallel=True, cache=True)
def sweep_pairs_nb(beta, corr, z, opens, closes, p, rows, fees, slippage, win, regimes, n_regimes, counts, ppy,
                   out):
    """Metrics of params rows p (one lookback's spread series) into out[rows[k]], prange over params.

    >>> z, one = np.array([-1.5, 0.0, 0.0, 0.0]), np.ones(4)  # long at bar 1's open, out at bar 2's
    >>> px = np.array([[10.0, 10.0], [10.0, 10.0], [11.0, 9.0], [11.0, 9.0]])  # y +10 %, x -10 %
    >>> p = np.array([[60, 1.2, 0.2, 2.8, 80, 0.7, 1.0]])  # PARAM_FIELDS order
    >>> out = np.empty((1, 1, 1, len(METRICS)))
    >>> sweep_pairs_nb(one, one, z, px, px, p, np.array([0]), 0.0, 0.0, np.array([[0, 4]]),
    ...                np.empty(0, np.int64), 0, np.array([[4]]), 252.0, out)
    >>> m = dict(zip(METRICS, out[0, 0, 0].round(12).tolist()))
    >>> m["total_return"], m["trades"], m["exposure"]
    (0.1, 1.0, 0.25)
    """
    none = np.empty(0)
    for k in prange(p.shape[0]):
        w = pair_combo_weights_nb(beta, corr, z, p[k])
        acc = np.empty((win.shape[0], n_regimes + 1, N_ACC))
        init_acc_nb(acc)
        pair_account_nb(opens, closes, w, fees, slippage, win, regimes, n_regimes, acc, none)
        finalize_nb(acc, counts, ppy, out[rows[k]])


# ---------------------------------------------------------------- the Python layer
def _legs(y: Bars, x: Bars) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log y close, log x close, opens (n, 2), closes (n, 2)) after checking the pair is aligned and priced."""
    if not (isinstance(y, Bars) and isinstance(x, Bars)):
        raise ValueError(f"y and x must be research.bars.Bars, got {type(y).__name__}, {type(x).__name__}")
    if len(y) != len(x) or not (np.array_equal(y.session, x.session)
                                and np.array_equal(y.bar_in_session, x.bar_in_session)):
        raise ValueError("pairs needs y and x aligned bar for bar (research.baskets.align them first)")
    if len(y) == 0:
        raise ValueError("no bars to sweep")
    opens = np.column_stack([y.open, x.open]).astype(np.float64)
    closes = np.column_stack([y.close, x.close]).astype(np.float64)
    for name, a in (("open", opens), ("close", closes)):
        if not (np.isfinite(a).all() and (a > 0).all()):
            raise ValueError(f"pair {name} prices must be finite and positive")
    return np.log(closes[:, 0]), np.log(closes[:, 1]), opens, closes


def _param_rows(params: list) -> np.ndarray:
    if not params:
        raise ValueError("nothing to sweep: no params")
    bad = [p for p in params if not isinstance(p, Pairs)]
    if bad:
        raise ValueError(f"params must be Pairs instances (see valid_params), got {bad[0]!r}")
    return np.array([[float(getattr(p, f)) for f in PARAM_FIELDS] for p in params], dtype=np.float64)


def run_pairs_grid(y: Bars, x: Bars, params: list, costs: Costs, *, windows: np.ndarray | None = None,
                   regimes: np.ndarray | None = None, n_regimes: int = 0,
                   periods_per_year: float = 252.0) -> np.ndarray:
    """METRICS per (params, window, regime slot) of the pair (y, x): [n_params, n_windows, n_regimes + 1, M].

    ``windows`` and ``regimes`` as in ``run_grid``; y and x aligned bar for bar. Pairs carry their
    own exits (z exit, z stop, time stop), so there are no exit rules: combo c is params[c].
    """
    ly, lx, opens, closes = _legs(y, x)
    p = _param_rows(list(params))
    if not isinstance(costs, Costs):
        raise ValueError(f"costs must be Costs, got {type(costs).__name__}")
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year}")
    n = len(y)
    win = check_windows(windows, n)
    reg = check_regimes(regimes, n_regimes, n)
    counts = cell_counts(win, reg, n_regimes)
    out = np.empty((p.shape[0], win.shape[0], n_regimes + 1, len(METRICS)))
    with numba.parallel_chunksize(1):  # tasks are handed out one at a time: the cores are shared
        for lookback in np.unique(p[:, 0]):
            rows = np.flatnonzero(p[:, 0] == lookback).astype(np.int64)
            beta, corr, _, z = pair_spread_nb(ly, lx, int(lookback))
            sweep_pairs_nb(beta, corr, z, opens, closes, np.ascontiguousarray(p[rows]), rows, float(costs.fees),
                           float(costs.slippage), win, reg, int(n_regimes), counts, float(periods_per_year), out)
    return out


def pair_path(y: Bars, x: Bars, p: Pairs, costs: Costs) -> PairPath:
    """The effective weights and the equity curve of one combination (what ``run_pairs_grid`` scores)."""
    ly, lx, opens, closes = _legs(y, x)
    row = _param_rows([p])[0]
    beta, corr, _, z = pair_spread_nb(ly, lx, p.lookback)
    w = pair_combo_weights_nb(beta, corr, z, row)
    n = len(y)
    acc, eq = np.empty((1, 1, N_ACC)), np.empty(n)
    init_acc_nb(acc)
    pair_account_nb(opens, closes, w, float(costs.fees), float(costs.slippage), np.array([[0, n]], np.int64),
                    np.empty(0, np.int64), 0, acc, eq)
    return PairPath(w, eq)


@dataclass(frozen=True)
class PairResult:
    """One candidate pair: its Engle-Granger result on the training range and, if it passed, its metrics."""

    name: str  # "Y/X"
    coint: CointResult
    passed: bool
    metrics: np.ndarray | None  # run_pairs_grid's array, None when screened out


@dataclass(frozen=True)
class PairsSweep:
    """A screened pairs sweep. ``n_trials`` counts every candidate's combinations, screened out or not."""

    results: tuple[PairResult, ...]
    params: tuple[Pairs, ...]
    max_pvalue: float

    @property
    def n_trials(self) -> int:
        return len(self.results) * len(self.params)

    @property
    def swept(self) -> tuple[PairResult, ...]:
        return tuple(r for r in self.results if r.passed)


def sweep_pairs(candidates: Mapping[str, tuple[Bars, Bars]], params: list, costs: Costs, *,
                train: slice | None = None, max_pvalue: float = 0.05, **grid_kw) -> PairsSweep:
    """Screen each candidate "Y/X" -> (y, x) by Engle-Granger on ``train`` (a bar slice, default all
    bars), then ``run_pairs_grid`` on the pairs whose p-value is <= ``max_pvalue``.

    ``grid_kw`` (windows, regimes, n_regimes, periods_per_year) go to ``run_pairs_grid``.
    """
    if not 0.0 < max_pvalue <= 1.0:
        raise ValueError(f"max_pvalue must be in (0, 1], got {max_pvalue}")
    params = list(params)
    _param_rows(params)
    out = []
    for name, (y, x) in candidates.items():
        coint, passed = screen_pair(name, y, x, max_pvalue, train)
        out.append(PairResult(name, coint, passed, run_pairs_grid(y, x, params, costs, **grid_kw) if passed else None))
    return PairsSweep(tuple(out), tuple(params), float(max_pvalue))


def screen_pair(name: str, y: Bars, x: Bars, max_pvalue: float,
                train: slice | None = None) -> tuple[CointResult, bool]:
    """The Engle-Granger test of the pair on ``train`` (a bar slice, default all bars) and whether it passes."""
    if not 0.0 < max_pvalue <= 1.0:
        raise ValueError(f"max_pvalue must be in (0, 1], got {max_pvalue}")
    _legs(y, x)
    cut = train if train is not None else slice(None)
    if len(y.close[cut]) < 20:
        raise ValueError(f"{name}: the training range holds {len(y.close[cut])} bars; Engle-Granger needs >= 20")
    coint = engle_granger(y.close[cut], x.close[cut])
    return coint, bool(coint.pvalue <= max_pvalue)
