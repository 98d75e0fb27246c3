"""Bars from a user's CSV or Parquet file, with the column names people actually use.

Recognized (any case, spaces/underscores ignored): Date / Datetime / Timestamp / Time / ts,
Open, High, Low, Close, Adj Close, Volume, VWAP, Trade Count / Trades. Values that do not parse
become NaN (or NaT) so that the quality gate names the row, rather than failing the whole read.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import stamps
from ..calendar import session_stamp
from ..schema import TIMEFRAMES, Adjustment, BarMeta, Feed, LakeError

_ALIASES = {
    "ts": ("ts", "t", "date", "datetime", "timestamp", "time", "dateutc", "datetimeutc"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c", "last"),
    "adj_close": ("adjclose", "adjustedclose"),
    "volume": ("volume", "vol", "v"),
    "vwap": ("vwap", "vw"),
    "trade_count": ("tradecount", "trades", "n", "numtrades"),
}


def _key(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def map_columns(columns: list[object]) -> dict[str, object]:
    """Map the lake's column names to the file's, raising LakeError for missing or ambiguous ones."""
    by_key: dict[str, list[object]] = {}
    names = {str(c) for c in columns}
    for col in columns:
        # pandas renames a repeated header "Open" to "Open.1": the same column twice, so ambiguous
        base = re.sub(r"\.\d+$", "", str(col))
        by_key.setdefault(_key(base if base in names else col), []).append(col)
    out: dict[str, object] = {}
    for target, aliases in _ALIASES.items():
        hits = [c for a in aliases for c in by_key.get(a, [])]
        if len(hits) > 1:
            raise LakeError(f"ambiguous columns for {target}: {', '.join(map(str, hits))}")
        if hits:
            out[target] = hits[0]
    missing = [c for c in ("ts", "open", "high", "low", "close", "volume") if c not in out]
    if missing:
        raise LakeError(
            f"file has no column for {', '.join(missing)} (found: {', '.join(map(str, columns))})"
        )
    return out


def read_table_file(path: Path) -> pd.DataFrame:
    """Read a .csv (or .csv.gz) or .parquet file as raw strings/values, with clear errors."""
    if not path.exists():
        raise LakeError(f"no such file: {path}")
    if not path.is_file():  # a directory, or a named pipe that would block the read forever
        raise LakeError(f"{path}: not a regular file (a directory, pipe or device); give a .csv or .parquet file")
    name = path.name.lower()
    try:
        if name.endswith(".parquet") or name.endswith(".pq"):
            raw = pd.read_parquet(path)
            if isinstance(raw.index, pd.DatetimeIndex):
                raw = raw.reset_index()
            return raw
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except UnicodeDecodeError as exc:  # e.g. a Latin-1 export from a spreadsheet
        raise LakeError(f"cannot read {path.name}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
                        "save it as UTF-8") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise LakeError(f"cannot read {path.name}: {str(exc).splitlines()[0]}") from None
    raise LakeError(f"unsupported file type {path.suffix!r}: use .csv or .parquet")


def _parse_ts(raw: pd.Series, timeframe: str, tz: str | None, date_format: str | None = None) -> pd.Series:
    daily = TIMEFRAMES[timeframe] == 0
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = pd.to_datetime(raw)
        if daily:
            return pd.Series(session_stamp(pd.DatetimeIndex(stamps.daily_from_datetimes(ts))), index=raw.index)
    else:
        try:
            text = raw.astype(str).str.strip()
        except UnicodeDecodeError:
            raise LakeError(f"timestamp column {raw.name!r} holds bytes that are not text") from None
        text = text.where(text != "", None)
        day_first = stamps.date_order(text, date_format)
        if daily:
            dates = stamps.daily_from_text(text, tz, date_format, day_first)
            return pd.Series(session_stamp(pd.DatetimeIndex(dates)), index=raw.index)
        try:
            ts = stamps.to_datetime(text, date_format, day_first)
        except ValueError:  # mixed offsets (a file spanning a DST change): parse each to UTC
            ts = _mixed_offsets(text, date_format, day_first)
    if getattr(ts.dt, "tz", None) is None:
        if not tz:
            raise LakeError("timestamps have no time zone: pass --tz (e.g. --tz America/New_York)")
        try:
            ts = ts.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        except Exception as exc:  # zoneinfo raises several types for a bad name
            raise LakeError(f"unknown time zone {tz!r}: {exc}") from None
    return ts.dt.tz_convert("UTC").dt.as_unit("us")


_OFFSET = r"\d:\d\d(?::\d\d(?:\.\d*)?)?\s*(?:[zZ]|UTC|GMT|[+-]\d\d(?::?\d\d)?)$"


def _mixed_offsets(text: pd.Series, date_format: str | None, day_first: bool) -> pd.Series:
    """Stamps with different UTC offsets, in UTC; a file mixing stamps with and without one is refused."""
    ts = stamps.to_datetime(text, date_format, day_first, utc=True)
    aware = text.str.contains(_OFFSET, na=False).to_numpy()
    naive = ~aware & ts.notna().to_numpy()
    if aware.any() and naive.any():  # utc=True would silently read the naive ones as UTC
        raise LakeError(
            f"timestamps mix UTC offsets and none (row {np.flatnonzero(aware)[0] + 1} has one, "
            f"row {np.flatnonzero(naive)[0] + 1} has none): give every timestamp an offset, or none and --tz"
        )
    return ts


def file_bars(path: str | Path, timeframe: str, *, tz: str | None = None,
              adjustment: Adjustment = Adjustment.RAW, date_format: str | None = None) -> pd.DataFrame:
    """Read a user's bar file into a normalized frame (rows in file order, unchecked).

    Timestamps are read by the rules of ``stamps``: the date order from the whole column
    (``date_format`` when it cannot tell), and one explicit rule for the session of a 1Day stamp.
    """
    path = Path(path)
    raw = read_table_file(path)
    if raw.empty:
        raise LakeError(f"{path.name} holds no rows")
    cols = map_columns(list(raw.columns))
    num = {k: pd.to_numeric(raw[v], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
           for k, v in cols.items() if k != "ts"}
    factor = 1.0
    if adjustment == Adjustment.ALL:
        if "adj_close" not in num:
            raise LakeError("--adjustment all needs an 'Adj Close' column")
        with np.errstate(all="ignore"):  # a zero or huge price gives inf / NaN: the gate names the row
            factor = num["adj_close"] / num["close"]
    elif adjustment != Adjustment.RAW:
        raise LakeError("files support --adjustment raw or all")
    out = pd.DataFrame({"ts": _parse_ts(raw[cols["ts"]], timeframe, tz, date_format).to_numpy()})
    with np.errstate(all="ignore"):
        for c in ("open", "high", "low", "close"):
            out[c] = num[c] * factor
        out["volume"] = num["volume"] / factor
        out["vwap"] = num.get("vwap", np.full(len(out), np.nan)) * factor
    out["trade_count"] = num.get("trade_count", np.full(len(out), np.nan))
    return out


def file_meta(path: str | Path, adjustment: Adjustment = Adjustment.RAW) -> BarMeta:
    """Provenance of bars read from a file: the file's name is the source."""
    return BarMeta(source=f"file:{Path(path).name}", feed=Feed.CSV, adjustment=adjustment)
