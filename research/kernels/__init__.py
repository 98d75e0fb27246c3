"""Numba kernels: pure ``@njit(cache=True)`` functions, numpy in, numpy out.

They import numpy and numba only: no pandas, no globals, no I/O, nothing else of research. The
pandas layer that wraps them lives beside their callers. The on-disk cache is keyed by every
research source (``research/_numba_cache.py``), so moving or editing a kernel starts a fresh one.

* ``batch``: many sleeves' signals, entry codes and last-bar decisions in one call each
  (``live_bridge.batch.decide_many``: a bar's 500 sleeves decided at once)
* ``indicators``: rolling statistics, crossings, RSI, session VWAP (the signals and regimes)
* ``regimes``: the trend and volatility measures and codes of ``research.regimes``
* ``pairs``: rolling OLS, spread z-scores and the signals of ``research.signals.pairs``
* ``rotation``: relative strength, its ranking and the weights of ``research.signals.rotation``
* ``simulate``: the one simulation loop (``simulate_nb``: the fill convention and exit rules),
  ``ExitReason``, ``RuleArrays`` and the tick; ``research.exits``, ``research.switching`` and the
  sweep engine all run it

The metrics' accounting, the sweep engine's parallel drivers and the single-symbol signals keep
their kernels next to their wrappers.
"""
