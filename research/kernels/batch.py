"""Many short paths in one call: the signals and ``simulate_nb`` of every sleeve deciding at a bar.

At a bar close the live bridge decides hundreds of sleeves, each one strategy's signals and
``simulate_nb`` over the ~600 bars since its anchor, and acts on the last bar. One by one, each
pays numba's dispatch (a NamedTuple of eight arrays is typed on every call) and the numpy around it
several times over the loop itself; these kernels take them all at once as flat arrays with
offsets and return only what a decision reads.

Layout (CSR-style, every offset int64):

* bars: the eight ``Bars`` columns of every symbol, concatenated; a path reads ``[b0, b1)`` of them.
* signals: four flat bool arrays (long entry, long exit, short entry, short exit). A sleeve with
  ``kk`` entries over ``n`` bars owns ``kk * n`` values from its offset: entry-major, so they are
  ``simulate_nb``'s (codes x bars) arrays as they are.
* sleeves: entries ``[e0[i], e0[i + 1])`` of the per-entry ``RuleArrays``, codes ``code_next`` at
  ``[c0[i], c0[i] + n)``, a flatten mask at ``[f0[i], f0[i] + n)`` (``f0[i] < 0``: none).

``signals_many_nb`` is compiled for a first-class function type (each strategy's ``signals_nb``;
see ``research.sweep.engine``), so a new process loads it from numba's on-disk cache.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import njit, types

from .simulate import RuleArrays, simulate_nb


class PathBars(NamedTuple):
    """The columns ``simulate_nb`` reads (``research.bars.Bars`` has them too)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    bars_left: np.ndarray


#: per sleeve, int64 columns of ``last_bars_nb``'s first output
POSITION, TARGET, ACTIVE, CODE, N_TRADES, ENTRY_BAR, TRADE_CODE = range(7)
#: per sleeve, float64 columns of its second output
ENTRY_PRICE, HIGHEST, LOWEST = range(3)
#: where a sleeve's entry codes come from (``last_bars_nb``)
CODE_ZERO, CODE_TABLE, CODE_GIVEN = range(3)


def _signals_many(signals_nb, o, h, l, c, v, s, bis, left, b0, b1, p, at, le, lx, se, sx):  # noqa: E741
    """Row j: ``signals_nb`` on bars [b0[j], b1[j]) with params ``p[j]``, written from ``at[j]``."""
    for j in range(b0.shape[0]):
        a, b, w = b0[j], b1[j], at[j]
        x0, x1, x2, x3 = signals_nb(o[a:b], h[a:b], l[a:b], c[a:b], v[a:b], s[a:b], bis[a:b], left[a:b], p[j])
        n = b - a
        le[w:w + n] = x0
        lx[w:w + n] = x1
        se[w:w + n] = x2
        sx[w:w + n] = x3


_F1 = types.Array(types.float64, 1, "C")
_F2 = types.Array(types.float64, 2, "C")
_I1 = types.Array(types.int64, 1, "C")
_B1 = types.Array(types.boolean, 1, "C")
_SIGNALS_SIG = types.UniTuple(_B1, 4)(_F1, _F1, _F1, _F1, _F1, _I1, _I1, _I1, _F1)  # engine.SIGNALS_SIG
_SIGNALS_MANY_SIG = types.void(types.FunctionType(_SIGNALS_SIG), _F1, _F1, _F1, _F1, _F1, _I1, _I1, _I1,
                               _I1, _I1, _F2, _I1, _B1, _B1, _B1, _B1)


@functools.cache
def _signals_many_kernel():
    return njit(_SIGNALS_MANY_SIG, cache=True)(_signals_many)


def signals_many_nb(signals_nb, bars, b0, b1, p, at, le, lx, se, sx) -> None:
    """One strategy's ``signals_nb`` (an ``@njit`` hook of ``research.signals``) for every row j:
    the bars ``[b0[j], b1[j])`` of ``bars`` (eight concatenated columns), params row ``p[j]``
    (``params_to_array``), its four signals written to ``le`` ... ``sx`` from ``at[j]``.

    >>> from research.signals.sma_cross import signals_nb
    >>> c = np.array([3.0, 1.0, 1.0, 3.0, 4.0]); z = np.zeros(5, np.int64)
    >>> le, lx, se, sx = (np.zeros(5, bool) for _ in range(4))
    >>> one = np.array([0], np.int64)
    >>> signals_many_nb(signals_nb, (c, c, c, c, c, z, z, z), one, one + 5, np.array([[1.0, 2, 0, 0]]), one,
    ...                 le, lx, se, sx)
    >>> le  # close crosses above its 2-bar mean at bar 3
    array([False, False, False,  True, False])
    """
    _signals_many_kernel()(signals_nb, *bars, b0, b1, p, at, le, lx, se, sx)


@njit(cache=True)
def path_codes_nb(source, at, n, ts, trade_from, label, table, code_next):
    """One sleeve's entry code per bar (``last_bars_nb``): 0 (``source`` CODE_ZERO), ``table[label[t]]``
    (CODE_TABLE) or ``code_next[at + t]`` (CODE_GIVEN); -1 on bars whose ``ts`` is before ``trade_from``.

    >>> ts, label, table = np.array([1, 2, 3]), np.array([0, 1, 1]), np.array([-1, 2])
    >>> path_codes_nb(CODE_TABLE, 0, 3, ts, 2, label, table, ts)  # label 1's entry is code 2; none before ts 2
    array([-1,  2,  2])
    """
    codes = np.zeros(n, np.int64)
    if source == CODE_TABLE:
        for t in range(n):
            codes[t] = table[label[t]]
    elif source == CODE_GIVEN:
        codes[:] = code_next[at:at + n]
    for t in range(n):
        if ts[t] < trade_from:
            codes[t] = -1
    return codes


@njit(cache=True)
def last_bars_nb(open_, high, low, bars_left, ts, trade_from, b0, b1, e0, s0, source, c0, code_next, labels,
                 l0, tables, t0, f0, flatten, le, lx, se, sx, rules):
    """``simulate_nb`` for every sleeve i (layout: the module docstring); what its last bar needs.

    Sleeve i's entry codes (``code_next`` of ``simulate_nb``): ``source[i]`` CODE_ZERO (0 on every
    bar), CODE_TABLE (``tables[t0[i] + labels[l0[i] + t]]``: a label id per bar, looked up in the
    sleeve's table of codes per label) or CODE_GIVEN (``code_next[c0[i] + t]``); none on bars whose
    ``ts`` (int64 per concatenated bar) is before ``trade_from``.

    Returns int64 [sleeves, 7] (``POSITION``, ``TARGET``, ``ACTIVE``, ``CODE`` at the last bar,
    ``N_TRADES``, and ``ENTRY_BAR`` and ``TRADE_CODE`` of the last trade, -1 without one) and float64
    [sleeves, 3] (``ENTRY_PRICE`` of the last trade, and the ``HIGHEST`` high / ``LOWEST`` low from its
    entry bar to the last bar; NaN without one). Where ``flatten[f0[i] + t]`` is set (``f0[i] >= 0``),
    the sleeve's signals are overwritten as ``research.switching.simulate_switching`` does: exits on,
    entries off (in place).

    >>> px, z = np.array([10.0, 11.0, 12.0, 13.0]), np.zeros(4, np.int64)
    >>> le, no = np.array([1, 0, 0, 0], bool), np.zeros(4, bool)
    >>> rules = RuleArrays(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1, np.int64), np.zeros(1, bool),
    ...                    np.ones(1, bool))
    >>> zero, one = np.array([0]), np.array([0, 1])
    >>> ints, floats = last_bars_nb(px, px, px, z, z, 0, zero, zero + 4, one, zero, zero + CODE_ZERO, zero, z,
    ...                             z, zero, z, zero, zero - 1, no, le, no, no, no, rules)
    >>> ints[0], floats[0]  # entered at bar 1's open (11), held since: highest high 13
    (array([1, 1, 0, 0, 1, 1, 0]), array([11., 13., 11.]))
    """
    m = b0.shape[0]
    ints = np.full((m, 7), -1, np.int64)
    floats = np.full((m, 3), np.nan)
    r_sl, r_tp, r_tr, r_ts, r_fc, r_sh = rules
    for i in range(m):
        a, n, k0, k1 = b0[i], b1[i] - b0[i], e0[i], e0[i + 1]
        kk = k1 - k0
        w = s0[i]
        sig0 = le[w:w + kk * n].reshape((kk, n))
        sig1 = lx[w:w + kk * n].reshape((kk, n))
        sig2 = se[w:w + kk * n].reshape((kk, n))
        sig3 = sx[w:w + kk * n].reshape((kk, n))
        if f0[i] >= 0:
            for t in range(n):
                if flatten[f0[i] + t]:
                    for g in range(kk):
                        sig0[g, t] = False
                        sig2[g, t] = False
                        sig1[g, t] = True
                        sig3[g, t] = True
        codes = path_codes_nb(source[i], c0[i], n, ts[a:a + n], trade_from, labels[l0[i]:l0[i] + n],
                              tables[t0[i]:], code_next)
        bars = PathBars(open_[a:a + n], high[a:a + n], low[a:a + n], bars_left[a:a + n])
        one = RuleArrays(r_sl[k0:k1], r_tp[k0:k1], r_tr[k0:k1], r_ts[k0:k1], r_fc[k0:k1], r_sh[k0:k1])
        out = simulate_nb(bars, codes, (sig0, sig1, sig2, sig3), one)
        t = n - 1
        ints[i, POSITION] = out[0][t]
        ints[i, TARGET] = out[1][t]
        ints[i, ACTIVE] = out[2][t]
        ints[i, CODE] = codes[t]
        k = out[3].shape[0]
        ints[i, N_TRADES] = k
        if k:
            e = out[3][k - 1]
            ints[i, ENTRY_BAR] = e
            ints[i, TRADE_CODE] = out[9][k - 1]
            floats[i, ENTRY_PRICE] = out[4][k - 1]
            floats[i, HIGHEST] = bars.high[e:n].max()
            floats[i, LOWEST] = bars.low[e:n].min()
    return ints, floats
