"""What the lake's ``sweeps`` table holds, one row per (sweep, symbol), without loading the rows.

A dashboard or a notebook choosing a sweep to look at needs the list of sweeps first; the table
holds hundreds of thousands of rows, so the list is one aggregate query (the only SQL is here, in
``data_lake``), and then the rows of the chosen sweep and unit (a symbol, a pair "Y/X", a basket)
are one filtered query: each file holds one sweep, so DuckDB skips the others on their statistics,
whatever the table keys look like.
"""

from __future__ import annotations

import re

import pandas as pd

from .catalog import query
from .schema import LakeError
from .store import Lake
from .tables import table_files

SWEEPS = "sweeps"
INDEX_COLUMNS = ["sweep_id", "strategy", "symbol", "rows", "combos", "regimes", "splits", "first", "last"]


def sweep_index(lake: Lake | str) -> pd.DataFrame:
    """One row per (sweep_id, strategy, symbol): rows, combinations, regimes and splits (comma lists),
    and the first and last window dates. Empty (with the columns) when the lake holds no sweeps."""
    if not table_files(lake, SWEEPS).get(SWEEPS):
        return pd.DataFrame(columns=INDEX_COLUMNS)
    return query(
        lake,
        """SELECT sweep_id, strategy, symbol, count(*) AS rows, count(DISTINCT combo) AS combos,
                  string_agg(DISTINCT regime, ',' ORDER BY regime) AS regimes,
                  string_agg(DISTINCT split, ',' ORDER BY split) AS splits,
                  min(window_start) AS first, max(window_end) AS last
           FROM sweeps GROUP BY sweep_id, strategy, symbol ORDER BY strategy, sweep_id, symbol""",
    )


def sweep_rows(lake: Lake | str, sweep_id: str, symbol: str) -> pd.DataFrame:
    """Every stored row of one sweep and unit (``symbol`` as in the rows: "AAPL", "KO/PEP"), in
    (combo, split, regime) order; empty when there are none."""
    if not re.fullmatch(r"[0-9a-f]{16}", sweep_id):
        raise LakeError(f"not a sweep id: {sweep_id!r} (16 hex digits)")
    if not table_files(lake, SWEEPS).get(SWEEPS):
        return pd.DataFrame(columns=["sweep_id", "strategy", "symbol"])
    return query(lake, "SELECT * FROM sweeps WHERE sweep_id = ? AND symbol = ? ORDER BY combo, split, regime",
                 [sweep_id, symbol])
