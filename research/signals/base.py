"""What every strategy provides, and the shape of its output.

A strategy is a module with a frozen params dataclass, a default grid and a pure ``signals``
function ``(Bars, Params) -> Signals``. Decisions are taken at bar t's close from data up to t;
they are filled at bar t+1's open by the exit/fill simulation (research/exits.py). The sweep
broadcasts ``signals`` over a grid; the live bridge calls it on the trailing window and acts on the
last bar. Same function, two callers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, NamedTuple

import numpy as np

from ..bars import Bars


class Signals(NamedTuple):
    """Boolean arrays, one value per bar: what to do at that bar's close."""

    long_entry: np.ndarray
    long_exit: np.ndarray
    short_entry: np.ndarray
    short_exit: np.ndarray


def no_signals(n: int) -> Signals:
    """All-False signals of length n."""
    return Signals(*(np.zeros(n, dtype=np.bool_) for _ in range(4)))


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its name, params type, default grid and signal function."""

    name: str
    params: type
    grid: dict[str, tuple[Any, ...]]
    signals: Callable[..., Any]
    intraday: bool = False
    #: "single": signals(bars, p) -> Signals; "pair": signals(y, x, p) -> PairSignals;
    #: "basket": signals(closes, bench, p) -> RotationSignals (target weights)
    kind: str = "single"

    def make_params(self, **values: Any) -> Any:
        """Params from keyword values, with a 'did you mean' hint for a wrong name."""
        names = [f.name for f in fields(self.params)]
        for key in values:
            if key not in names:
                import difflib

                hint = difflib.get_close_matches(key, names, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else ""
                raise ValueError(f"{self.name} has no parameter {key!r} (has: {', '.join(names)}){extra}")
        return self.params(**values)
