"""What a params file trades: per-regime params, switched by the regime label, on one symbol.

A params file holds one entry per (strategy, symbol, regime). Traded as a whole, the position
path follows this rule (the regime attribution of ``research.sweep.results``, applied to trading):

* **Entries** decided at bar t's close use the entry of the regime of the session bar t+1 is in
  (``code_next[t]``; known before that session opens). No active entry there (flat, missing,
  warm-up) -> no new position.
* **An open position keeps the entry it was opened under** (its params' exit signals, its exit
  rules: stop, target, trailing, time stop, flat at close) until it closes, whatever the label of
  later sessions. A trade belongs to the regime it was entered in.
* Otherwise exactly ``research.exits``: the fill convention (decision at t's close, fill at t+1's
  open), stops/targets on the tick at their level or at a gap open, stop before target, trailing
  from previous bars' extremes, reversals when shorts are allowed.

``simulate_switching_nb`` is the kernel; with one entry whose code is every bar it equals
``simulate_exits_nb`` (a test asserts it on random signals). The live bridge runs it over the
bars since its anchor at every bar close and trades ``target[t]``; the parity check runs it over
the replay: one function, two callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from numba import njit

from .bars import Bars
from .exits import ExitRules, Path, Trades, level_hit_nb
from .signals import get


@njit(cache=True)
def simulate_switching_nb(o, h, l, c, bars_left, code_next, le, lx, se, sx,  # noqa: E741
                          stop_loss, take_profit, trailing, time_stop, flat_at_close, allow_short):
    """Per-regime entries switched by ``code_next`` (int64 per bar, -1 = no entry); K x n signals.

    Returns (position, target, active, entry_bar, entry_price, exit_bar, exit_price, direction,
    reason, trade_code): ``active[t]`` is the entry code governing the position held at t's close
    (-1 flat); ``trade_code`` the entry code of each trade.

    >>> px, off = np.array([10.0, 11.0, 12.0, 13.0]), np.zeros(1)
    >>> le, lx, no = np.array([[1, 0, 0, 0]], bool), np.array([[0, 0, 1, 0]], bool), np.zeros((1, 4), bool)
    >>> out = simulate_switching_nb(px, px, px, px, np.zeros(4, np.int64), np.array([0, 0, -1, -1]),
    ...                             le, lx, no, no, off, off, off, np.zeros(1, np.int64),
    ...                             np.zeros(1, bool), np.ones(1, bool))
    >>> out[0], out[2], out[9]  # code 0's trade keeps code 0's exit after code_next turned -1
    (array([0, 1, 1, 0], dtype=int8), array([-1,  0,  0, -1]), array([0]))
    """
    n = c.shape[0]
    position = np.zeros(n, np.int8)
    target = np.zeros(n, np.int8)
    active = np.full(n, -1, np.int64)
    e_bar = np.empty(n, np.int64)
    e_px = np.empty(n)
    x_bar = np.empty(n, np.int64)
    x_px = np.empty(n)
    dirs = np.empty(n, np.int8)
    why = np.empty(n, np.int8)
    codes = np.empty(n, np.int64)
    k = 0
    pos = 0
    pending = 0
    pending_code = -1
    pending_why = 0
    cur = -1
    entry = np.nan
    extreme = np.nan
    held = 0
    for t in range(n):
        if pending != pos:  # 1) the open
            if pos != 0:
                x_bar[k - 1] = t
                x_px[k - 1] = o[t]
                why[k - 1] = pending_why
            if pending != 0:
                e_bar[k] = t
                e_px[k] = o[t]
                dirs[k] = pending
                codes[k] = pending_code
                x_bar[k] = -1
                x_px[k] = np.nan
                why[k] = -1
                k += 1
                entry = o[t]
                extreme = o[t]
                held = 0
                cur = pending_code
            else:
                cur = -1
            pos = pending
        if pos != 0:  # 2) inside the bar
            hit, px = level_hit_nb(pos, o[t], h[t], l[t], entry, extreme, stop_loss[cur], take_profit[cur],
                                    trailing[cur])
            if hit != 0:
                x_bar[k - 1] = t
                x_px[k - 1] = px
                why[k - 1] = hit
                pos = 0
                cur = -1
            else:
                held += 1
                if pos == 1 and h[t] > extreme:
                    extreme = h[t]
                if pos == -1 and l[t] < extreme:
                    extreme = l[t]
        position[t] = pos
        active[t] = cur
        # 3) the close: the open position's own entry decides its exit; a flat one looks at the next regime
        g = cur if pos != 0 else code_next[t]
        new = pos
        reason = 0
        new_code = cur
        if g >= 0:
            go_long = le[g, t] and not se[g, t]
            go_short = se[g, t] and not le[g, t] and allow_short[g]
            if pos == 1:
                if go_short:
                    new = -1
                elif lx[g, t]:
                    new = 0
            elif pos == -1:
                if go_long:
                    new = 1
                elif sx[g, t]:
                    new = 0
            else:
                new_code = g
                if go_long:
                    new = 1
                elif go_short:
                    new = -1
            if time_stop[g] > 0 and pos != 0 and held >= time_stop[g] and new == pos:
                new = 0
                reason = 4
            if flat_at_close[g] and bars_left[t] <= 1:
                if new != 0 and pos != 0:
                    reason = 5
                new = 0
        pending = new
        pending_code = new_code
        pending_why = reason
        target[t] = new
    return (position, target, active, e_bar[:k], e_px[:k], x_bar[:k], x_px[:k], dirs[:k], why[:k], codes[:k])


def simulate_switching(bars: Bars, strategy: str, entries: Sequence[tuple[object, ExitRules] | None],
                       code_next: np.ndarray, flatten: np.ndarray | None = None) -> tuple[Path, np.ndarray, np.ndarray]:
    """Path of per-regime (params, rules) entries switched by ``code_next``; also (active, trade codes).

    ``entries[k]`` is entry code k's (params, ExitRules), or None (flat: code k never enters).
    ``code_next[t]``: the code whose entry rules apply to a decision at bar t's close (-1: none).
    ``flatten[t]`` (optional, bool per bar): every position is closed by a decision at bar t's
    close, filled at t+1's open (the live runner's day-loss halt, which flattens from the bar it
    tripped in; pass code_next = -1 for the bars that must not enter).
    """
    strat = get(strategy)
    n, kk = len(bars), len(entries)
    code_next = np.ascontiguousarray(code_next, dtype=np.int64)
    if code_next.shape != (n,):
        raise ValueError(f"code_next must have one code per bar ({n}), got shape {code_next.shape}")
    if code_next.max(initial=-1) >= kk or code_next.min(initial=-1) < -1:
        raise ValueError(f"code_next holds codes outside [-1, {kk - 1}]")
    sig = np.zeros((4, max(kk, 1), n), dtype=bool)
    rules = [_NO_RULES] * max(kk, 1)
    live = np.zeros(max(kk, 1), dtype=bool)
    for i, e in enumerate(entries):
        if e is None:
            continue
        params, rules[i] = e
        s = strat.signals(bars, params)
        for j in range(4):
            sig[j, i] = s[j]
        live[i] = True
    if flatten is not None and flatten.any():
        f = np.asarray(flatten, dtype=bool)
        sig[0][:, f] = False  # no reversal into a new position either
        sig[2][:, f] = False
        sig[1][:, f] = True
        sig[3][:, f] = True
    if not live.all():
        code_next = np.where((code_next >= 0) & live[np.clip(code_next, 0, None)], code_next, -1)
    out = simulate_switching_nb(bars.open, bars.high, bars.low, bars.close, bars.bars_left, code_next,
                                sig[0], sig[1], sig[2], sig[3], *_rule_arrays(tuple(rules)))
    return Path(out[0], out[1], Trades(*out[3:9])), out[2], out[9]


_NO_RULES = ExitRules()


@lru_cache(maxsize=1024)
def _rule_arrays(rules: tuple[ExitRules, ...]) -> tuple[np.ndarray, ...]:
    """The exit rules as the kernel's per-code arrays (cached: the live runner passes the same rules
    every bar; the kernel only reads them)."""
    out = []
    for name, dt in (("stop_loss", np.float64), ("take_profit", np.float64), ("trailing_stop", np.float64),
                     ("time_stop", np.int64), ("flat_at_close", np.bool_), ("allow_short", np.bool_)):
        out.append(np.array([getattr(r, name) for r in rules], dtype=dt))
    return tuple(out)


def regime_codes(labels_next: Sequence[str], regimes: Mapping[str, int]) -> np.ndarray:
    """Codes per bar from the label of the session each decision's fill lands in (-1 if unknown)."""
    return np.array([regimes.get(str(x), -1) for x in labels_next], dtype=np.int64)
