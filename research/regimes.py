"""Market regimes: one label per NYSE session, known before that session opens.

Definition (all measures on a benchmark's DAILY closes; the row of session d uses only the bars
dated strictly before d, i.e. the measures at the close of the last bar before d):

* ``slope`` = (SMA(trend_window)[t] / SMA(trend_window)[t - slope_bars] - 1) / slope_bars, the
  per-bar relative slope of the moving average.
* ``er`` = Kaufman's efficiency ratio over ``er_window`` bars: net move / path length.
* trend = ``up`` if slope > +slope_min and er >= er_min, ``down`` if slope < -slope_min and
  er >= er_min, else ``range``.
* ``rv`` = std (ddof=1) of the last ``vol_window`` daily log returns x sqrt(periods_per_year).
* ``rv_pct`` = rank of rv among its own previous ``vol_history`` values (not itself), ties half.
* vol = ``low`` if rv_pct < low_pct, ``normal`` if < high_pct, ``high`` if < extreme_pct, else
  ``extreme``.
* label, by the params' ``scheme``: ``trend`` (``up`` / ``down`` / ``range``), ``vol`` (``low`` /
  ``normal`` / ``high`` / ``extreme``) or ``trend_vol`` (f"{trend}_{vol}", e.g. ``up_normal``; the
  only scheme before schemes existed). A component whose measures do not exist yet is ``warmup``,
  and so is the label while a component the scheme uses is: warm-up sessions are kept, labelled
  ``warmup`` (a ``trend`` label needs only the trend's bars, so it starts ~200 sessions earlier).
  Fewer labels leave more trades per (symbol, regime) cell to choose from: see ``DEFAULT_SCHEME``.

Rows cover every NYSE session from the first bar's date to the session after the last bar (that
last row is the one a live runner needs before the open). A session the benchmark has no bar for
(a gap) still gets a row, from the last bar before it. Open, high and low are accepted for the
signature's sake (an ADX trend would use them); this definition reads closes only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from data_lake.calendar import day_index, nyse
from data_lake.store import Lake
from data_lake.tables import read_table, write_table

from .kernels.indicators import rolling_mean_nb
from .kernels.regimes import (
    TrendCode,
    VolCode,
    efficiency_ratio_nb,
    realized_vol_nb,
    relative_slope_nb,
    trailing_percentile_nb,
    trend_codes_nb,
    vol_codes_nb,
)

DEFINITION = "regimes/v1"  # part of params_hash: bump when the definition above changes
WARMUP = "warmup"
UNKNOWN = "unknown"  # label_bars: a bar whose session the regimes do not cover
TRENDS = ("up", "down", "range")
VOLS = ("low", "normal", "high", "extreme")
LABELS = tuple(f"{t}_{v}" for t in TRENDS for v in VOLS)  # the trend_vol scheme's
SCHEMES = ("trend", "vol", "trend_vol")
#: The nightly's scheme per timeframe when none is given (evidence: bench/regime_schemes.py, README).
DEFAULT_SCHEME = {"1Day": "trend"}
INTRADAY_SCHEME = "trend_vol"
COLUMNS = ("session", "trend", "vol", "label", "slope", "er", "rv", "rv_pct")
TABLE = "regimes"

_TREND_NAMES = {TrendCode.WARMUP: WARMUP, TrendCode.RANGE: "range", TrendCode.UP: "up",
                TrendCode.DOWN: "down"}
_VOL_NAMES = {VolCode.WARMUP: WARMUP, VolCode.LOW: "low", VolCode.NORMAL: "normal",
              VolCode.HIGH: "high", VolCode.EXTREME: "extreme"}


@dataclass(frozen=True, slots=True)
class RegimeParams:
    """Windows (in daily bars) and thresholds of the regime definition (module docstring)."""

    trend_window: int = 50
    slope_bars: int = 10
    slope_min: float = 0.0005  # per bar: 0.05 %/day of the SMA, about 13 %/year
    er_window: int = 20
    er_min: float = 0.25  # a random walk's 20-bar ER averages about 0.18
    vol_window: int = 20
    vol_history: int = 252
    low_pct: float = 0.25
    high_pct: float = 0.75
    extreme_pct: float = 0.95
    periods_per_year: float = 252.0
    scheme: str = "trend_vol"  # which labels: SCHEMES

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"regime scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        for name in ("slope_min", "er_min", "low_pct", "high_pct", "extreme_pct", "periods_per_year"):
            if not math.isfinite(getattr(self, name)):  # NaN passes every comparison below unnoticed
                raise ValueError(f"regime {name} must be a finite number, got {getattr(self, name)}")
        for name in ("trend_window", "slope_bars", "er_window", "vol_window", "vol_history"):
            if getattr(self, name) > 100_000:
                raise ValueError(f"regime {name} must be at most 100000 sessions, got {getattr(self, name)}")
        for name in ("trend_window", "slope_bars", "er_window", "vol_history"):
            if getattr(self, name) < 1:
                raise ValueError(f"regime {name} must be >= 1, got {getattr(self, name)}")
        if self.vol_window < 2:
            raise ValueError(f"regime vol_window must be >= 2 (a std needs 2 returns), got {self.vol_window}")
        if self.slope_min < 0 or not 0 <= self.er_min <= 1:
            raise ValueError(
                f"regime needs slope_min >= 0 and 0 <= er_min <= 1, got {self.slope_min}, {self.er_min}"
            )
        if not 0 < self.low_pct < self.high_pct < self.extreme_pct <= 1:
            raise ValueError(
                f"regime needs 0 < low_pct < high_pct < extreme_pct <= 1, "
                f"got {self.low_pct}, {self.high_pct}, {self.extreme_pct}"
            )
        if self.periods_per_year <= 0:
            raise ValueError(f"regime periods_per_year must be > 0, got {self.periods_per_year}")

    @property
    def warmup_bars(self) -> int:
        """Bars needed before the first full label (that of the session after this many bars)."""
        trend = max(self.trend_window + self.slope_bars, self.er_window + 1)
        vol = self.vol_window + self.vol_history + 1
        return {"trend": trend, "vol": vol}.get(self.scheme, max(trend, vol))

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels of this scheme (besides ``warmup``)."""
        return labels(self.scheme)


def labels(scheme: str) -> tuple[str, ...]:
    """The labels a scheme gives (besides ``warmup``); ValueError naming an unknown scheme."""
    if scheme not in SCHEMES:
        raise ValueError(f"regime scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    return {"trend": TRENDS, "vol": VOLS, "trend_vol": LABELS}[scheme]


def default_scheme(timeframe: str) -> str:
    """The nightly's regime scheme for params of this timeframe (``DEFAULT_SCHEME``; intraday: finer)."""
    return DEFAULT_SCHEME.get(timeframe, INTRADAY_SCHEME)


def params_hash(p: RegimeParams) -> str:
    """A stable 16-hex-digit hash of the params (scheme included) and the definition version."""
    d = asdict(p)
    if d["scheme"] == "trend_vol":  # hashed as before schemes existed: tables stored then stay valid
        del d["scheme"]
    body = json.dumps({"definition": DEFINITION, **d}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def measures_at_close(close: np.ndarray, p: RegimeParams) -> dict[str, np.ndarray]:
    """slope, er, rv, rv_pct and the trend / vol codes at each bar's close (causal)."""
    close = np.ascontiguousarray(close, dtype=np.float64)
    slope = relative_slope_nb(rolling_mean_nb(close, p.trend_window), p.slope_bars)
    er = efficiency_ratio_nb(close, p.er_window)
    rv = realized_vol_nb(close, p.vol_window, float(p.periods_per_year))
    rv_pct = trailing_percentile_nb(rv, p.vol_history)
    return {
        "slope": slope, "er": er, "rv": rv, "rv_pct": rv_pct,
        "trend": trend_codes_nb(slope, er, p.slope_min, p.er_min),
        "vol": vol_codes_nb(rv_pct, p.low_pct, p.high_pct, p.extreme_pct),
    }


def regimes_from_daily(ts_us: np.ndarray, open: np.ndarray, high: np.ndarray, low: np.ndarray,
                       close: np.ndarray, params: RegimeParams = RegimeParams()) -> pd.DataFrame:
    """One row per session from the first bar's date to the session after the last bar.

    ``ts_us`` are 1Day stamps (int64 UTC microseconds, as ``Lake.load_arrays`` returns), oldest
    first. The row of session d holds the measures at the close of the last bar dated before d.
    """
    ts_us = np.asarray(ts_us, dtype=np.int64)
    n = ts_us.shape[0]
    if not (len(open) == len(high) == len(low) == len(close) == n):
        raise ValueError("ts, open, high, low and close must have the same length")
    if n == 0:
        return _empty_frame()
    cal = nyse()
    day = day_index(ts_us, cal)
    if (day < 0).any():
        raise ValueError("regimes need 1Day bars stamped at their NYSE session (00:00 New York)")
    if (np.diff(day) <= 0).any():
        raise ValueError("daily bars must be sorted by date without repeats")
    if day[-1] + 1 >= len(cal):
        raise ValueError("the last bar is the calendar's last session: no next session to label")
    m = measures_at_close(close, params)
    sessions = np.arange(day[0], day[-1] + 2)
    # source bar of each session: the last bar dated strictly before it (-1 = none)
    src = np.searchsorted(day, sessions, side="left") - 1
    frame = pd.DataFrame({"session": cal.dates[sessions]})
    trend = _take(m["trend"].astype(np.int64), src, TrendCode.WARMUP)
    vol = _take(m["vol"].astype(np.int64), src, VolCode.WARMUP)
    frame["trend"] = _names(trend, _TREND_NAMES)
    frame["vol"] = _names(vol, _VOL_NAMES)
    frame["label"] = pd.Series(_labels(frame, trend, vol, params.scheme), dtype=str)
    for c in ("slope", "er", "rv", "rv_pct"):
        frame[c] = _take(m[c], src, np.nan)
    return frame


def next_session(regimes: pd.DataFrame) -> pd.Series:
    """The row of the session after the last bar: the regime a live runner trades in today."""
    return regimes.iloc[-1]


def label_bars(session_index: np.ndarray, regimes: pd.DataFrame) -> np.ndarray:
    """The label of each intraday bar's session (``Bars.session``: NYSE calendar indices).

    Bars of sessions the regimes do not cover get ``"unknown"``.
    """
    session_index = np.asarray(session_index, dtype=np.int64)
    labels = regimes["label"].to_numpy(dtype=object)
    out = np.full(session_index.shape[0], UNKNOWN, dtype=object)
    if not len(regimes):
        return out
    dates = pd.DatetimeIndex(regimes["session"]).as_unit("us")
    cal = nyse().dates
    idx = cal.searchsorted(dates)
    if (idx >= len(cal)).any() or not (cal[np.minimum(idx, len(cal) - 1)] == dates).all():
        raise ValueError("regimes hold a session that is not an NYSE session")
    order = np.argsort(idx, kind="stable")
    idx, labels = idx[order], labels[order]
    pos = np.clip(np.searchsorted(idx, session_index), 0, len(idx) - 1)
    hit = idx[pos] == session_index
    out[hit] = labels[pos[hit]]
    return out


def regimes_table(regimes: pd.DataFrame, benchmark: str, params: RegimeParams,
                  computed_at: pd.Timestamp | None = None) -> pa.Table:
    """The ``regimes`` lake table of one benchmark (session as a DATE, computed_at in UTC)."""
    n = len(regimes)
    at = (pd.Timestamp.now(tz="UTC") if computed_at is None else computed_at).as_unit("us")
    sessions = pd.DatetimeIndex(regimes["session"]).to_numpy(dtype="datetime64[D]")
    return pa.table({
        "benchmark": pa.array([benchmark] * n, pa.string()),
        "session": pa.array(sessions, pa.date32()),
        **{c: pa.array(regimes[c].to_numpy(dtype=object), pa.string()) for c in ("trend", "vol", "label")},
        **{c: pa.array(regimes[c].to_numpy(dtype=np.float64)) for c in ("slope", "er", "rv", "rv_pct")},
        "params_hash": pa.array([params_hash(params)] * n, pa.string()),
        "computed_at": pa.array([at.value // 1000] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    })


def save_regimes(lake: Lake, benchmark: str, regimes: pd.DataFrame, params: RegimeParams) -> str:
    """Write one benchmark's regimes to the lake table ``regimes``; return the file's relative path."""
    return write_table(lake, TABLE, benchmark, regimes_table(regimes, benchmark, params))


def load_regimes(lake: Lake, benchmark: str, expect_hash: str | None = None) -> pd.DataFrame:
    """One benchmark's regimes from the lake, session as naive datetime64 like ``regimes_from_daily``.

    ``expect_hash``: the ``params_hash`` the labels must have been computed with (ValueError naming
    both otherwise), so labels of another scheme or thresholds are never read as these.
    """
    frame = read_table(lake, TABLE, benchmark)
    stored = sorted(set(frame["params_hash"].astype(str))) if "params_hash" in frame else []
    if expect_hash is not None and len(frame) and stored != [expect_hash]:
        raise ValueError(f"the lake's regimes of {benchmark} were computed with regime params "
                         f"{', '.join(stored)}, not {expect_hash}: recompute them with the same definition "
                         "(scheme and thresholds)")
    frame["session"] = pd.DatetimeIndex(pd.to_datetime(frame["session"])).as_unit("us")
    return frame


def _labels(frame: pd.DataFrame, trend: np.ndarray, vol: np.ndarray, scheme: str) -> np.ndarray:
    """The scheme's label per row: ``warmup`` while a component it uses is."""
    t, v = frame["trend"].to_numpy(dtype=object), frame["vol"].to_numpy(dtype=object)
    if scheme == "trend":
        return t
    if scheme == "vol":
        return v
    ready = (trend != TrendCode.WARMUP) & (vol != VolCode.WARMUP)
    return np.where(ready, t + "_" + v, WARMUP)


def _take(values: np.ndarray, src: np.ndarray, fill: object) -> np.ndarray:
    out = values[np.maximum(src, 0)].copy()
    out[src < 0] = fill
    return out


def _names(codes: np.ndarray, names: dict[int, str]) -> np.ndarray:
    lookup = np.array([names[k] for k in sorted(names)], dtype=object)
    return lookup[codes - min(names)]


def _empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=str if c in ("trend", "vol", "label") else np.float64)
                          for c in COLUMNS})
    frame["session"] = pd.DatetimeIndex([]).as_unit("us")
    return frame
