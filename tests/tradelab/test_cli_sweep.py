"""`tradelab sweep` as a user runs it: real lake, real engine, rows out, heatmap, resume, errors."""

from __future__ import annotations

import pandas as pd

from tests.tradelab.test_cli import run


def test_sweep_writes_rows_heatmap_and_refuses_a_second_run_without_resume(sample_lake_rw, tmp_path):
    lake = sample_lake_rw.root
    args = ("sweep", "--strategy", "sma_cross", "--symbols", "AAPL,MSFT", "--grid", "fast=5:20:5", "--grid",
            "slow=30:60:10", "--fees", "0.001", "--walk-forward", "4y:2y", "--objective", "sharpe",
            "--min-trades", "1", "--out", str(tmp_path / "rows.csv"), "--plot", str(tmp_path / "h.html"))
    r = run(*args, lake=lake)
    assert r.returncode == 0, r.stderr
    rows = pd.read_csv(tmp_path / "rows.csv")
    for col in ("symbol", "fast", "slow", "regime", "split", "total_return", "cagr", "sharpe", "sortino",
                "max_drawdown", "calmar", "win_rate", "profit_factor", "expectancy", "trades", "exposure"):
        assert col in rows.columns
    assert rows["combo"].nunique() == 16 and set(rows["symbol"]) == {"AAPL", "MSFT"}
    assert "top 10 by sharpe" in r.stdout
    for sym in ("AAPL", "MSFT"):
        assert "plotly" in (tmp_path / f"h-{sym}.html").read_text()[:5_000_000]
    again = run(*args, lake=lake)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run(*args, "--resume", lake=lake)
    assert resumed.returncode == 0


def test_sweep_user_errors_are_one_line(sample_lake_rw):
    lake = sample_lake_rw.root
    base = ("sweep", "--symbols", "AAPL", "--grid", "fast=5:20:5")
    for extra, message in [(("--strategy", "sma_crss"), "did you mean 'sma_cross'"),
                           (("--strategy", "sma_cross", "--grid", "slow=1:2"), "name=start:stop:step"),
                           (("--strategy", "sma_cross", "--objective", "profit"), "unknown objective"),
                           (("--strategy", "sma_cross", "--grid", "slwo=30,40"), "did you mean 'slow'")]:
        r = run(*base, *extra, lake=lake)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)


def test_sweep_killed_with_sigkill_resumes_to_the_rows_of_an_uninterrupted_run(sample_lake_rw, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from data_lake import Lake
    from data_lake.tables import table_files

    lake = sample_lake_rw.root
    args = ["sweep", "--strategy", "sma_cross", "--symbols", "IBM", "--grid", "fast=2:100:1", "--grid",
            "slow=110:200:10", "--chunk", "10", "--no-guards", "--heatmap", "fast,slow", "--plot", str(tmp_path / "h.html")]
    env = {**os.environ, "TRADELAB_LAKE": str(lake)}
    proc = subprocess.Popen([sys.executable, "-m", "tradelab", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    chunks = lambda: len(table_files(Lake(lake), "sweeps").get("sweeps", {}))  # noqa: E731
    deadline = time.time() + 90
    while chunks() < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = chunks()
    assert proc.returncode == -signal.SIGKILL and 3 <= done < 99, (done, proc.stderr.read())
    again = run(*args, lake=lake)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run(*args, "--resume", "--out", str(tmp_path / "resumed.parquet"), lake=lake)
    assert resumed.returncode == 0, resumed.stderr
    fresh_lake = tmp_path / "fresh"
    Lake(fresh_lake).write_bars("IBM", "1Day", sample_lake_rw.read_bars("IBM", "1Day"), _meta())
    fresh = run(*args, "--out", str(tmp_path / "fresh.parquet"), lake=fresh_lake)
    assert fresh.returncode == 0, fresh.stderr
    key = ["combo", "split", "regime"]
    a = pd.read_parquet(tmp_path / "resumed.parquet").sort_values(key).reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "fresh.parquet").sort_values(key).reset_index(drop=True)
    assert len(a) == 99 * 10  # every (fast, slow) is valid: one full-period row each
    pd.testing.assert_frame_equal(a, b)


def _meta():
    from data_lake.sources.sample import sample_meta

    return sample_meta()
