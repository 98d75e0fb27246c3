"""`tradelab sweep --strategy pairs|rotation` as lake jobs: rows in the sweeps table, --resume, --chunk,
--workers (Dask), --walk-forward and the heatmap pages, as a user runs them."""

from __future__ import annotations

from data_lake import connect
from tests.tradelab.test_cli import run


def test_pairs_sweep_stores_its_rows_and_resumes(sample_lake_rw):
    lake = sample_lake_rw.root
    args = ("sweep", "--strategy", "pairs", "--symbols", "MSFT/IBM,AAPL/MSFT", "--grid", "lookback=30,60",
            "--grid", "entry_z=1.0,1.6", "--chunk", "3", "--min-trades", "1")
    r = run(*args, lake=lake)
    assert r.returncode == 0, r.stderr
    assert "1 of 2 pairs swept x 4 params, 4 rows in the lake's sweeps table; trials counted: 8" in r.stdout
    rows = connect(lake).execute("SELECT symbol, legs, count(*) AS n, count(DISTINCT combo) FROM sweeps "
                                 "GROUP BY ALL").fetchall()
    assert rows == [("MSFT/IBM", "MSFT,IBM", 4, 4)]
    again = run(*args, lake=lake)
    assert again.returncode == 2 and "pass --resume to continue it" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
    resumed = run(*args, "--resume", lake=lake)
    assert resumed.returncode == 0 and "4 rows in the lake's sweeps table" in resumed.stdout, resumed.stderr
    assert connect(lake).execute("SELECT count(*) FROM sweeps").fetchone()[0] == 4  # nothing stored twice


def test_rotation_sweep_on_dask_with_walk_forward_and_heatmaps(sample_lake_rw, tmp_path):
    args = ("sweep", "--strategy", "rotation", "--symbols", "AAPL,MSFT,GOOG/IBM;AAPL,MSFT/IBM", "--grid",
            "lookback=5,10", "--grid", "rebalance=5,10", "--short", "--walk-forward", "4y:2y", "--workers", "1",
            "--min-trades", "1", "--plot", str(tmp_path / "h.html"), "--out", str(tmp_path / "rows.parquet"))
    r = run(*args, lake=sample_lake_rw.root)
    assert r.returncode == 0, r.stderr
    assert "2 of 2 baskets swept x 4 params" in r.stdout and "walk-forward: chosen on each train window" in r.stdout
    for tag in ("AAPL_MSFT_GOOG_IBM", "AAPL_MSFT_IBM"):  # one page per basket, its name made a file name
        assert "plotly" in (tmp_path / f"h-{tag}.html").read_text()[:5_000_000]
    stored = connect(sample_lake_rw.root).execute(
        "SELECT bench, count(DISTINCT split) > 4, bool_and(short) FROM sweeps GROUP BY bench").fetchall()
    assert stored == [("IBM", True, True)]
