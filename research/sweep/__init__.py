"""Parameter sweeps: the fused numba engine (``run_grid``), pairs (``run_pairs_grid``, ``sweep_pairs``),
rotation (``run_rotation_grid``, ``sweep_rotation``) and their inputs.

``research.sweep.vbt`` (vectorbt Portfolio of one combination, for detail and parity) is not
imported here: importing vectorbt costs seconds that a sweep does not need.
"""

from .engine import Costs, ParamList, run_grid, valid_params
from .pairs import PairsSweep, run_pairs_grid, sweep_pairs
from .rotation import RotationSweep, run_rotation_grid, sweep_rotation

__all__ = ["Costs", "PairsSweep", "ParamList", "RotationSweep", "run_grid", "run_pairs_grid", "run_rotation_grid",
           "sweep_pairs", "sweep_rotation", "valid_params"]
