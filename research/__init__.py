"""Research: signals, regimes, sweeps, metrics and params. Never imports live_bridge."""

from ._numba_cache import configure as _configure_numba_cache

NUMBA_CACHE = _configure_numba_cache()
