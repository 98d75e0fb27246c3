"""The regime definition a params file records: which scheme and thresholds its entries' labels mean.

``research.regimes.RegimeParams`` as a strict pydantic model (part of ``research.params.ParamsFile``),
so a live runner that has only the params file and the lake labels sessions as the nightly did.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from .regimes import SCHEMES, RegimeParams

_RP = RegimeParams()


class RegimeDefinition(BaseModel):
    """The regime definition the entries' labels mean (``research.regimes.RegimeParams``): every
    consumer (nightly, sweep, live runner, replay, shadow, evening) labels sessions with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Literal[SCHEMES] = _RP.scheme  # type: ignore[valid-type]
    trend_window: int = _RP.trend_window
    slope_bars: int = _RP.slope_bars
    slope_min: float = _RP.slope_min
    er_window: int = _RP.er_window
    er_min: float = _RP.er_min
    vol_window: int = _RP.vol_window
    vol_history: int = _RP.vol_history
    low_pct: float = _RP.low_pct
    high_pct: float = _RP.high_pct
    extreme_pct: float = _RP.extreme_pct
    periods_per_year: float = _RP.periods_per_year

    @model_validator(mode="after")
    def _valid(self) -> RegimeDefinition:
        self.to_params()  # RegimeParams' own checks, naming the field
        return self

    def to_params(self) -> RegimeParams:
        """The RegimeParams ``research.regimes.regimes_from_daily`` takes."""
        return RegimeParams(**self.model_dump())

    @classmethod
    def from_params(cls, p: RegimeParams) -> RegimeDefinition:
        """The stored form of a RegimeParams."""
        return cls(**asdict(p))


assert set(RegimeDefinition.model_fields) == set(asdict(_RP)), "RegimeDefinition must mirror RegimeParams"
