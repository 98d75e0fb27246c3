"""Average-cost accounting of fills: what the state store derives positions and daily P&L with.

Pure: one fill on a position (``apply_fill``), and a replay of fills in arrival order
(``replay_fills``), which ``StateStore.integrity_check`` compares the stored tables with and the
daily report (``daily_report.py``, ``shadow.py``) prices the day with.
"""

from __future__ import annotations

from collections.abc import Iterable

from .ports import sign

_EPS = 1e-9


def apply_fill(qty: float, avg: float, side: str, fill_qty: float,
               price: float) -> tuple[float, float, float]:
    """One fill on an average-cost position: (new qty, new average price, realized P&L of the fill)."""
    signed = sign(side) * fill_qty
    new = qty + signed
    if abs(new) < _EPS:
        new = 0.0
    if qty == 0 or qty * signed > 0:  # opening or adding
        return new, (abs(qty) * avg + fill_qty * price) / abs(new), 0.0
    realized = min(abs(qty), fill_qty) * (price - avg) * (1 if qty > 0 else -1)
    if new == 0:
        return 0.0, 0.0, realized
    return new, (avg if new * qty > 0 else price), realized  # reduced, or flipped at the fill price


def replay_fills(fills: Iterable[tuple[str, str, str, float, float, str]]
                 ) -> tuple[dict[tuple[str, str], tuple[float, float, float]], dict[tuple[str, str], tuple[float, int]]]:
    """Replay fills ``(strategy, symbol, side, qty, price, day)`` in order: (strategy, symbol) ->
    (qty, average price, realized P&L), and (day, strategy) -> (realized P&L, fill count)."""
    positions: dict[tuple[str, str], tuple[float, float, float]] = {}
    pnl: dict[tuple[str, str], tuple[float, int]] = {}
    for strategy, symbol, side, qty, price, day in fills:
        q, a, r = positions.get((strategy, symbol), (0.0, 0.0, 0.0))
        q, a, delta = apply_fill(q, a, side, qty, price)
        positions[(strategy, symbol)] = (q, a, r + delta)
        realized, n = pnl.get((day, strategy), (0.0, 0))
        pnl[(day, strategy)] = (realized + delta, n + 1)
    return positions, pnl
