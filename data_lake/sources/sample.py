"""The real daily bars that ``bokeh_sampledata`` ships (Quandl WIKI, public domain, 2000-2013).

Open, high, low, close and volume are unadjusted in the source; ``adj_close`` is split- and
dividend-adjusted. ``adjustment="all"`` (the default, since backtests must not see split jumps)
scales open/high/low/close by adj_close / close and volume by the inverse; ``"raw"`` keeps the
printed prices.
"""

from __future__ import annotations

import pandas as pd

from ..calendar import session_stamp
from ..schema import Adjustment, BarMeta, Feed, LakeError

SYMBOLS = ("AAPL", "IBM", "MSFT", "GOOG", "FB")
SOURCE = "bokeh_sampledata"


def sample_bars(symbol: str, adjustment: Adjustment = Adjustment.ALL) -> pd.DataFrame:
    """Daily bars of one sample symbol as a normalized frame (1Day stamps, UTC)."""
    from bokeh_sampledata.stocks import data

    if symbol not in SYMBOLS:
        raise LakeError(f"{symbol} is not in the sample data ({', '.join(SYMBOLS)})")
    d = data[data["ticker"] == symbol].sort_values("date")
    factor = 1.0
    if adjustment == Adjustment.ALL:
        factor = (d["adj_close"] / d["close"]).to_numpy()
    elif adjustment != Adjustment.RAW:
        raise LakeError("the sample data supports adjustment raw or all")
    out = pd.DataFrame({"ts": session_stamp(d["date"])})
    for c in ("open", "high", "low", "close"):
        out[c] = d[c].to_numpy() * factor
    out["volume"] = d["volume"].to_numpy() / factor
    return out


def sample_meta(adjustment: Adjustment = Adjustment.ALL) -> BarMeta:
    """Provenance of the sample bars."""
    return BarMeta(source=SOURCE, feed=Feed.SAMPLE, adjustment=adjustment)
