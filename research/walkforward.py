"""Walk-forward analysis: train/test splits over a bar series, the in-sample choice, the stitched
out-of-sample record.

Split definition (``splits``):

* A spec ``"TRAIN:TEST"`` gives two lengths, each ``<n><unit>``: ``y`` years, ``m`` months (not
  minutes), ``w`` weeks, ``d`` calendar days, or ``b`` bars. Both sides are bars or both are
  calendar lengths. ``step`` (how far each split moves on) defaults to the test length.
* Bar lengths count rows: split k has test rows [train + k*step, train + k*step + test).
* Calendar lengths are pandas ``DateOffset``s (calendar months and years) measured from the
  midnight, in ``tz`` (New York by default), of the first bar's date; boundary j sits at
  ``t0 + offset(j)``, computed from t0 each time (no month-end drift from repeated adding), and
  a bar belongs to the window whose [start, end) holds its local wall time.
* Rolling: train is [test start - train length, test start). Anchored: train is [0, test start).
  Test follows train immediately (b == c), and test windows tile without overlap when
  step == test (gaps between them when step > test; step < test is refused).
* The last partial test window is dropped: a window is kept only when the data reaches its end.
  Calendar data is taken to reach the midnight that starts the first NYSE session after the
  last bar's date (whole days are assumed), so 2022-12-30 data completes a window ending 2023-01-01 (a weekend) or 2023-01-03 (after
  the holiday on the 2nd). Windows in which a data gap leaves train or test without bars are
  skipped; ``Split.index`` numbers the splits returned.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_lake.calendar import NY, nyse

UNITS = {"y": "years", "m": "months", "w": "weeks", "d": "days", "b": "bars"}
OBJECTIVES = ("sharpe", "sortino", "calmar", "total_return", "expectancy")
TRADES = "trades"  # trade-count column read by ``choose`` (as in research.metrics and the sweep)
_SPAN = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Span:
    """A window length: n bars (unit "b") or n calendar units (y, m, w, d)."""

    n: int
    unit: str

    @property
    def is_bars(self) -> bool:
        return self.unit == "b"

    def months_days(self, times: int = 1) -> tuple[int, int]:
        """``times`` of this calendar length as (months, days): a year is 12 months, a week 7 days."""
        return ({"y": 12, "m": 1}.get(self.unit, 0) * self.n * times,
                {"w": 7, "d": 1}.get(self.unit, 0) * self.n * times)

    def __str__(self) -> str:
        return f"{self.n}{self.unit}"


@dataclass(frozen=True, slots=True)
class Split:
    """One walk-forward split: bar index ranges train [a, b) and test [c, d), b == c."""

    index: int
    train: tuple[int, int]
    test: tuple[int, int]

    @property
    def train_slice(self) -> slice:
        return slice(*self.train)

    @property
    def test_slice(self) -> slice:
        return slice(*self.test)


def parse_span(text: str) -> Span:
    """``"6m"`` -> Span(6, "m"); ValueError naming the problem otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"a window length must be a string like '6m', got {text!r}")
    m = _SPAN.match(text)
    if m is None:
        raise ValueError(f"window length {text!r} is not <count><unit>, e.g. '2y', '6m' or '252b'")
    n, unit = int(m.group(1)), m.group(2).lower()
    if unit not in UNITS:
        units = ", ".join(f"{k} ({v})" for k, v in UNITS.items())
        raise ValueError(f"window length {text!r}: unknown unit {m.group(2)!r}; use one of {units}")
    if n <= 0:
        raise ValueError(f"window length {text!r} must be positive")
    return Span(n, unit)


def parse_spec(spec: str) -> tuple[Span, Span]:
    """``"2y:6m"`` -> (train, test) Spans; both bars or both calendar lengths."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"walk-forward spec {spec!r} must be 'TRAIN:TEST', e.g. '2y:6m' or '252b:63b'")
    train, test = (parse_span(part) for part in spec.split(":"))
    if train.is_bars != test.is_bars:
        raise ValueError(f"walk-forward spec {spec!r} mixes bar counts and calendar lengths")
    return train, test


def splits(ts_us: np.ndarray, spec: str | tuple[Span, Span], *, anchored: bool = False,
           step: str | Span | None = None, tz: str = NY) -> list[Split]:
    """Rolling (or anchored) walk-forward splits over sorted bar stamps or session dates.

    ``ts_us``: int64 UTC microseconds, or datetime64 / DatetimeIndex / dates (naive = local dates
    in ``tz``). Definition and the dropped last partial window: see the module docstring.
    """
    train, test = parse_spec(spec) if isinstance(spec, str) else spec
    step = test if step is None else (parse_span(step) if isinstance(step, str) else step)
    if not train.is_bars == test.is_bars == step.is_bars:
        raise ValueError(f"train {train}, test {test} and step {step} must all be bars or all "
                         "calendar lengths")
    if _shorter(step, test):
        raise ValueError(f"step {step} is shorter than test {test}: test windows would overlap")
    local = _local_times(ts_us, tz)
    if train.is_bars:
        out = _bar_splits(len(local), train.n, test.n, step.n, anchored)
    else:
        out = _calendar_splits(local, train, test, step, anchored)
    if not out:
        span = f"{len(local)} bars" + ("" if train.is_bars or not len(local) else
                                       f" ({local[0].date()} to {local[-1].date()})")
        raise ValueError(f"data too short for one {train}:{test} split (a {train} train window, then "
                         f"one whole {test} test window): {span}")
    for prev, cur in zip(out, out[1:]):
        if cur.test[0] < prev.test[1]:
            raise ValueError(f"step {step} is shorter than test {test}: test windows would overlap")
    return out


def _shorter(step: Span, test: Span) -> bool:
    """step < test for sure (a step of 30d against a test of 1m is left to the index check)."""
    if step.is_bars:
        return step.n < test.n
    (sm, sd), (tm, td) = step.months_days(), test.months_days()
    return sm <= tm and sd <= td and (sm, sd) != (tm, td)


def _local_times(ts: np.ndarray, tz: str) -> pd.DatetimeIndex:
    """Naive local wall times of the stamps (int64 = UTC us); sorted check."""
    arr = np.asarray(ts)
    if arr.ndim != 1:
        raise ValueError(f"ts_us must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        idx = pd.to_datetime(arr.astype(np.int64), unit="us", utc=True).tz_convert(tz).tz_localize(None)
    else:
        idx = pd.DatetimeIndex(ts)
        if idx.tz is not None:
            idx = idx.tz_convert(tz).tz_localize(None)
    if len(idx) and not idx.is_monotonic_increasing:
        raise ValueError("ts_us must be sorted ascending")
    return idx.as_unit("us")


def _bar_splits(n: int, train: int, test: int, step: int, anchored: bool) -> list[Split]:
    out = []
    c = train
    while c + test <= n:
        out.append(Split(len(out), (0 if anchored else c - train, c), (c, c + test)))
        c += step
    return out


def _calendar_splits(local: pd.DatetimeIndex, train: Span, test: Span, step: Span,
                     anchored: bool) -> list[Split]:
    if not len(local):
        return []
    t0 = local[0].normalize()
    end = _data_end(local[-1].normalize())
    stamps = local.as_unit("ns").asi8  # Timestamp.value is always ns

    def at(*terms: tuple[int, int]) -> pd.Timestamp:
        # one DateOffset from t0 per boundary: the end of test k is the start of test k+1 exactly
        return t0 + pd.DateOffset(months=sum(t[0] for t in terms), days=sum(t[1] for t in terms))

    def row(when: pd.Timestamp) -> int:
        return int(np.searchsorted(stamps, when.value, side="left"))

    out: list[Split] = []
    for k in itertools.count():  # ends: every step moves on by at least one day
        test_start = at(train.months_days(), step.months_days(k))
        test_end = at(train.months_days(), step.months_days(k), test.months_days())
        if test_end > end:
            break
        a = 0 if anchored else row(at(step.months_days(k)))
        b, d = row(test_start), row(test_end)
        if a < b < d:
            out.append(Split(len(out), (a, b), (b, d)))
    return out


def _data_end(last_day: pd.Timestamp) -> pd.Timestamp:
    """Midnight of the first NYSE session after ``last_day`` (next weekday outside the calendar)."""
    dates = nyse().dates
    i = int(dates.searchsorted(last_day, side="right"))
    if last_day < dates[0] or i >= len(dates):
        return last_day + pd.offsets.BDay(1)
    return dates[i]


def choose(train_metrics: Mapping[str, np.ndarray] | pd.DataFrame, objective: str,
           min_trades: int) -> int | None:
    """Position (0-based) of the combo with the highest in-sample ``objective``.

    ``train_metrics[objective]`` and ``train_metrics["trades"]`` are arrays over combos (a
    DataFrame's columns work; the result is a position, not an index label). Ineligible: fewer
    than ``min_trades`` trades, or a NaN objective (+-inf compare as numbers). Ties go to the
    lowest position; None when nothing is eligible.
    """
    if objective not in OBJECTIVES:
        hint = difflib.get_close_matches(str(objective), OBJECTIVES, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}{extra}")
    for key in (objective, TRADES):
        if key not in train_metrics:
            have = ", ".join(map(str, train_metrics))
            raise ValueError(f"train_metrics has no {key!r} column (has {have})")
    value = np.asarray(train_metrics[objective], dtype=float)
    trades = np.asarray(train_metrics[TRADES], dtype=float)
    if value.shape != trades.shape or value.ndim != 1:
        raise ValueError(f"{objective!r} and {TRADES!r} must be 1-D arrays of one length")
    ok = np.flatnonzero((trades >= min_trades) & ~np.isnan(value))
    if not len(ok):
        return None
    return int(ok[np.argmax(value[ok])])  # argmax takes the first of equal maxima


def stitch(test_returns_per_split: list[np.ndarray]) -> np.ndarray:
    """The out-of-sample record: each split's test-window returns, end to end, as float64."""
    parts = [np.asarray(r, dtype=np.float64) for r in test_returns_per_split]
    for i, r in enumerate(parts):
        if r.ndim != 1:
            raise ValueError(f"split {i}: test returns must be 1-D, got shape {r.shape}")
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class StitchedMetrics:
    """Summary of a stitched out-of-sample series of simple per-bar returns (research.metrics'
    formulas; NaN where a denominator is 0, and everything but n_obs when n_obs == 0)."""

    n_obs: int
    total_return: float  # L_end - 1, L_t = prod(1 + r_s), s <= t
    cagr: float  # (1 + total_return) ** (ppy / n_obs) - 1; NaN if equity went below 0
    sharpe: float  # mean(r) / std(r, ddof=1) * sqrt(ppy); NaN if n < 2
    sortino: float  # mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(ppy); NaN if n < 2
    max_drawdown: float  # min of L_t / max(1, L_s for s <= t) - 1 (<= 0)
    calmar: float  # cagr / |max_drawdown|


def stitched_metrics(test_returns_per_split: list[np.ndarray],
                     periods_per_year: float = 252.0) -> StitchedMetrics:
    """Metrics of the stitched series (definitions on the fields of StitchedMetrics)."""
    r = stitch(test_returns_per_split)
    n = len(r)
    if n == 0:
        nan = float("nan")
        return StitchedMetrics(0, nan, nan, nan, nan, nan, nan)
    nan = float("nan")
    level = np.cumprod(1.0 + r)
    total = float(level[-1] - 1.0)
    cagr = float((1.0 + total) ** (periods_per_year / n) - 1.0) if level[-1] >= 0 else nan
    ann = np.sqrt(periods_per_year)
    std = float(np.std(r, ddof=1)) if n > 1 else 0.0
    down = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    sharpe = float(r.mean() / std * ann) if n > 1 and std > 0 else nan
    sortino = float(r.mean() / down * ann) if n > 1 and down > 0 else nan
    mdd = float(np.min(level / np.maximum.accumulate(np.maximum(level, 1.0)) - 1.0))
    calmar = cagr / abs(mdd) if mdd < 0 else nan
    return StitchedMetrics(n, total, cagr, sharpe, sortino, mdd, calmar)
