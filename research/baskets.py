"""Multi-leg strategies (pairs, rotation) as target weights per leg: one function for backtest and live.

A multi-leg entry of a params file names its legs in its ``symbol`` (``legs``):

* pairs: ``"Y/X"``: long spread = long y, short beta * x (research/signals/pairs.py);
* rotation: ``"A,B,C/BENCH"``: the assets ranked by relative strength against BENCH (traded: A, B, C;
  BENCH is data only; research/signals/rotation.py).

``weights`` turns the strategy's signals over bars aligned on their common timestamps into the
target weight of every leg, decided at bar t's close and held from t+1's open (research/exits.py):

* pairs: while the plan (``pair_signals_nb``) holds a spread s = +1/-1, y gets s / (1 + |b|) and x
  gets -s * b / (1 + |b|), b the hedge ratio of the entry bar, frozen for the trade (gross weight 1);
* rotation: the strategy's own weights (+-1/top_k at each rebalance, held between).

``effective`` applies what a broker imposes, so the backtest and the live runner agree on it:

* nothing is entered before bar ``start`` (the warm-up), and a weight already on at ``start`` (or
  missed later) is not entered late: a leg enters only on the bar its weight changes;
* one order never flips a position (Alpaca refuses it): a leg whose target changes sign goes flat
  first and takes the new side at the next decision, if the strategy still wants it then.

A leg trades at bar t+1's open exactly when its effective weight at t differs from t-1's.
Quantities are the live runner's (risk sizing); parity compares bars, sides and prices of fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce

import numpy as np

from .bars import Bars, bars_from_arrays
from .kernels.pairs import effective_weights_nb, pair_weights_nb
from .signals import get
from .signals import pairs as _pairs
from .signals import rotation as _rotation

MULTI_LEG = ("pairs", "rotation")


@dataclass(frozen=True)
class Legs:
    """The legs of a multi-leg entry: ``traded`` get orders, ``data`` are every symbol read."""

    traded: tuple[str, ...]
    reference: str  # pairs: x; rotation: the benchmark (not traded)

    @property
    def data(self) -> tuple[str, ...]:
        return self.traded if self.reference in self.traded else (*self.traded, self.reference)


def legs(strategy: str, symbol: str) -> Legs:
    """Parse the ``symbol`` of a multi-leg entry (see the module docstring); ValueError naming the form."""
    kind = get(strategy).kind
    head, sep, ref = symbol.partition("/")
    names = [s.strip() for s in head.split(",")]
    bad = not sep or not ref.strip() or "/" in ref or any(not s for s in names)
    if kind == "pair":
        if bad or len(names) != 1 or names[0] == ref.strip():
            raise ValueError(f"pairs symbol must be 'Y/X' (two different symbols), got {symbol!r}")
        return Legs((names[0], ref.strip()), ref.strip())
    if kind == "basket":
        if bad or len(set(names)) != len(names) or ref.strip() in names:
            raise ValueError(f"rotation symbol must be 'A,B,.../BENCH' (distinct assets, the benchmark "
                             f"not among them), got {symbol!r}")
        return Legs(tuple(names), ref.strip())
    raise ValueError(f"{strategy} trades one symbol; only {', '.join(MULTI_LEG)} have legs")


def align(arrays: Mapping[str, Mapping[str, np.ndarray]], symbols: tuple[str, ...]) -> tuple[np.ndarray, dict]:
    """The timestamps every symbol has a bar at, and each symbol's arrays restricted to them."""
    common = reduce(np.intersect1d, [np.asarray(arrays[s]["ts"]) for s in symbols])
    out = {}
    for s in symbols:
        a = arrays[s]
        idx = np.searchsorted(a["ts"], common)
        out[s] = {k: np.asarray(v)[idx] for k, v in a.items()}
    return common, out


def pair_weights(y: Bars, x: Bars, p: _pairs.Pairs) -> np.ndarray:
    """(n, 2) target weights of (y, x) from the pairs plan (see the module docstring).

    ``pair_weights_nb`` is the kernel the pairs sweep (research/sweep/pairs.py) calls too.
    """
    sig = _pairs.signals(y, x, p)
    return pair_weights_nb(sig.long_entry, sig.long_exit, sig.short_entry, sig.short_exit, sig.beta)


def weights(strategy: str, params: object, lg: Legs, aligned: Mapping[str, Mapping[str, np.ndarray]],
            timeframe: str) -> np.ndarray:
    """(n, len(lg.traded)) raw target weights over aligned arrays (``align``)."""
    if strategy == "pairs":
        y, x = (bars_from_arrays(dict(aligned[s]), timeframe) for s in lg.traded)
        return pair_weights(y, x, params)
    if strategy == "rotation":
        closes = np.column_stack([np.asarray(aligned[s]["close"], dtype=np.float64) for s in lg.traded])
        return _rotation.signals(closes, np.asarray(aligned[lg.reference]["close"], dtype=np.float64), params).weights
    raise ValueError(f"{strategy} is not a multi-leg strategy ({', '.join(MULTI_LEG)})")


def effective(raw: np.ndarray, start: int) -> np.ndarray:
    """What is traded of ``raw`` weights: no entry before ``start``, no late entry, no flip in one order.

    ``effective_weights_nb`` is the kernel the pairs sweep (research/sweep/pairs.py) calls too.
    """
    return effective_weights_nb(np.ascontiguousarray(raw, dtype=np.float64), int(start))
