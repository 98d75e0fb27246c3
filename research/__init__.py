"""Research: computation. Signals, exit rules and the fill convention, regimes, metrics, the sweep
engine, walk-forward, guards, the promotion gate and the params model; numba kernels in ``kernels``.

What it may import: ``data_lake`` (bars, calendars, the lake's tables). Never ``pipeline``,
``live_bridge`` or ``tradelab``: jobs, files on disk and reports are ``pipeline``'s, and the live
bridge and the CLI call research, not the reverse.
"""

from ._numba_cache import configure as _configure_numba_cache

NUMBA_CACHE = _configure_numba_cache()
