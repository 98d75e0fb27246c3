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

* **Entries may belong to different strategies** (the nightly chooses a strategy per (symbol,
  regime)): each code's signals come from its own strategy's signal function, so one symbol can trade
  sma_cross in the up regimes and rsi_reversion in the ranging ones. The rule above is unchanged: an
  open position keeps its entry's strategy (exit signals, rules, stop) until it exits, and only then
  can another regime's strategy enter. One path, so one position per symbol by construction.

The kernel is ``research.kernels.simulate.simulate_nb``, the same loop a sweep runs for each
combination: a sweep is its one-entry case (code 0 on every bar). The live bridge runs it over the
bars since its anchor at every bar close and trades ``target[t]``; the parity check runs it over
the replay: one function, two callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from .bars import Bars
from .exits import ExitRules, Path, Trades
from .kernels.simulate import RuleArrays, rule_arrays, simulate_nb
from .signals import get


def simulate_switching(bars: Bars, strategy: str | Sequence[str], entries: Sequence[tuple[object, ExitRules] | None],
                       code_next: np.ndarray, flatten: np.ndarray | None = None) -> tuple[Path, np.ndarray, np.ndarray]:
    """Path of per-regime (params, rules) entries switched by ``code_next``; also (active, trade codes).

    ``strategy``: the strategy whose signal function every entry runs, or one name per entry code
    (``strategy[k]`` runs entry k's params; ``strategy_of`` maps active / trade codes back to names).
    ``entries[k]`` is entry code k's (params, ExitRules), or None (flat: code k never enters).
    ``code_next[t]``: the code whose entry rules apply to a decision at bar t's close (-1: none).
    ``flatten[t]`` (optional, bool per bar): every position is closed by a decision at bar t's
    close, filled at t+1's open (the live runner's day-loss halt, which flattens from the bar it
    tripped in; pass code_next = -1 for the bars that must not enter).
    """
    n, kk = len(bars), len(entries)
    names = strategy_names(strategy, kk)
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
        s = get(names[i]).signals(bars, params)
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
    out = simulate_nb(bars, code_next, (sig[0], sig[1], sig[2], sig[3]), _rule_arrays(tuple(rules)))
    return Path(out[0], out[1], Trades(*out[3:9])), out[2], out[9]


_NO_RULES = ExitRules()


def strategy_names(strategy: str | Sequence[str], codes: int) -> tuple[str, ...]:
    """One strategy name per entry code: ``strategy`` itself if it is one name, else checked per code."""
    if isinstance(strategy, str):
        return (strategy,) * codes
    names = tuple(strategy)
    if len(names) != codes:
        raise ValueError(f"one strategy per entry code: {codes} entries, {len(names)} strategies")
    return names


def strategy_of(strategy: str | Sequence[str], codes: np.ndarray) -> list[str | None]:
    """The strategy of each code in ``codes`` (active or trade codes; -1, flat: None)."""
    names = (strategy,) if isinstance(strategy, str) else tuple(strategy)
    return [None if c < 0 else names[0 if len(names) == 1 else int(c)] for c in np.asarray(codes)]


@lru_cache(maxsize=1024)
def _rule_arrays(rules: tuple[ExitRules, ...]) -> RuleArrays:
    """Cached: the live runner passes the same rules every bar, and the kernel only reads them."""
    return rule_arrays(rules)


def regime_codes(labels_next: Sequence[str], regimes: Mapping[str, int]) -> np.ndarray:
    """Codes per bar from the label of the session each decision's fill lands in (-1 if unknown)."""
    return np.array([regimes.get(str(x), -1) for x in labels_next], dtype=np.int64)
