"""What the evening job works on: the calendar's word on a New York date, and the symbols to fetch.

``session_check`` says whether the date of "now" is a session, a weekend or a holiday, and when it
closes (13:00 ET on a half day); ``plan`` lists the symbols (and timeframes) the params in force and
the nightly's parameters need, legs of multi-leg entries and benchmarks included, and the
benchmarks whose regimes to recompute; ``NightlyJob`` is the nightly as ``tradelab nightly`` runs it.
Pure reads: no lake, no broker (``tradelab/evening.py`` runs the steps).
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from data_lake import LakeError
from data_lake.calendar import CALENDAR_END, CALENDAR_START, NY, nyse
from data_lake.schema import check_symbol, check_timeframe
from research.params import ParamsFile
from research.regimes import RegimeParams, default_scheme

from .jobs import JobConfig


# -------------------------------------------------------------------------------- the calendar
@dataclass(frozen=True)
class SessionCheck:
    """What the calendar says about one New York date."""

    day: date
    kind: Literal["session", "holiday", "weekend"]
    open: pd.Timestamp | None = None  # UTC
    close: pd.Timestamp | None = None  # UTC; 13:00 ET on a half day

    @property
    def close_et(self) -> str:
        return "" if self.close is None else f"{self.close.tz_convert(NY):%H:%M} ET"

    @property
    def half_day(self) -> bool:
        return self.close is not None and self.close.tz_convert(NY).hour < 16

    def closed(self, now: datetime) -> bool:
        return self.close is not None and pd.Timestamp(now) >= self.close


def session_check(now: datetime) -> SessionCheck:
    """The NYSE session (or its absence) on the New York date of ``now`` (timezone-aware)."""
    day = pd.Timestamp(now).tz_convert(NY).date()
    if not (date.fromisoformat(CALENDAR_START) <= day <= date.fromisoformat(CALENDAR_END)):
        raise LakeError(f"{day} is outside the NYSE calendar this project carries "
                        f"({CALENDAR_START} to {CALENDAR_END})")
    s = nyse()
    i = int(s.dates.searchsorted(pd.Timestamp(day)))
    if i == len(s.dates) or s.dates[i].date() != day:
        return SessionCheck(day, "weekend" if day.weekday() >= 5 else "holiday")
    opens, closes = (pd.Timestamp(int(us), unit="us", tz="UTC") for us in (s.open_us[i], s.close_us[i]))
    return SessionCheck(day, "session", opens, closes)


# -------------------------------------------------------------------------------- what to fetch
@dataclass(frozen=True)
class NightlyJob:
    """The nightly as ``tradelab nightly`` runs it: config, resolved overrides, the install hook."""

    config: JobConfig
    overrides: Mapping[str, Any] = field(default_factory=dict)
    install: Callable[[Path], str] | None = None  # run_dir -> one line (PROMOTED / REJECTED ...)

    def parameters(self) -> dict[str, Any]:
        """What the notebook will see: its parameters cell, then the config, then the overrides."""
        return {**notebook_defaults(self.config.notebook), **self.config.parameters, **self.overrides}


def notebook_defaults(path: Path) -> dict[str, Any]:
    """The literal values assigned in a notebook's ``parameters`` cell (others are left out)."""
    try:
        cells = json.loads(Path(path).read_text()).get("cells", [])
        cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        src = cell.get("source", "")
        tree = ast.parse("".join(src) if isinstance(src, list) else src)
    except (OSError, ValueError, SyntaxError, StopIteration, AttributeError):  # the nightly reports it
        return {}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError, TypeError, SyntaxError, RecursionError):
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


@dataclass(frozen=True)
class Plan:
    """The symbols to bring up to date per timeframe, and the ones whose regimes to recompute."""

    bars: Mapping[str, tuple[str, ...]]
    regimes: tuple[str, ...]
    # how to label them: the params in force's definition (what the runner trades), else the nightly's
    regime_params: RegimeParams = RegimeParams()


def _expand(symbol: str) -> list[str]:
    """A symbol, or the legs a multi-leg name lists ("KO/PEP", "XLK,XLF/SPY")."""
    return [check_symbol(s) for s in symbol.replace("/", ",").split(",") if s.strip()]


def plan(pf: ParamsFile | None, nightly: Mapping[str, Any]) -> Plan:
    """What the params in force (``pf``, None when there is none) and the nightly's parameters need."""
    from research.baskets import MULTI_LEG, legs

    bars: dict[str, set[str]] = {"1Day": set()}
    regimes: set[str] = set()

    def add(timeframe: str, symbols: list[str]) -> None:
        bars.setdefault(check_timeframe(timeframe), set()).update(symbols)
        bars["1Day"].update(symbols)  # regimes (own or the benchmark's) are daily

    if pf is not None:
        traded = [s for name in pf.data.symbols for s in _expand(name)]
        for e in pf.entries:
            traded += list(legs(e.strategy, e.symbol).data) if e.strategy in MULTI_LEG else _expand(e.symbol)
        add(pf.data.timeframe, traded)
        if pf.data.benchmark:
            add("1Day", _expand(pf.data.benchmark))
            regimes.add(check_symbol(pf.data.benchmark))
        else:  # the live bridge switches each single-symbol entry on its own regimes
            regimes.update(check_symbol(e.symbol) for e in pf.entries
                           if e.regime != "all" and e.strategy not in MULTI_LEG)
    symbols, bench, timeframe = nightly.get("symbols"), nightly.get("benchmark"), nightly.get("timeframe")
    symbols = symbols.split(",") if isinstance(symbols, str) else symbols
    listed = isinstance(symbols, list | tuple) and all(isinstance(x, str) for x in symbols)
    if symbols is not None and not listed:
        raise LakeError(f"nightly parameter symbols must be a list of symbols, got {symbols!r}")
    if not isinstance(timeframe or "", str) or not isinstance(bench or "", str):
        raise LakeError(f"nightly parameters timeframe and benchmark must be text: {timeframe!r}, {bench!r}")
    add(timeframe or "1Day", [s for name in symbols or () for s in _expand(name)])
    for key in ("pairs", "rotation"):  # swept pairs "Y/X" and baskets "A,B/BENCH": every leg's bars
        names = nightly.get(key) or []
        if not (isinstance(names, list | tuple) and all(isinstance(x, str) for x in names)):
            raise LakeError(f"nightly parameter {key} must be a list of names like {'KO/PEP' if key == 'pairs' else 'XLK,XLF/SPY'}, "
                            f"got {names!r}")
        add(timeframe or "1Day", [s for name in names for s in _expand(name)])
    if bench:
        add("1Day", _expand(bench))
        if nightly.get("by_regime", True):
            regimes.add(check_symbol(bench))
    scheme = nightly.get("regime_scheme") or default_scheme(timeframe or "1Day")
    try:
        definition = pf.regime_params() if pf is not None else RegimeParams(scheme=scheme)
    except ValueError as exc:
        raise LakeError(f"nightly parameter regime_scheme: {exc}") from None
    return Plan({tf: tuple(sorted(s)) for tf, s in bars.items() if s}, tuple(sorted(regimes)), definition)
