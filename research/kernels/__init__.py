"""Numba kernels: pure ``@njit(cache=True)`` functions, numpy in, numpy out.

They import numpy and numba only: no pandas, no globals, no I/O, nothing else of research. The
pandas layer that wraps them lives beside their callers. The on-disk cache is keyed by every
research source (``research/_numba_cache.py``), so moving or editing a kernel starts a fresh one.

* ``indicators``: rolling statistics, crossings, RSI, session VWAP (the signals and regimes)
* ``regimes``: the trend and volatility measures and codes of ``research.regimes``
* ``pairs``: rolling OLS, spread z-scores and the signals of ``research.signals.pairs``

Kernels still defined next to their wrappers (exits, metrics, switching, the sweep engine, the
single-symbol signals) are not here yet.
"""
