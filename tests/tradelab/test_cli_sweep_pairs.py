"""`tradelab sweep --strategy pairs` on the sample lake: the screen, the top-N table, the rows, and its errors."""

from __future__ import annotations

import pandas as pd

from tests.tradelab.test_cli import run


def test_pairs_sweep_screens_sweeps_and_prints_the_top_table(sample_lake_rw, tmp_path):
    args = ("sweep", "--strategy", "pairs", "--symbols", "MSFT/IBM,AAPL/MSFT", "--grid", "lookback=30,60",
            "--grid", "entry_z=1.0,1.2,1.6", "--grid", "max_hold=40,80", "--fees", "0.001", "--min-trades", "5",
            "--top", "5", "--out", str(tmp_path / "rows.csv"))
    r = run(*args, lake=sample_lake_rw.root)
    assert r.returncode == 0, r.stderr
    assert "Engle-Granger screen" in r.stdout and "AAPL/MSFT" in r.stdout  # screened out, but listed
    assert "trials counted: 24" in r.stdout  # 2 pairs x 12 params: the screened-out pair counts too
    assert "top 5 by sharpe" in r.stdout and "deflated Sharpe" in r.stdout
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert set(rows["symbol"]) == {"MSFT/IBM"} and len(rows) == 12  # MSFT/IBM passes p <= 0.05 on the sample
    for col in ("lookback", "entry_z", "max_hold", "total_return", "sharpe", "max_drawdown", "trades"):
        assert col in rows.columns
    assert (rows["trades"] > 0).all()


def test_pairs_sweep_refuses_bad_pairs_and_options_in_one_line(sample_lake_rw):
    base = ("sweep", "--strategy", "pairs", "--grid", "lookback=30")
    for extra, message in [(("--symbols", "MSFT-IBM"), "--symbols 'MSFT-IBM': a pair is Y/X"),
                           (("--symbols", "MSFT/IBM,AAPL"), "--symbols 'AAPL': a pair is Y/X"),
                           (("--symbols", "MSFT/IBM/AAPL"), "'MSFT/IBM/AAPL': a pair is Y/X"),
                           (("--symbols", "MSFT/MSFT"), "two different symbols"),
                           (("--symbols", "MSFT/I$M"), "invalid symbol 'I$M'"),
                           (("--symbols", "MSFT/ZZZ"), "pair MSFT/ZZZ: 0 common 1Day bars"),
                           (("--symbols", "MSFT/IBM", "--benchmark", "SPY"), "--benchmark is not supported for --strategy pairs without --by-regime"),
                           (("--symbols", "MSFT/IBM", "--chunk", "0"), "--chunk 0: must be >= 1"),
                           (("--symbols", "MSFT/IBM", "--stop-loss", "0.02"), "--grid exit_z, stop_z, max_hold"),
                           (("--symbols", "MSFT/IBM", "--max-pvalue", "0"), "--max-pvalue 0.0: expected a p-value"),
                           (("--symbols", "MSFT/IBM", "--grid", "lookbak=30"), "did you mean 'lookback'")]:
        r = run(*base, *extra, lake=sample_lake_rw.root)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
