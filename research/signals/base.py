"""What every strategy provides, and the shape of its output: the strategy contract.

A strategy is a module ``research/signals/<name>.py`` with a frozen params dataclass, a default grid
and a pure, index-free ``signals`` function, registered as ``STRATEGY = Strategy(...)``. Decisions
are taken at bar t's close from data up to t; they are filled at bar t+1's open by the exit/fill
simulation (research/exits.py). The sweep broadcasts ``signals`` over a grid; the live bridge calls
it on the trailing window and acts on the last bar. Same function, two callers.

A single-symbol strategy may also register the sweep's fast-path hooks (``params_to_array``,
``signals_nb``, the shared-indicator trio). They are fields of ``Strategy``, None when not
provided: the sweep engine reads these fields and nothing else of the module. Each hook must give
exactly what ``signals`` gives; tests/research/test_sweep_engine.py checks every path bit for bit.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from ..bars import Bars

if TYPE_CHECKING:  # their modules import this one
    from .pairs import PairSignals
    from .rotation import RotationSignals

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]


class Signals(NamedTuple):
    """Boolean arrays, one value per bar: what to do at that bar's close."""

    long_entry: np.ndarray
    long_exit: np.ndarray
    short_entry: np.ndarray
    short_exit: np.ndarray


def no_signals(n: int) -> Signals:
    """All-False signals of length n."""
    return Signals(*(np.zeros(n, dtype=np.bool_) for _ in range(4)))


class StrategyKind(StrEnum):
    """What ``signals`` takes and returns. A StrEnum: ``StrategyKind.PAIR == "pair"``."""

    SINGLE = "single"  # signals(bars, p) -> Signals; the only kind run_grid sweeps
    PAIR = "pair"  # signals(y, x, p) -> PairSignals (two aligned Bars)
    BASKET = "basket"  # signals(closes, bench, p) -> RotationSignals (target weights)


# ---------------------------------------------------------------- signal functions, by kind
class SignalsFn(Protocol):
    """``signals(bars, p) -> Signals`` (SINGLE): p is an instance of ``Strategy.params``."""

    def __call__(self, bars: Bars, p: Any, /) -> Signals: ...


class PairSignalsFn(Protocol):
    """``signals(y, x, p) -> PairSignals`` (PAIR): y and x aligned bar for bar."""

    def __call__(self, y: Bars, x: Bars, p: Any, /) -> PairSignals: ...


class BasketSignalsFn(Protocol):
    """``signals(closes, bench, p) -> RotationSignals`` (BASKET): closes [n_bars, n_assets], bench [n_bars]."""

    def __call__(self, closes: F64, bench: F64, p: Any, /) -> RotationSignals: ...


# ---------------------------------------------------------------- the sweep's hooks (SINGLE only)
class ParamsToArray(Protocol):
    """The params as the float64 row the numba hooks read as ``p`` (bools 0/1, modes as codes)."""

    def __call__(self, p: Any, /) -> F64: ...


class SignalsNb(Protocol):
    """An ``@njit(cache=True)`` ``signals``: the bars' columns as float64 / int64 C arrays and the
    ``params_to_array`` row in, (long_entry, long_exit, short_entry, short_exit) C-contiguous bool
    arrays out. The engine calls it as a first-class function of type ``engine.SIGNALS_SIG``."""

    def __call__(self, open_: F64, high: F64, low: F64, close: F64, volume: F64, session: I64,
                 bar_in_session: I64, bars_left: I64, p: F64, /) -> tuple[Bool, Bool, Bool, Bool]: ...


class IndicatorKeys(Protocol):
    """The indicator series a params' signals read, one key (a tuple of floats) per series."""

    def __call__(self, p: Any, /) -> Sequence[Sequence[float]]: ...


class IndicatorNb(Protocol):
    """An ``@njit(cache=True)`` function: the series a key names, float64 [n_bars]
    (``engine.INDICATOR_SIG``)."""

    def __call__(self, open_: F64, high: F64, low: F64, close: F64, volume: F64, session: I64,
                 bar_in_session: I64, bars_left: I64, key: F64, /) -> F64: ...


class SignalsFromNb(Protocol):
    """An ``@njit(cache=True)`` function: signals from rows of the indicator table; ``rows[i]`` is the
    table row of ``indicator_keys(params)[i]``, p the ``params_to_array`` row
    (``engine.SIGNALS_FROM_SIG``)."""

    def __call__(self, table: F64, rows: I64, p: F64, /) -> tuple[Bool, Bool, Bool, Bool]: ...


SHARED_HOOKS = ("indicator_keys", "indicator_nb", "signals_from_nb")


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its name, params type, default grid, signal function and sweep hooks."""

    name: str
    params: type
    """The frozen params dataclass; its ``__post_init__`` refuses invalid combinations."""
    grid: dict[str, tuple[Any, ...]]
    """The default sweep grid: values per params field."""
    signals: SignalsFn | PairSignalsFn | BasketSignalsFn
    """The signal function, pure and index-free; its signature is set by ``kind``. Callers: the
    sweep's "signals" path, research.sweep.vbt and select (the whole history), and the live bridge
    through research.switching and research.baskets (the trailing window; it acts on the last bar)."""
    _: KW_ONLY
    intraday: bool = False
    """Signals meant for 1Min bars (session logic: VWAP, opening gaps)."""
    kind: StrategyKind = StrategyKind.SINGLE
    """The shape of ``signals`` (a plain string is accepted and converted)."""
    params_to_array: ParamsToArray | None = None
    """Needed by ``signals_nb`` and the shared hooks: called once per params, in Python, to build
    the float64 rows the parallel kernels hand to them. None: no fast path."""
    signals_nb: SignalsNb | None = None
    """The "fused" path (``run_grid(path="auto")`` takes it when the shared hooks are absent): one
    parallel kernel calls it once per params, then the exit simulation and the metrics, without
    leaving numba. Must equal ``signals(bars, params)`` for p = ``params_to_array(params)``.
    None: the sweep calls ``signals`` in Python per params (the "signals" path)."""
    indicator_keys: IndicatorKeys | None = None
    """The "shared" path (preferred by "auto"; given with ``indicator_nb`` and ``signals_from_nb``):
    called per params in Python; each distinct key of a chunk of params is computed once."""
    indicator_nb: IndicatorNb | None = None
    """The "shared" path: computes each distinct key's series, in parallel, into the indicator table."""
    signals_from_nb: SignalsFromNb | None = None
    """The "shared" path: the fused kernel's ``signals_nb``, reading precomputed rows of the table
    (sma_cross: a crossing test of two averages instead of two running sums per combination)."""

    def __post_init__(self) -> None:
        kinds = [k.value for k in StrategyKind]
        if self.kind not in kinds:
            raise ValueError(f"{self.name}: kind must be one of {', '.join(kinds)}, got {self.kind!r}")
        object.__setattr__(self, "kind", StrategyKind(self.kind))
        hooks = {"params_to_array": self.params_to_array, "signals_nb": self.signals_nb,
                 "indicator_keys": self.indicator_keys, "indicator_nb": self.indicator_nb,
                 "signals_from_nb": self.signals_from_nb}
        given = [h for h, fn in hooks.items() if fn is not None]
        if given and self.kind != StrategyKind.SINGLE:
            raise ValueError(f"{self.name}: sweep hooks ({', '.join(given)}) apply to single-symbol "
                             "strategies")
        shared = [h for h in SHARED_HOOKS if h in given]
        if shared and len(shared) != len(SHARED_HOOKS):
            raise ValueError(f"{self.name}: the shared hooks come together: {', '.join(SHARED_HOOKS)} "
                             f"(got {', '.join(shared)})")
        if (self.signals_nb is not None or shared) and self.params_to_array is None:
            raise ValueError(f"{self.name}: signals_nb and the shared hooks need params_to_array")

    def make_params(self, **values: Any) -> Any:
        """Params from keyword values, with a 'did you mean' hint for a wrong name."""
        names = [f.name for f in fields(self.params)]
        for key in values:
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else ""
                raise ValueError(f"{self.name} has no parameter {key!r} (has: {', '.join(names)}){extra}")
        return self.params(**values)
