"""`tradelab sweep --strategy rotation` on the sample lake: baskets, the top-N table, the rows, and its errors."""

from __future__ import annotations

import pandas as pd

from tests.tradelab.test_cli import run


def test_rotation_sweep_sweeps_every_basket_and_prints_the_top_table(sample_lake_rw, tmp_path):
    args = ("sweep", "--strategy", "rotation", "--symbols", "AAPL,MSFT,GOOG/IBM; AAPL,MSFT/IBM", "--grid",
            "lookback=5,10", "--grid", "rebalance=5,10", "--grid", "top_k=1,2", "--short", "--fees", "0.001",
            "--min-trades", "5", "--top", "5", "--out", str(tmp_path / "rows.csv"))
    r = run(*args, lake=sample_lake_rw.root)
    assert r.returncode == 0, r.stderr
    assert "trials counted: 16" in r.stdout  # 2 baskets x 8 params
    assert "top 5 by sharpe" in r.stdout and "deflated Sharpe" in r.stdout
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert set(rows["symbol"]) == {"AAPL,MSFT,GOOG/IBM", "AAPL,MSFT/IBM"} and len(rows) == 16
    assert rows["short"].all()
    for col in ("lookback", "rebalance", "top_k", "total_return", "sharpe", "max_drawdown", "trades"):
        assert col in rows.columns
    assert (rows["trades"] >= 5).all()  # a trade is one leg's position: a rotation trades often


def test_rotation_sweep_refuses_bad_baskets_and_options_in_one_line(sample_lake_rw):
    base = ("sweep", "--strategy", "rotation", "--grid", "lookback=5")
    for extra, message in [(("--symbols", "AAPL,MSFT"), "--symbols 'AAPL,MSFT': a basket is A,B,.../BENCH"),
                           (("--symbols", "AAPL,MSFT/IBM,AAPL/IBM"), "a basket is A,B,.../BENCH"),
                           (("--symbols", "AAPL,MSFT/IBM/FB"), "'AAPL,MSFT/IBM/FB': a basket is"),
                           (("--symbols", "AAPL,,MSFT/IBM"), "a basket is A,B,.../BENCH"),
                           (("--symbols", "AAPL,AAPL/IBM"), "the assets must be distinct"),
                           (("--symbols", "AAPL,IBM/IBM"), "the benchmark not among them"),
                           (("--symbols", " ; "), "--symbols: no baskets given"),
                           (("--symbols", "AAPL,M$FT/IBM"), "invalid symbol 'M$FT'"),
                           (("--symbols", "AAPL,ZZZ/IBM"), "basket AAPL,ZZZ/IBM: 0 common 1Day bars"),
                           (("--symbols", "AAPL,MSFT/IBM", "--walk-forward", "2y"), "must be 'TRAIN:TEST'"),
                           (("--symbols", "AAPL,MSFT/IBM", "--benchmark", "SPY"), "the benchmark is in the basket"),
                           (("--symbols", "AAPL,MSFT/IBM", "--time-stop", "5"), "--grid rebalance"),
                           (("--symbols", "AAPL,MSFT/IBM", "--max-pvalue", "0.1"), "--max-pvalue is not supported"),
                           (("--symbols", "AAPL,MSFT/IBM", "--grid", "short=0,1"), "set with --short"),
                           (("--symbols", "AAPL,MSFT/IBM", "--grid", "top_kk=1"), "did you mean 'top_k'")]:
        r = run(*base, *extra, lake=sample_lake_rw.root)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
