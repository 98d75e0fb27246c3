"""tradelab's data lake: bars as Parquet, a DuckDB catalog over them, and the sources that fill it.

Quick use (also in JupyterLab)::

    from data_lake import Lake, connect
    lake = Lake("lake")
    con = connect(lake)
    con.sql("SELECT symbol, count(*) FROM bars WHERE timeframe = '1Day' GROUP BY symbol")
    arrays = lake.load_arrays("AAPL", "1Day")   # numpy, for kernels
"""

from .catalog import connect, info, query
from .quality import DataQualityError, QualityReport, check_bars
from .schema import TIMEFRAMES, Adjustment, BarMeta, Feed, LakeError
from .store import Batch, Lake, WriteResult

__all__ = [
    "TIMEFRAMES", "Adjustment", "BarMeta", "Batch", "DataQualityError", "Feed", "Lake", "LakeError",
    "QualityReport", "WriteResult", "check_bars", "connect", "info", "query",
]
