"""The DuckDB catalog: views over the lake's Parquet files, the only SQL in the project.

``connect(lake)`` opens an in-memory DuckDB database whose views read the files listed in the
lake's manifest at that moment: a snapshot (see manifest.py), so a query sees the lake before or
after a write, never a mix, and no catalog file can go stale or be locked by another process.
Reconnect (or call ``connect`` again) to see later writes. Views:

* ``bars``: symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count, source,
  feed, adjustment, ingested_at, year
* ``quarantine``: the rows refused by ``--quarantine`` ingests, with row and reason
* one view per derived table (tables.py), e.g. ``regimes``: the union of its keys' files
"""

from __future__ import annotations

import duckdb
import pandas as pd

from .schema import LakeError
from .store import Lake

_BARS_EMPTY = """
    SELECT NULL::VARCHAR AS symbol, NULL::VARCHAR AS timeframe, NULL::TIMESTAMPTZ AS ts,
           NULL::DOUBLE AS open, NULL::DOUBLE AS high, NULL::DOUBLE AS low, NULL::DOUBLE AS close,
           NULL::DOUBLE AS volume, NULL::DOUBLE AS vwap, NULL::BIGINT AS trade_count,
           NULL::VARCHAR AS source, NULL::VARCHAR AS feed, NULL::VARCHAR AS adjustment,
           NULL::TIMESTAMPTZ AS ingested_at, NULL::INTEGER AS year
    WHERE false
"""
_QUARANTINE_EMPTY = """
    SELECT NULL::VARCHAR AS symbol, NULL::VARCHAR AS timeframe, NULL::BIGINT AS row,
           NULL::VARCHAR AS reason, NULL::TIMESTAMPTZ AS ts, NULL::DOUBLE AS open,
           NULL::DOUBLE AS high, NULL::DOUBLE AS low, NULL::DOUBLE AS close, NULL::DOUBLE AS volume,
           NULL::VARCHAR AS source, NULL::VARCHAR AS feed, NULL::TIMESTAMPTZ AS quarantined_at
    WHERE false
"""


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(lake: Lake | str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's views registered (UTC session time zone)."""
    lake = lake if isinstance(lake, Lake) else Lake(lake)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    manifest = lake.manifest()  # one manifest read: a consistent snapshot
    files = [str(path) for *_, path in lake.files(manifest=manifest)]
    if files:
        listing = "[" + ", ".join(_sql_str(f) for f in files) + "]"
        con.execute(
            f"""CREATE VIEW bars AS
                SELECT symbol, timeframe, ts, open, high, low, close, volume, vwap, trade_count,
                       source, feed, adjustment, ingested_at, year
                FROM read_parquet({listing}, hive_partitioning = true,
                     hive_types = {{'timeframe': VARCHAR, 'symbol': VARCHAR, 'year': INTEGER}})"""
        )
    else:
        con.execute(f"CREATE VIEW bars AS {_BARS_EMPTY}")
    if any(lake.quarantine_dir.glob("timeframe=*/symbol=*/*.parquet")):
        glob = _sql_str(str(lake.quarantine_dir / "timeframe=*" / "symbol=*" / "*.parquet"))
        con.execute(
            f"""CREATE VIEW quarantine AS
                SELECT symbol, timeframe, row, reason, ts, open, high, low, close, volume,
                       source, feed, quarantined_at
                FROM read_parquet({glob}, hive_partitioning = true,
                     hive_types = {{'timeframe': VARCHAR, 'symbol': VARCHAR}})"""
        )
    else:
        con.execute(f"CREATE VIEW quarantine AS {_QUARANTINE_EMPTY}")
    for name, keys in sorted(manifest.tables.items()):  # names are lowercase identifiers (tables.py)
        listing = "[" + ", ".join(_sql_str(str(lake.root / rel)) for _, rel in sorted(keys.items())) + "]"
        view = '"' + name.replace('"', '""') + '"'
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({listing}, "
                    "union_by_name = true, hive_partitioning = false)")
    return con


def query(lake: Lake | str, sql: str, params: list | None = None) -> pd.DataFrame:
    """Run one read-only SQL statement against the lake's views and return the result as a DataFrame.

    Anything else (COPY ... TO, ATTACH, EXPORT, several statements) is refused: a query must not
    put files into the lake behind the manifest's back. Once the views exist the connection is
    locked down (``_lock_down``): the statement reads the lake's files and nothing else on the machine
    or the network, and cannot undo that. ``params``: values for the statement's ``?`` placeholders
    (a name a user typed goes in as a value, never spliced into the SQL).
    """
    con = connect(lake)
    try:
        _lock_down(con, lake if isinstance(lake, Lake) else Lake(lake))
        kinds = [s.type for s in con.extract_statements(sql)]
        if kinds != [duckdb.StatementType.SELECT]:
            got = ", ".join(k.name for k in kinds) or "no statement"
            raise LakeError(f"query: expected one SELECT (DESCRIBE, SHOW and SUMMARIZE work too), got {got}")
        return con.execute(sql, params).df() if params else con.execute(sql).df()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise LakeError(f"query failed: {first}") from None
    finally:
        con.close()


def _lock_down(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """No file outside the lake, no URL, no extension installed or loaded, no setting changed after."""
    con.execute(f"SET allowed_directories = [{_sql_str(str(lake.root) + '/')}]")
    con.execute("SET enable_external_access = false")  # read_csv('/etc/passwd'), https://..., COPY, ATTACH
    con.execute("SET autoinstall_known_extensions = false")  # a URL would fetch httpfs into ~/.duckdb
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def info(lake: Lake | str) -> pd.DataFrame:
    """One row per (symbol, timeframe): first and last bar, rows, partitions, sources, feeds."""
    return query(
        lake,
        """SELECT symbol, timeframe, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS rows,
                  count(DISTINCT year) AS years,
                  string_agg(DISTINCT source, ',' ORDER BY source) AS sources,
                  string_agg(DISTINCT feed, ',' ORDER BY feed) AS feeds,
                  string_agg(DISTINCT adjustment, ',' ORDER BY adjustment) AS adjustment,
                  max(ingested_at) AS last_ingest
           FROM bars GROUP BY symbol, timeframe ORDER BY symbol, timeframe""",
    )
