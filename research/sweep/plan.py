"""What a sweep is: its spec (strategy, grid, exit rules, costs, splits, regimes) and its plan.

A spec is frozen and hashed: the sweep id is a hash of the spec and of the exact bars used, so a
resumed sweep can only continue the same computation on the same data, and results can name
their provenance. The plan splits the combinations into chunks sized to a memory budget.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..exits import ExitRules
from ..signals import get

#: Bytes one result row costs while a chunk is held and written (measured: ~25 columns).
ROW_BYTES = 600
#: Bytes per bar a worker thread needs while simulating one combination (signals, path, equity).
BAR_BYTES = 64


MAX_GRID_VALUES = 100_000  # per dimension: a typo like 5:1e12:1 is refused, not allocated


def parse_grid_arg(text: str) -> tuple[str, tuple]:
    """Parse ``name=start:stop:step`` (stop inclusive) or ``name=a,b,c`` into (name, values)."""
    if "=" not in text:
        raise ValueError(f"--grid {text!r}: expected name=start:stop:step or name=a,b,c")
    name, spec = (s.strip() for s in text.split("=", 1))
    try:
        if ":" in spec:
            parts = spec.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, step = (float(p) for p in parts)
            if step <= 0 or stop < start or not np.isfinite([start, stop, step]).all():
                raise ValueError
            if (stop - start) / step >= MAX_GRID_VALUES:
                raise ValueError(f"--grid {text!r}: more than {MAX_GRID_VALUES:,} values in one dimension")
            vals = np.arange(start, stop + step / 2, step)
            is_int = all(float(p).is_integer() for p in parts)
            values = tuple(int(round(v)) for v in vals) if is_int else tuple(round(float(v), 12) for v in vals)
        else:
            values = tuple(_scalar(v) for v in spec.split(",") if v.strip())
    except ValueError as exc:
        if "values in one dimension" in str(exc):
            raise
        raise ValueError(f"--grid {text!r}: expected name=start:stop:step (step > 0, stop >= start) "
                         "or name=a,b,c") from None
    if not values:
        raise ValueError(f"--grid {text!r}: no values")
    return name, values


def _scalar(text: str) -> object:
    t = text.strip()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(t.lower(), t)


@dataclass(frozen=True)
class SweepSpec:
    """Everything that determines a sweep's results (besides the bars themselves)."""

    strategy: str
    symbols: tuple[str, ...]
    timeframe: str = "1Day"
    grid: tuple[tuple[str, tuple], ...] = ()
    rules: tuple[ExitRules, ...] = (ExitRules(allow_short=False),)
    fees: float = 0.001
    slippage: float = 0.0
    by_regime: bool = False
    benchmark: str | None = None
    walk_forward: str | None = None
    anchored: bool = False
    start: str | None = None
    end: str | None = None
    params_fixed: tuple[tuple[str, object], ...] = field(default=())
    # by_regime: the ``research.regimes.params_hash`` the stored labels must have (None: whatever is stored)
    regime_hash: str | None = None
    # pairs: the Engle-Granger p-value a pair must pass to be swept (None: no screen)
    max_pvalue: float | None = None

    def canonical(self) -> str:
        """A stable JSON form of the spec (the input of the sweep id)."""
        d = asdict(self)
        d["rules"] = [asdict(r) for r in self.rules]
        for name in ("regime_hash", "max_pvalue"):  # ids of specs from before a field existed stay the same
            if d[name] is None:
                del d[name]
        return json.dumps(d, sort_keys=True, default=str)

    def combos(self) -> tuple[list, list[ExitRules], int]:
        """The valid params (cartesian product of the grid), the rules, and how many were dropped.

        Multi-leg strategies (pairs, rotation) carry their own exits: their spec has no rules
        (``rules=()``) and combo c is params[c]."""
        strategy = get(self.strategy)
        if strategy.kind != "single" and self.rules:
            raise ValueError(f"{self.strategy} carries its own exits: its sweep takes no exit rules (rules=())")
        names = [n for n, _ in self.grid]
        known = self.param_names()
        for name in [*names, *dict(self.params_fixed)]:
            if name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                raise ValueError(f"{self.strategy} has no parameter {name!r} (has: {', '.join(known)})"
                                 + (f"; did you mean {hint[0]!r}?" if hint else ""))
        valid, dropped = [], 0
        for values in itertools.product(*(v for _, v in self.grid)):
            try:
                valid.append(strategy.make_params(**dict(self.params_fixed), **dict(zip(names, values))))
            except TypeError as exc:  # a value of the wrong kind (e.g. fast=sma): the grid is wrong, not one combo
                raise ValueError(f"{self.strategy} grid: {exc}") from None
            except ValueError:
                dropped += 1  # e.g. sma_cross fast >= slow: not a strategy, not a trial
        if not valid:
            raise ValueError(f"the grid leaves no valid {self.strategy} params ({dropped} combinations rejected)")
        return valid, list(self.rules), dropped

    def param_names(self) -> list[str]:
        """Names of the params type's fields, in order."""
        return [f.name for f in fields(get(self.strategy).params)]


def sweep_id(spec: SweepSpec, data_hashes: dict[str, str],
             regime_hashes: dict[str, str] | None = None) -> str:
    """Hash of the spec, of the bars of every symbol and of the regime definition each symbol's
    labels came from (``regime_hashes``): the identity of a sweep's results."""
    h = hashlib.sha256(spec.canonical().encode())
    for sym in sorted(data_hashes):
        h.update(f"{sym}:{data_hashes[sym]}".encode())
    for sym, rh in sorted((regime_hashes or {}).items()):
        if rh != spec.regime_hash:  # already in the spec: ids stay those of a spec that names it
            h.update(f"regimes {sym}:{rh}".encode())
    return h.hexdigest()[:16]


def bars_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of the exact bars (ts and OHLCV bytes): provenance of every result."""
    h = hashlib.sha256()
    for k in ("ts", "open", "high", "low", "close", "volume"):
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()[:16]


def chunk_size(n_bars: int, cells_per_combo: int, max_memory: int, threads: int = 2) -> int:
    """Combinations per chunk so that a chunk's results and working arrays fit in max_memory."""
    working = threads * n_bars * BAR_BYTES + 8 * n_bars * 8  # per-thread paths + the bars
    budget = max_memory - working - 200 * 2**20  # the interpreter, numba, pandas themselves
    if budget <= 0:
        raise ValueError(f"--max-memory {max_memory / 2**20:.0f} MiB is too small for {n_bars:,} bars")
    return max(1, min(250_000, budget // (cells_per_combo * ROW_BYTES)))
