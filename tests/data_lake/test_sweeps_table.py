"""The lake's sweeps table after it grew multi-leg rows: single-symbol sweeps stored before (no legs
columns), pairs and rotation sweeps side by side in one DuckDB view and one read_table."""

from __future__ import annotations

import pandas as pd

from data_lake import connect
from data_lake.tables import read_table
from pipeline.sweep import TABLE, run_sweep
from research.exits import ExitRules
from research.sweep.plan import SweepSpec

SINGLE = SweepSpec(strategy="sma_cross", symbols=("MSFT",), grid=(("fast", (5, 10)), ("slow", (20, 50))),
                   rules=(ExitRules(allow_short=False),))
PAIRS = SweepSpec(strategy="pairs", symbols=("MSFT/IBM",), grid=(("lookback", (30, 60)),), rules=(),
                  max_pvalue=0.05)
ROTATION = SweepSpec(strategy="rotation", symbols=("AAPL,MSFT/IBM",), grid=(("lookback", (5, 10)),), rules=())


def test_a_single_symbol_spec_keeps_its_id_form():
    assert "max_pvalue" not in SINGLE.canonical() and "max_pvalue" in PAIRS.canonical()


def test_old_single_symbol_rows_and_multi_leg_rows_share_the_sweeps_view(sample_lake_rw):
    lake = sample_lake_rw
    single = run_sweep(lake, SINGLE)  # the row shape stored before pairs and rotation were lake jobs
    assert not {"legs", "bench", "n_trials", "coint_pvalue"} & set(single.columns)
    run_sweep(lake, PAIRS)
    run_sweep(lake, ROTATION)
    con = connect(lake)
    got = con.execute("""SELECT strategy, any_value(symbol), any_value(legs), any_value(bench), count(*),
                                count(coint_pvalue), max(n_trials), count(fast), count(lookback), count(stop_loss)
                         FROM sweeps GROUP BY strategy ORDER BY strategy""").fetchall()
    assert got == [("pairs", "MSFT/IBM", "MSFT,IBM", None, 2, 2, 2, 0, 2, 0),
                   ("rotation", "AAPL,MSFT/IBM", "AAPL,MSFT", "IBM", 2, 0, 2, 0, 2, 0),
                   ("sma_cross", "MSFT", None, None, 4, 0, None, 4, 0, 4)]
    # every sweep that trades MSFT, whatever its kind: a single symbol's legs are its symbol
    trading = con.execute("""SELECT DISTINCT strategy FROM sweeps
                             WHERE list_contains(string_split(coalesce(legs, symbol), ','), 'MSFT')
                             ORDER BY strategy""").fetchall()
    assert trading == [("pairs",), ("rotation",), ("sma_cross",)]
    everything = read_table(lake, TABLE)
    assert len(everything) == 8 and everything["legs"].isna().sum() == 4


def test_the_sweep_index_lists_units_and_reads_one_units_rows_with_its_name_as_a_value(tmp_path):
    from data_lake import Lake
    from data_lake.sweep_index import sweep_index, sweep_rows
    from data_lake.tables import write_table

    lake = Lake(tmp_path / "lake")
    assert sweep_index(lake).empty
    rows = pd.DataFrame({"sweep_id": ["00000000000000ab"] * 3, "strategy": "pairs", "symbol": ["KO/PEP", "KO/PEP", "O'X/Y"],
                         "combo": [0, 1, 0], "split": "deploy", "regime": "all", "sharpe": [0.5, 0.7, 0.1],
                         "window_start": pd.Timestamp("2020-01-02", tz="UTC"), "window_end": pd.Timestamp("2021-01-04", tz="UTC")})
    write_table(lake, "sweeps", "00000000000000ab-KO_PEP-0", rows)

    index = sweep_index(lake)
    odd = sweep_rows(lake, "00000000000000ab", "O'X/Y")

    assert sorted(index["symbol"]) == ["KO/PEP", "O'X/Y"] and index.set_index("symbol").loc["KO/PEP", "combos"] == 2
    assert len(odd) == 1 and odd["sharpe"].iloc[0] == 0.1
    assert sweep_rows(lake, "00000000000000ab", "KO/PEP' OR '1'='1").empty
