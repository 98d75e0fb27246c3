"""The params file: the one typed, validated, versioned artefact research writes and the live bridge reads.

A file carries its provenance (run, data window and bar hashes, code version, selection rule),
the gate thresholds it was judged by, the verdict, and one entry per (strategy, symbol, regime).
The nightly chooses one strategy per (symbol, regime); a file may hold several active in one
(hand-made, or a weekend's), and the live bridge then nets them (live_bridge/runner_book.py).
The gate's vocabulary (``GateThresholds``, ``EntryVerdict``, ``Verdict``) is defined here, as part
of the file; ``research.promotion`` applies it. This module models, parses and serializes; it
writes no file: ``pipeline.params_store`` installs files as ``params/current.json``, keeps
``params/history/``, writes candidates and the schema, and compares files.

Validation is strict on purpose: a hand edit with a typo must fail loudly, naming the field
(``entries.0.params.fast``), rather than trade on a default. Params are checked against the
strategy's own params dataclass, so a file cannot name a parameter the code does not have.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
import typing
from collections.abc import Mapping
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic import ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from data_lake.schema import TIMEFRAMES

from .exits import ExitRules
from .metrics import METRICS
from .regime_definition import RegimeDefinition
from .regimes import SCHEMES, WARMUP, RegimeParams, labels
from .signals import NAMES, get
from .strict_json import strict_json

SCHEMA_VERSION = 1
# the labels of any scheme (trend_vol's first: the default), "warmup" and "all"; the file's scheme is checked
REGIMES = (*dict.fromkeys(lab for sch in ("trend_vol", *SCHEMES) for lab in labels(sch)), WARMUP, "all")
OBJECTIVES = ("sharpe", "sortino", "calmar", "total_return", "expectancy")
Regime = Literal[REGIMES]  # type: ignore[valid-type]  # the labels, "warmup" and "all"
Timeframe = Literal[tuple(TIMEFRAMES)]  # type: ignore[valid-type]
Key = tuple[str, str, str]  # (strategy, symbol, regime)


def _plain(v: Any) -> Any:
    """numpy scalars -> Python; NaN / inf -> None (JSON has no NaN; missing is null)."""
    if hasattr(v, "item") and type(v).__module__ == "numpy":
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _scalar(v: Any) -> Any:
    if not isinstance(v := _plain(v), (bool, int, float, str)):
        raise ValueError(f"a param must be a number, true/false or a string, got {v!r}")
    return v


Figure = Annotated[float | None, BeforeValidator(_plain)]
ParamValue = Annotated[bool | int | float | str, BeforeValidator(_scalar)]
Probability = Annotated[Annotated[float, Field(ge=0.0, le=1.0)] | None, BeforeValidator(_plain)]


# -- the gate's vocabulary (research.promotion applies it) ---------------------------------------


class GateThresholds(BaseModel):
    """What a candidate must show to be promoted (the Sharpe rule is strict, the others inclusive)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_oos_sharpe: float = Field(0.0, description="out-of-sample Sharpe must be strictly greater")
    min_deflated_sharpe: float = Field(0.95, ge=0.0, le=1.0, description="deflated Sharpe (a probability) >=")
    max_pbo: float = Field(0.5, ge=0.0, le=1.0, description="probability of backtest overfitting <=")
    min_oos_trades: int = Field(10, ge=0, description="trades entered out of sample >=")
    min_stability: float = Field(0.5, ge=0.0, le=1.0, description="neighbourhood stability >=")


class EntryVerdict(BaseModel):
    """The gate's answer for one entry: passed, or one reason per failed rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: bool
    reasons: tuple[str, ...] = ()


class Verdict(BaseModel):
    """The gate's answer for a whole params file, and the file it would replace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    promoted: bool
    reasons: tuple[str, ...] = ()
    previous_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


NOT_EVALUATED = EntryVerdict(passed=False, reasons=("not evaluated by the gate",))


def key_text(key: Key) -> str:
    """'sma_cross AAPL up_normal': how a key appears in reasons and tables."""
    return " ".join(key)


# -- the file's parts ----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Metrics(_Model):
    """The 11 ``research.metrics.METRICS`` of one cell; null where undefined (never NaN)."""

    total_return: Figure
    cagr: Figure
    sharpe: Figure
    sortino: Figure
    max_drawdown: Figure
    calmar: Figure
    win_rate: Figure
    profit_factor: Figure
    expectancy: Figure
    trades: Figure
    exposure: Figure

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Metrics:
        """Metrics from a dict or a sweep row (a pandas Series works): the METRICS names, NaN -> None."""
        return cls(**{k: values.get(k) for k in METRICS})


assert tuple(Metrics.model_fields) == METRICS, "Metrics must mirror research.metrics.METRICS"


class ExitRulesModel(_Model):
    """``research.exits.ExitRules`` as stored: fractions of the entry price and bar counts (0 = off)."""

    stop_loss: float = Field(0.0, ge=0.0, lt=1.0)
    take_profit: float = Field(0.0, ge=0.0, lt=1.0)
    trailing_stop: float = Field(0.0, ge=0.0, lt=1.0)
    time_stop: int = Field(0, ge=0)
    flat_at_close: bool = False
    allow_short: bool = True

    def to_rules(self) -> ExitRules:
        """The ExitRules the simulation and the live bridge use."""
        return ExitRules(**self.model_dump())

    @classmethod
    def from_rules(cls, rules: ExitRules) -> ExitRulesModel:
        """The stored form of an ExitRules."""
        return cls(**asdict(rules))


class RunInfo(_Model):
    """Which job wrote the file, from which notebook, with its outputs in run_dir."""

    job: Literal["nightly", "weekend", "manual"]
    notebook: str
    run_dir: str


class DataWindow(_Model):
    """The bars the params were chosen on: timeframe, dates (inclusive), symbols and their bar hashes."""

    timeframe: Timeframe
    start: date
    end: date
    symbols: tuple[str, ...] = Field(min_length=1)
    bars_hash: dict[str, str]
    benchmark: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DataWindow:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols repeat: {', '.join(self.symbols)}")
        if set(self.bars_hash) != set(self.symbols):
            missing, extra = set(self.symbols) - set(self.bars_hash), set(self.bars_hash) - set(self.symbols)
            raise ValueError(f"bars_hash needs one entry per symbol (missing: {', '.join(sorted(missing)) or '-'};"
                             f" not a symbol: {', '.join(sorted(extra)) or '-'})")
        return self


class SelectionInfo(_Model):
    """How the params were chosen from the sweeps."""

    objective: Literal[OBJECTIVES]  # type: ignore[valid-type]
    walk_forward: str | None = None
    min_trades: int = Field(ge=0)
    sweep_ids: tuple[str, ...] = ()


_TYPE_OK = {
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    bool: lambda v: isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _error(loc: tuple[str | int, ...], msg: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("params_file", "{msg}", {"msg": msg}), loc=loc, input=value)


class Entry(_Model):
    """What to trade for one (strategy, symbol, regime), with the evidence and the gate's verdict.

    status "flat" = no position in that regime. source "kept" = carried over from the previous
    current file because the new candidate failed the gate. A candidate is built with the default
    gate (not evaluated); ``research.promotion.decide`` sets it. In a file, an active entry must
    have passed its gate: the live bridge only ever trades gated params.
    """

    strategy: str = Field(json_schema_extra={"enum": list(NAMES)})
    symbol: str = Field(min_length=1)
    regime: Regime
    status: Literal["active", "flat"]
    params: dict[str, ParamValue]
    exit_rules: ExitRulesModel
    in_sample: Metrics
    out_of_sample: Metrics | None
    oos_trades: int = Field(ge=0)
    n_trials: int = Field(ge=0)
    deflated_sharpe: Probability
    pbo: Probability
    stability: Probability
    gate: EntryVerdict = NOT_EVALUATED
    source: Literal["candidate", "kept"] = "candidate"

    @field_validator("strategy")
    @classmethod
    def _registered(cls, v: str) -> str:
        get(v)  # ValueError naming the known strategies, with a "did you mean"
        return v

    @field_validator("symbol")
    @classmethod
    def _legs(cls, v: str, info: ValidationInfo) -> str:
        from .baskets import MULTI_LEG, legs

        if info.data.get("strategy") in MULTI_LEG:
            legs(info.data["strategy"], v)  # "Y/X" for pairs, "A,B,.../BENCH" for rotation
        return v

    @field_validator("params")
    @classmethod
    def _fit_strategy(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "strategy" not in info.data:
            return params  # the strategy is invalid and already reported
        strategy = get(info.data["strategy"])
        hints = typing.get_type_hints(strategy.params)
        errors = []
        for k, v in params.items():
            if k not in hints:
                try:
                    strategy.make_params(**{k: v})  # its message has the "did you mean"
                except (TypeError, ValueError) as exc:
                    errors.append(_error((k,), str(exc), v))
            elif hints[k] in _TYPE_OK and not _TYPE_OK[hints[k]](v):
                errors.append(_error((k,), f"expected {hints[k].__name__}, got {v!r}", v))
        if not errors:
            try:
                strategy.make_params(**params)
            except (TypeError, ValueError) as exc:  # e.g. fast >= slow: names the fields itself
                errors.append(_error((), str(exc), params))
        if errors:
            raise ValidationError.from_exception_data("params", errors)
        return params

    @property
    def key(self) -> Key:
        """(strategy, symbol, regime): unique within a file."""
        return (self.strategy, self.symbol, self.regime)

    def make_params(self) -> Any:
        """The strategy's params dataclass (defaults for any field the file leaves out)."""
        return get(self.strategy).make_params(**self.params)


class ParamsFile(_Model):
    """One params file: provenance, gate thresholds, verdict and entries (schema version 1)."""

    schema_version: Literal[1]
    created_at: AwareDatetime
    code_version: str
    run: RunInfo
    data: DataWindow
    selection: SelectionInfo
    gate: GateThresholds
    verdict: Verdict
    # what the entries' labels mean; absent (files from before schemes) = trend_vol, default thresholds
    regimes: RegimeDefinition | None = None
    entries: tuple[Entry, ...]

    @field_validator("created_at")
    @classmethod
    def _utc(cls, v: Any) -> Any:
        if v.utcoffset() != timedelta(0):
            raise ValueError("must be in UTC (Z or +00:00)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ParamsFile:
        seen: dict[Key, int] = {}  # several strategies may be active in one (symbol, regime): the live bridge nets them
        errors = []
        scheme = self.regime_params().scheme
        allowed = (*labels(scheme), WARMUP, "all")
        for i, e in enumerate(self.entries):
            if e.regime not in allowed:
                errors.append(_error(("entries", i, "regime"), f"{e.regime!r} is not a label of regime "
                                     f"scheme {scheme!r} (its labels: {', '.join(allowed)})", e.regime))
            if e.status == "active" and not e.gate.passed:
                errors.append(_error(("entries", i, "status"), "active, but its gate did not pass: "
                                     + "; ".join(e.gate.reasons), e.status))
            if e.key in seen:
                errors.append(_error(("entries", i), f"duplicate entry {key_text(e.key)} "
                                     f"(already entries.{seen[e.key]})", list(e.key)))
            seen.setdefault(e.key, i)
        if errors:
            raise ValidationError.from_exception_data("ParamsFile", errors)
        return self

    def regime_params(self) -> RegimeParams:
        """The regime definition the entries' labels mean (trend_vol defaults for older files)."""
        return self.regimes.to_params() if self.regimes is not None else RegimeParams()

    def lookup(self, strategy: str, symbol: str, regime: str) -> Entry | None:
        """The entry for this key, or None (no entry = do not trade)."""
        return next((e for e in self.entries if e.key == (strategy, symbol, regime)), None)

    def sha256(self) -> str:
        """sha256 (hex) of the canonical bytes (``dumps``): the file's identity."""
        return hashlib.sha256(dumps(self)).hexdigest()


# -- reading and serializing ---------------------------------------------------------------------


def _describe(exc: ValidationError) -> list[str]:
    """One line per error: the dotted path of the field, the problem and, for type errors, the value."""
    lines = []
    for e in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if isinstance(got, (str, int, float, bool)) and e["type"] != "params_file" and repr(got) not in msg:
            msg += f" (got {got!r})"
        lines.append(f"{loc}: {msg}")
    return lines


def loads(data: bytes | str, source: str = "<params>") -> ParamsFile:
    """Parse and validate a params file's text; ValueError naming ``source``, each bad field and why."""
    try:
        # decoded here, not by json (which would also take UTF-16 or a BOM that the validator refuses)
        strict_json(data.decode() if isinstance(data, bytes) else data)
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise ValueError(f"{source}: not UTF-8 text (byte {byte:#04x} at offset {exc.start})") from None
    except RecursionError:
        raise ValueError(f"{source}: invalid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    try:
        # strict: a hand-written "10" is not silently taken for 10
        return ParamsFile.model_validate_json(data, strict=True)
    except ValidationError as exc:
        lines = _describe(exc)
        if len(lines) == 1:
            raise ValueError(f"{source}: invalid field {lines[0]}") from None
        raise ValueError(f"{source}: {len(lines)} invalid fields" + "".join(f"\n  {ln}" for ln in lines)) from None


MAX_BYTES = 32 << 20  # a params file of 32 MiB is ~30,000 entries; bigger is not a params file


def load(path: str | Path) -> ParamsFile:
    """Read and validate a params file (FileNotFoundError if absent; ValueError if invalid, not a
    regular file, or larger than MAX_BYTES: a directory or a named pipe is refused, never read)."""
    path = Path(path)
    st = path.stat()  # FileNotFoundError if absent
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, socket or device)"
        raise ValueError(f"{path}: {kind}; a params file is a regular JSON file")
    if st.st_size > MAX_BYTES:
        raise ValueError(f"{path}: {st.st_size:,} bytes, over the {MAX_BYTES:,}-byte limit of a params file")
    return loads(path.read_bytes(), str(path))


def dumps(pf: ParamsFile) -> bytes:
    """Canonical bytes: model field order, indent 2, trailing newline, null (never NaN) when missing
    (a file without a regime definition is written without one: its bytes stay those of before)."""
    return pf.model_dump_json(indent=2, exclude={"regimes"} if pf.regimes is None else None).encode() + b"\n"


# -- schema --------------------------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the params file, generated from the models (``params/schema.json``)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "tradelab-params-v1",
            **ParamsFile.model_json_schema()}


def schema_bytes() -> bytes:
    """The schema file's exact bytes (indent 2, trailing newline)."""
    return (json.dumps(json_schema(), indent=2) + "\n").encode()
