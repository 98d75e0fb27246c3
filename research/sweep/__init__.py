"""Parameter sweeps: the fused numba engine (``run_grid``) and its inputs.

``research.sweep.vbt`` (vectorbt Portfolio of one combination, for detail and parity) is not
imported here: importing vectorbt costs seconds that a sweep does not need.
"""

from .engine import Costs, ParamList, run_grid, valid_params

__all__ = ["Costs", "ParamList", "run_grid", "valid_params"]
