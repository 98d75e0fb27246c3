"""The sweep engine: one strategy over a grid of params x exit rules, metrics only.

Per combination the engine runs the strategy's signals, ``research.kernels.simulate`` (the one
simulation kernel, ``simulate_rule_nb``: the fill convention and exit rules) and ``research.metrics`` accounting, and keeps only the metrics: memory is the
result array plus a few bar-length arrays per thread, never bars x combinations.

Three paths, the same numbers (``path=`` picks one; "auto" takes the first the strategy supports).
A path's hooks are fields of the strategy's ``Strategy`` record (``research.signals.base``, where
each hook's type and contract are documented); the engine reads those fields, nothing else:

* "shared": ``params_to_array``, ``indicator_keys``, ``indicator_nb`` and ``signals_from_nb``.
  Each distinct indicator series of a chunk of params is computed once (in parallel) into a table,
  and the fused kernel derives each params' signals from its rows (sma_cross: a crossing test of
  two precomputed averages instead of two running sums per combination).
* "fused": ``params_to_array`` and ``signals_nb``. One ``@njit(parallel=True)`` kernel, prange over
  tasks = (params, block of rules), calls ``signals_nb`` as a first-class function, then
  ``simulate_rule_nb`` and the metrics kernels.
* "signals": any single-symbol strategy: ``signals(bars, params)`` in Python per params, in
  chunks, then a parallel kernel over (signals x rules).

Hooks take float64 / int64 C arrays and must return C-contiguous arrays (bool for signals) equal
to what ``signals(bars, params)`` gives. The kernels that call them are compiled for explicit
first-class function types (``SIGNALS_SIG``, ``INDICATOR_SIG``, ``SIGNALS_FROM_SIG``), so a second
process loads them from numba's on-disk cache (a function passed as a dispatcher would be
recompiled in every process).

Kernels take the bars as ``Bars``, the exit rules as ``RuleArrays`` and costs and cells as
``Accounting`` (NamedTuples of arrays and scalars, as vectorbt's ``nb`` modules pass records).

Combinations are ``itertools.product(params, rules)`` (params-major): combo c is
``(params[c // len(rules)], rules[c % len(rules)])``.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import logging
from dataclasses import dataclass, fields
from typing import Any, Iterable, NamedTuple

import numba
import numpy as np
from numba import njit, prange, types

from ..bars import Bars
from ..exits import ExitRules
from ..kernels.simulate import RuleArrays, rule_arrays, simulate_rule_nb
from ..metrics import METRICS, N_ACC, account_nb, cell_counts, check_regimes, check_windows, finalize_nb, init_acc_nb
from ..signals import Strategy, StrategyKind, get

log = logging.getLogger(__name__)

_F1 = types.Array(types.float64, 1, "C")
_I1 = types.Array(types.int64, 1, "C")
_B1 = types.Array(types.boolean, 1, "C")
#: The type every ``signals_nb`` is called with (first-class function type of the fused kernel).
SIGNALS_SIG = types.UniTuple(_B1, 4)(_F1, _F1, _F1, _F1, _F1, _I1, _I1, _I1, _F1)
SIGNALS_BYTES = 64 * 2**20  # signals held at once by the signals path
TABLE_BYTES = 128 * 2**20  # indicator table of one chunk of the shared path


@dataclass(frozen=True)
class Costs:
    """Trading costs as fractions: fees of the traded notional, slippage of the fill price."""

    fees: float = 0.001
    slippage: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fees", "slippage"):
            v = getattr(self, name)
            if not (0.0 <= v < 1.0):
                raise ValueError(f"Costs.{name} must be a fraction in [0, 1), got {v}")


class ParamList(list):
    """The valid params of a grid, in grid order; ``dropped`` counts the combinations rejected."""

    dropped: int = 0


def valid_params(strategy: str, grid: dict[str, Iterable[Any]]) -> ParamList:
    """Params for the cartesian product of ``grid`` (dict order), minus the ones the params type rejects.

    Unknown names raise ValueError (with a 'did you mean' hint); combinations the params class
    refuses (e.g. sma_cross fast >= slow) are skipped and counted in ``.dropped`` (and logged).
    """
    strat = get(strategy)
    names = list(grid)
    known = [f.name for f in fields(strat.params)]
    for k in names:
        if k not in known:
            hint = difflib.get_close_matches(k, known, n=1)
            raise ValueError(f"{strategy} has no parameter {k!r} (has: {', '.join(known)})"
                             f"{f'; did you mean {hint[0]!r}?' if hint else ''}")
    out = ParamList()
    for values in itertools.product(*(tuple(grid[k]) for k in names)):
        try:
            out.append(strat.params(**dict(zip(names, values))))
        except (ValueError, TypeError):
            out.dropped += 1
    if out.dropped:
        log.info("%s grid: %d of %d combinations dropped as invalid params", strategy, out.dropped,
                 out.dropped + len(out))
    return out


def run_grid(strategy: str, bars: Bars, params: list, rules: list[ExitRules], costs: Costs, *,
             windows: np.ndarray | None = None, regimes: np.ndarray | None = None, n_regimes: int = 0,
             periods_per_year: float = 252.0, path: str = "auto") -> np.ndarray:
    """METRICS per (combo, window, regime slot): float64 [n_combos, n_windows, n_regimes + 1, len(METRICS)].

    ``windows``: int64 [n_windows, 2] bar ranges [a, b) (default: all bars). ``regimes``: int64
    code per bar (-1 unknown) with ``n_regimes`` codes; the last regime slot is "all bars".
    ``path``: "auto", "shared", "fused" or "signals" (see the module docstring).
    """
    strat = get(strategy)
    if strat.kind != StrategyKind.SINGLE:
        raise ValueError(f"{strategy} is a {strat.kind} strategy; run_grid sweeps single-symbol strategies")
    if not isinstance(bars, Bars):
        raise ValueError(f"bars must be research.bars.Bars, got {type(bars).__name__}")
    n = len(bars)
    if n == 0:
        raise ValueError("no bars to sweep")
    lengths = {k: len(a) for k, a in zip(Bars._fields, bars)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"bars columns differ in length: {lengths}")
    params, rules = list(params), list(rules)
    if not params or not rules:
        raise ValueError(f"nothing to sweep: {len(params)} params x {len(rules)} rules")
    bad = [p for p in params if not isinstance(p, strat.params)]
    if bad:
        raise ValueError(f"params must be {strat.params.__name__} instances (see valid_params), got {bad[0]!r}")
    if not all(isinstance(r, ExitRules) for r in rules):
        raise ValueError("rules must be research.exits.ExitRules instances")
    if not isinstance(costs, Costs):
        raise ValueError(f"costs must be Costs, got {type(costs).__name__}")
    if any(r.flat_at_close for r in rules) and n > 1 and not bars.bars_left.any():
        raise ValueError("flat_at_close applies to intraday bars; these look like 1Day bars (one bar per session)")
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year}")
    win = check_windows(windows, n)
    reg = check_regimes(regimes, n_regimes, n)
    mode = _pick_path(strat, path)
    b = Bars(*(np.require(a, np.float64, ("C", "W")) for a in bars[:5]),
             *(np.require(a, np.int64, ("C", "W")) for a in bars[5:]))
    ra = rule_arrays(rules)
    out = np.empty((len(params) * len(rules), len(win), n_regimes + 1, len(METRICS)))
    acct = Accounting(float(costs.fees), float(costs.slippage), win, reg, int(n_regimes),
                      cell_counts(win, reg, n_regimes), float(periods_per_year))
    try:
        with numba.parallel_chunksize(1):  # tasks are handed out one at a time: the cores are shared
            if mode == "shared":
                _run_shared(strat, b, params, ra, acct, out)
            elif mode == "fused":
                p = np.ascontiguousarray([strat.params_to_array(x) for x in params], dtype=np.float64)
                _kernel("fused")(strat.signals_nb, b, p, ra, *_tasks(len(params), len(rules)), acct, out)
            else:
                _run_signals(strat, b, params, ra, acct, out)
    except SystemError as e:  # an exception inside a first-class hook comes back wrapped in this
        if e.__cause__ is None:
            raise
        raise ValueError(f"{strategy}: a {mode}-path hook raised {e.__cause__!r}") from e.__cause__
    return out


PATHS = ("shared", "fused", "signals")  # the order "auto" tries them in


def _path_hooks(strat: Strategy, mode: str) -> dict[str, object]:
    """The Strategy hooks a path calls (None where the strategy does not provide one)."""
    if mode == "shared":
        return {"params_to_array": strat.params_to_array, "indicator_keys": strat.indicator_keys,
                "indicator_nb": strat.indicator_nb, "signals_from_nb": strat.signals_from_nb}
    if mode == "fused":
        return {"params_to_array": strat.params_to_array, "signals_nb": strat.signals_nb}
    return {}


def _pick_path(strat: Strategy, path: str) -> str:
    """The engine path: ``path`` if the strategy has its hooks, or for "auto" the first it has."""
    if path not in ("auto", *PATHS):
        raise ValueError(f"path must be 'auto', 'shared', 'fused' or 'signals', got {path!r}")
    for mode in PATHS:
        missing = [k for k, v in _path_hooks(strat, mode).items() if v is None]
        if path in ("auto", mode) and not missing:
            return mode
        if path == mode:
            raise ValueError(f"{strat.name} has no {', '.join(missing)}: path {path!r} is not available")
    raise AssertionError("unreachable: the signals path needs no hooks")


class Accounting(NamedTuple):
    """Costs and the cells metrics are kept for (``research.metrics``), as the kernels read them."""

    fees: float
    slippage: float
    windows: np.ndarray  # int64 [n_windows, 2]: bar ranges [a, b)
    regimes: np.ndarray  # int64 code per bar (-1 unknown), or empty
    n_regimes: int
    counts: np.ndarray  # int64 [n_windows, n_regimes + 1]: bars per cell
    periods_per_year: float


def _tasks(n_params: int, n_rules: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(params row, first rule, end rule) per task: the rules split into blocks when params are few."""
    blocks = min(n_rules, max(1, -(-4 * numba.get_num_threads() // n_params)))
    edges = np.linspace(0, n_rules, blocks + 1).round().astype(np.int64)
    pi = np.repeat(np.arange(n_params, dtype=np.int64), blocks)
    return pi, np.tile(edges[:-1], n_params), np.tile(edges[1:], n_params)


def _run_shared(strat: Strategy, bars: Bars, params: list, rules: RuleArrays, acct: Accounting,
                out: np.ndarray) -> None:
    """Chunks of params whose distinct indicator series fit TABLE_BYTES: table, then the kernel."""
    n, n_rules = len(bars), rules.stop_loss.shape[0]
    keys = [tuple(tuple(map(float, k)) for k in strat.indicator_keys(p)) for p in params]
    max_rows = TABLE_BYTES // (8 * n)  # (a chunk holds at least one params, whatever its keys)
    a = 0
    while a < len(params):
        rows: dict[tuple, int] = {}
        b = a
        while b < len(params) and (b == a or len(rows) + len(set(keys[b]) - rows.keys()) <= max_rows):
            for k in keys[b]:
                rows.setdefault(k, len(rows))
            b += 1
        table = np.empty((len(rows), n))
        _kernel("indicators")(strat.indicator_nb, bars, np.array(list(rows), np.float64), table)
        idx = np.array([[rows[k] for k in keys[m]] for m in range(a, b)], np.int64)
        p = np.ascontiguousarray([strat.params_to_array(x) for x in params[a:b]], dtype=np.float64)
        _kernel("shared")(strat.signals_from_nb, table, idx, p, bars, rules, *_tasks(b - a, n_rules), acct, out,
                          a * n_rules)
        a = b


def _run_signals(strat: Strategy, bars: Bars, params: list, rules: RuleArrays, acct: Accounting,
                 out: np.ndarray) -> None:
    """signals() per params in Python, a chunk at a time, then the parallel (signals x rules) kernel."""
    n, n_rules = len(bars), rules.stop_loss.shape[0]
    chunk = max(1, SIGNALS_BYTES // (4 * n))
    for a in range(0, len(params), chunk):
        part = params[a:a + chunk]
        sig = np.empty((4, len(part), n), np.bool_)
        for k, p in enumerate(part):
            s = strat.signals(bars, p)
            for m in range(4):
                if s[m].shape != (n,):
                    raise ValueError(f"{strat.name}.signals returned {s[m].shape} for {n} bars")
                sig[m, k] = s[m]
        sweep_signals_nb(bars, sig[0], sig[1], sig[2], sig[3], rules, *_tasks(len(part), n_rules), acct, out,
                         a * n_rules)


# ---------------------------------------------------------------- kernels
@njit(cache=True)
def rules_block_nb(bars, le, lx, se, sx, rules, r0, r1, acct, out, row0):
    """Simulate one set of signals under rules r0..r1-1 and write their metrics to out[row0 + r].

    >>> o, c = np.array([8.0, 8.0, 9.0, 10.0]), np.array([8.0, 8.0, 10.0, 10.0])
    >>> z = np.zeros(4, np.int64)
    >>> bars = Bars(o, np.maximum(o, c), np.array([8.0, 8.0, 5.0, 10.0]), c, c, z, z, z)  # bar 2 dips to 5
    >>> rules = rule_arrays([ExitRules(), ExitRules(stop_loss=0.25)])  # none; a stop at 8 * 0.75 = 6
    >>> acct = Accounting(0.0, 0.0, np.array([[0, 4]]), np.empty(0, np.int64), 0, np.array([[4]]), 252.0)
    >>> le, lx, no = np.array([1, 0, 0, 0], bool), np.array([0, 0, 1, 0], bool), np.zeros(4, bool)
    >>> out = np.empty((2, 1, 1, len(METRICS)))
    >>> rules_block_nb(bars, le, lx, no, no, rules, 0, 2, acct, out, 0)
    >>> out[:, 0, 0, METRICS.index("total_return")]  # in at 8: out at 10, or stopped at 6
    array([ 0.25, -0.25])
    """
    acc = np.empty((acct.windows.shape[0], acct.n_regimes + 1, N_ACC))
    none = np.empty(0)
    for r in range(r0, r1):
        path = simulate_rule_nb(bars, le, lx, se, sx, rules, r)
        init_acc_nb(acc)
        account_nb(bars.close, path[3], path[4], path[5], path[6], path[7], acct.fees, acct.slippage,
                   acct.windows, acct.regimes, acct.n_regimes, acc, none, none, none)
        finalize_nb(acc, acct.counts, acct.periods_per_year, out[row0 + r])


# The parallel kernels unpack their NamedTuples before the prange and rebuild them inside: a
# NamedTuple captured by the parallel loop's body measured ~10% slower on the sweep bench.
def _fused_sweep(signals_nb, bars, p, rules, task_p, task_r0, task_r1, acct, out):
    """The fused kernel: prange over tasks = (params row, block of rules)."""
    n_rules = rules.stop_loss.shape[0]
    o, h, l, c, v, s, bis, left = bars  # noqa: E741
    sl, tp, tr, ts, fc, sh = rules
    fees, slip, win, reg, n_reg, counts, ppy = acct
    for t in prange(task_p.shape[0]):
        k = task_p[t]
        le, lx, se, sx = signals_nb(o, h, l, c, v, s, bis, left, p[k])
        rules_block_nb(Bars(o, h, l, c, v, s, bis, left), le, lx, se, sx, RuleArrays(sl, tp, tr, ts, fc, sh),
                       task_r0[t], task_r1[t], Accounting(fees, slip, win, reg, n_reg, counts, ppy), out,
                       k * n_rules)


def _indicator_table(indicator_nb, bars, keys, table):
    """The shared path's table: one indicator series per key row, in parallel."""
    b = bars
    for r in prange(keys.shape[0]):
        table[r] = indicator_nb(b.open, b.high, b.low, b.close, b.volume, b.session, b.bar_in_session,
                                b.bars_left, keys[r])


def _shared_sweep(signals_from_nb, table, rows, p, bars, rules, task_p, task_r0, task_r1, acct, out, row0):
    """The shared path's kernel: like the fused one, with signals from rows of the indicator table."""
    n_rules = rules.stop_loss.shape[0]
    o, h, l, c, v, s, bis, left = bars  # noqa: E741
    sl, tp, tr, ts, fc, sh = rules
    fees, slip, win, reg, n_reg, counts, ppy = acct
    for t in prange(task_p.shape[0]):
        k = task_p[t]
        le, lx, se, sx = signals_from_nb(table, rows[k], p[k])
        rules_block_nb(Bars(o, h, l, c, v, s, bis, left), le, lx, se, sx, RuleArrays(sl, tp, tr, ts, fc, sh),
                       task_r0[t], task_r1[t], Accounting(fees, slip, win, reg, n_reg, counts, ppy), out,
                       row0 + k * n_rules)


_F2 = types.Array(types.float64, 2, "C")
_I2 = types.Array(types.int64, 2, "C")
_F4 = types.Array(types.float64, 4, "C")
_BARS = types.NamedTuple((_F1, _F1, _F1, _F1, _F1, _I1, _I1, _I1), Bars)
_RULES = types.NamedTuple((_F1, _F1, _F1, _I1, _B1, _B1), RuleArrays)
_ACCT = types.NamedTuple((types.float64, types.float64, _I2, _I1, types.int64, _I2, types.float64), Accounting)
_TASKS = (_I1, _I1, _I1)
INDICATOR_SIG = _F1(_F1, _F1, _F1, _F1, _F1, _I1, _I1, _I1, _F1)
SIGNALS_FROM_SIG = types.UniTuple(_B1, 4)(_F2, _I1, _F1)
_KERNELS = {
    "fused": (_fused_sweep, types.void(types.FunctionType(SIGNALS_SIG), _BARS, _F2, _RULES, *_TASKS, _ACCT, _F4)),
    "indicators": (_indicator_table, types.void(types.FunctionType(INDICATOR_SIG), _BARS, _F2, _F2)),
    "shared": (_shared_sweep, types.void(types.FunctionType(SIGNALS_FROM_SIG), _F2, _I2, _F2, _BARS, _RULES,
                                         *_TASKS, _ACCT, _F4, types.int64)),
}


@functools.cache
def _kernel(name: str):
    """A hook-calling kernel, compiled (or loaded from the on-disk cache) on first use, not at import."""
    fn, sig = _KERNELS[name]
    return njit(sig, parallel=True, cache=True)(fn)


@njit(parallel=True, cache=True)
def sweep_signals_nb(bars, le, lx, se, sx, rules, task_p, task_r0, task_r1, acct, out, row0):
    """The signals path's kernel: prange over (row of precomputed signals, block of rules) tasks.

    >>> o, c = np.array([8.0, 8.0, 9.0, 10.0]), np.array([8.0, 8.0, 10.0, 10.0])
    >>> z = np.zeros(4, np.int64)
    >>> bars = Bars(o, np.maximum(o, c), np.array([8.0, 8.0, 5.0, 10.0]), c, c, z, z, z)  # bar 2 dips to 5
    >>> rules = rule_arrays([ExitRules(), ExitRules(stop_loss=0.25)])  # none; a stop at 8 * 0.75 = 6
    >>> acct = Accounting(0.0, 0.0, np.array([[0, 4]]), np.empty(0, np.int64), 0, np.array([[4]]), 252.0)
    >>> le = np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool)  # two params rows: one enters, one never does
    >>> lx, no = np.array([[0, 0, 1, 0]] * 2, bool), np.zeros((2, 4), bool)
    >>> out = np.empty((4, 1, 1, len(METRICS)))
    >>> sweep_signals_nb(bars, le, lx, no, no, rules, *_tasks(2, 2), acct, out, 0)
    >>> out[:, 0, 0, METRICS.index("total_return")]  # combos (row, rule), params-major
    array([ 0.25, -0.25,  0.  ,  0.  ])
    """
    n_rules = rules.stop_loss.shape[0]
    o, h, l, c, v, s, bis, left = bars  # noqa: E741
    sl, tp, tr, ts, fc, sh = rules
    fees, slip, win, reg, n_reg, counts, ppy = acct
    for t in prange(task_p.shape[0]):
        k = task_p[t]
        rules_block_nb(Bars(o, h, l, c, v, s, bis, left), le[k], lx[k], se[k], sx[k],
                       RuleArrays(sl, tp, tr, ts, fc, sh), task_r0[t], task_r1[t],
                       Accounting(fees, slip, win, reg, n_reg, counts, ppy), out, row0 + k * n_rules)
