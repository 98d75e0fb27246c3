"""The bar schema of the lake: timeframes, feeds, adjustments, the Parquet layout and its errors.

Conventions (the same for every source, so that bars from Alpaca, a CSV file or the synthetic
generator line up):

* ``ts`` is the bar's *start*, in UTC, microsecond precision (Alpaca's convention).
* A ``1Day`` bar is stamped at 00:00 America/New_York of its session date, as Alpaca does.
* Intraday bars cover the regular NYSE session only (09:30-16:00 ET, 13:00 on half days).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

#: The timeframes the lake stores, with their length in minutes (0 = one session).
TIMEFRAMES: dict[str, int] = {"1Min": 1, "5Min": 5, "15Min": 15, "1Hour": 60, "1Day": 0}
INTRADAY = tuple(tf for tf, m in TIMEFRAMES.items() if m > 0)

PRICE_COLUMNS = ("open", "high", "low", "close")
BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "vwap", "trade_count")
META_COLUMNS = ("source", "feed", "adjustment", "ingested_at")

#: What one Parquet file under ``bars/timeframe=../symbol=../year=..`` holds. ``symbol``,
#: ``timeframe`` and ``year`` come from the folder names (hive partitioning).
FILE_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("vwap", pa.float64()),
        pa.field("trade_count", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("feed", pa.string(), nullable=False),
        pa.field("adjustment", pa.string(), nullable=False),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


class Feed(StrEnum):
    """Where the prints behind a bar came from."""

    IEX = "iex"
    SIP = "sip"
    SAMPLE = "sample"
    SYNTHETIC = "synthetic"
    CSV = "csv"


class Adjustment(StrEnum):
    """Corporate-action adjustment of the prices (Alpaca's names)."""

    RAW = "raw"
    SPLIT = "split"
    DIVIDEND = "dividend"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class BarMeta:
    """Provenance written with every partition: who produced the bars and how."""

    source: str
    feed: Feed
    adjustment: Adjustment = Adjustment.RAW


class LakeError(Exception):
    """A user-facing problem with the lake or its input; the message is one clear line."""


_SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,14}$")


def check_symbol(symbol: str) -> str:
    """Return the symbol upper-cased, or raise LakeError when it cannot be a ticker."""
    sym = symbol.strip().upper()
    if not _SYMBOL_RE.match(sym):
        raise LakeError(f"invalid symbol {symbol!r}: expected a ticker such as AAPL or BRK.B")
    return sym


def check_timeframe(timeframe: str) -> str:
    """Return the timeframe if the lake knows it, else raise LakeError listing the valid ones."""
    if timeframe not in TIMEFRAMES:
        raise LakeError(f"unknown timeframe {timeframe!r}: use one of {', '.join(TIMEFRAMES)}")
    return timeframe


def parse_symbols(text: str) -> list[str]:
    """Split a comma-separated symbol list, validating each and dropping repeats."""
    out: list[str] = []
    for part in text.split(","):
        if part.strip():
            sym = check_symbol(part)
            if sym not in out:
                out.append(sym)
    if not out:
        raise LakeError("no symbols given")
    return out
