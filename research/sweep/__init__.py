"""Parameter sweeps: the fused numba engine (``run_grid``), pairs (``run_pairs_grid``, ``sweep_pairs``) and their inputs.

``research.sweep.vbt`` (vectorbt Portfolio of one combination, for detail and parity) is not
imported here: importing vectorbt costs seconds that a sweep does not need.
"""

from .engine import Costs, ParamList, run_grid, valid_params
from .pairs import PairsSweep, run_pairs_grid, sweep_pairs

__all__ = ["Costs", "PairsSweep", "ParamList", "run_grid", "run_pairs_grid", "sweep_pairs", "valid_params"]
