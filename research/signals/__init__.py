"""The strategy library: pure signal functions shared by the sweeps and the live bridge.

Each module ``research/signals/<name>.py`` defines a frozen params dataclass, a default ``GRID``
and ``signals(bars, params) -> Signals`` (single-symbol strategies), registered as
``STRATEGY = Strategy(...)`` with its optional sweep hooks (the contract: ``base.Strategy``).
Multi-asset strategies (pairs, rotation) have their own output shapes (``StrategyKind``),
documented in their modules.
"""

from __future__ import annotations

import importlib

from .base import Signals, Strategy, StrategyKind, no_signals

NAMES = ("sma_cross", "sma_convergence", "breakout", "vwap_reversion", "rsi_reversion", "gap", "pairs", "rotation")


def get(name: str) -> Strategy:
    """The registered strategy called ``name`` (ValueError naming the valid ones otherwise)."""
    if name not in NAMES:
        import difflib

        hint = difflib.get_close_matches(name, NAMES, n=1)
        raise ValueError(f"unknown strategy {name!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
                         f"known: {', '.join(NAMES)}")
    strategy = _LOADED.get(name)
    if strategy is None:  # imported once: the live runner asks for every bar of every symbol
        strategy = _LOADED[name] = importlib.import_module(f"{__name__}.{name}").STRATEGY
    return strategy


_LOADED: dict[str, Strategy] = {}


__all__ = ["NAMES", "Signals", "Strategy", "StrategyKind", "get", "no_signals"]
