"""Notebooks run as tests, with tiny parameters, through papermill and a real kernel."""

from __future__ import annotations

from pathlib import Path

import papermill as pm

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_lake_quickstart_notebook(sample_lake, tmp_path: Path):
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "lake_quickstart.ipynb"), str(out),
                        parameters={"lake_root": str(sample_lake.root), "symbol": "MSFT"},
                        kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False)
    text = out.read_text()
    assert "3270" in text  # MSFT's real daily bar count, from DuckDB in the kernel


TINY = {"symbols": ["MSFT"], "strategies": ["sma_cross"], "grids": {"sma_cross": {"fast": [5, 10, 20], "slow": [50, 100]}},
        "lookback": None, "walk_forward": "2y:1y", "stop_loss": [0.02], "take_profit": [0.0, 0.05], "min_trades": 2}
#: A gate every candidate with trades passes: only to exercise the promotion path, never a default.
OPEN_GATE = {"min_oos_sharpe": -100.0, "min_deflated_sharpe": 0.0, "max_pbo": 1.0, "min_oos_trades": 0,
             "min_stability": 0.0}


def _nightly(tmp_path: Path, lake: Path, *params: str):
    import json
    import subprocess
    import sys

    args = [a for k, v in TINY.items() for a in ("-p", f"{k}={json.dumps(v)}")]
    return subprocess.run([sys.executable, "-m", "tradelab", "nightly", *args, *params, "-p", f"lake={lake}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(NOTEBOOKS.parent)})


def test_nightly_promotes_then_a_rejected_run_and_a_failed_run_leave_current_params_untouched(sample_lake_rw, tmp_path):
    import json
    import os

    from pipeline.nightly_summary import load_summary, summarize_params, summary_lines
    from research.params import load
    from tests.browser import check_page

    # 1. a run whose gate lets candidates through: installed as params/current.json
    (tmp_path / "notebooks").symlink_to(NOTEBOOKS)
    first = _nightly(tmp_path, sample_lake_rw.root, "-p", f"gate={json.dumps(OPEN_GATE)}", "-p", "api_token=tok-SECRET-9f3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "params PROMOTED" in first.stdout
    current = tmp_path / "params" / "current.json"
    pf = load(current)
    assert pf.verdict.promoted and any(e.status == "active" for e in pf.entries)
    assert pf.data.symbols == ("MSFT",) and pf.data.bars_hash["MSFT"] and pf.selection.walk_forward == "2y:1y"
    # the take-profit values swept (-p take_profit): 6 (fast, slow) x 1 stop x 2 targets trials per cell
    assert {e.n_trials for e in pf.entries if e.status == "active"} == {12}, [e.n_trials for e in pf.entries]
    [run] = sorted((tmp_path / "runs").glob("*/nightly-*"))
    assert {"nightly.ipynb", "nightly.html", "params.json", "report.html", "status.json", "summary.json"} <= {
        p.name for p in run.iterdir()}
    # the console prints the run's summary, the report opens with it, both from summary.json of this params file
    summary = load_summary(run / "summary.json")
    lines, printed = summary_lines(summary), first.stdout.splitlines()
    assert summary.params_sha256 == pf.sha256() and summary == summarize_params(pf, summary.target)
    assert printed[printed.index(lines[0]):][:len(lines)] == lines, first.stdout
    assert lines[0].startswith("verdict: PROMOTED") and f"{summary.active} active" in lines[2]
    assert summary.active == sum(e.status == "active" for e in pf.entries) and summary.target
    body = (run / "report.html").read_text().split("<body>", 1)[1]
    assert body.index("<section>") == body.index("<section><h2>Summary</h2>") < body.index(lines[0])
    assert "tok-SECRET-9f3" not in first.stdout + (run / "summary.json").read_text()
    page = check_page(run / "report.html")
    assert page.plots == 3 and page.rendered == 3  # equity, per-regime heatmap, regime timeline
    assert page.rendered == page.plots and page.errors == [], page
    os.utime(current, ns=(1_000_000_000, 1_000_000_000))
    before = (current.read_bytes(), current.stat().st_mtime_ns)

    # 2. the default (strict) gate plus an impossible trade count: rejected, current.json untouched; a swept
    # rotation basket goes through the CLI and the notebook into the candidates
    grids = {**TINY["grids"], "rotation": {"lookback": [5, 10], "rebalance": [5], "top_k": [1]}}
    rejected = _nightly(tmp_path, sample_lake_rw.root, "-p", 'gate={"min_oos_trades": 1000000}',
                        "-p", 'rotation=["AAPL,GOOG/IBM"]', "-p", f"grids={json.dumps(grids)}")
    assert rejected.returncode == 0, rejected.stderr[-3000:]
    [basket] = [e for e in load(sorted((tmp_path / "params" / "history").glob("*-rejected.json"))[0]).entries
                if e.strategy == "rotation"]
    assert basket.symbol == "AAPL,GOOG/IBM" and basket.regime == "all" and basket.n_trials == 2
    assert "params REJECTED" in rejected.stdout and "unchanged" in rejected.stdout
    assert "verdict: REJECTED, the params in force stay" in rejected.stdout
    assert "oos_trades" in rejected.stdout and "< 1000000" in rejected.stdout  # a near miss and the rule it failed
    assert (current.read_bytes(), current.stat().st_mtime_ns) == before
    assert len(list((tmp_path / "params" / "history").glob("*-rejected.json"))) == 1

    # 3. a run that fails in a cell: exit 1 naming the cell, current.json untouched
    failed = _nightly(tmp_path, sample_lake_rw.root, "-p", 'strategies=["sma_crosss"]')
    assert failed.returncode == 1
    assert "failed at cell" in failed.stderr and "unknown strategy 'sma_crosss'" in failed.stderr, failed.stderr[-2000:]
    assert (current.read_bytes(), current.stat().st_mtime_ns) == before


def test_weekend_notebook_ends_with_candidates(sample_lake_rw, tmp_path: Path):
    import pandas as pd

    params = {**TINY, "symbols": ["MSFT", "IBM"], "strategies": ["sma_cross", "rsi_reversion"],
              "grids": {**TINY["grids"], "rsi_reversion": {"n": [7, 14], "lower": [25.0, 30.0]}},
              "lake": str(sample_lake_rw.root), "run_dir": str(tmp_path / "run")}
    pm.execute_notebook(str(NOTEBOOKS / "weekend_sweep.ipynb"), str(tmp_path / "out.ipynb"), parameters=params,
                        kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False)
    cands = pd.read_csv(tmp_path / "run" / "candidates.csv")
    assert set(cands.strategy) == {"sma_cross", "rsi_reversion"} and set(cands.symbol) == {"MSFT", "IBM"}
    assert "all" not in set(cands.regime) and cands.passes_gate.dtype == bool
    from data_lake import connect

    assert connect(sample_lake_rw).execute("select count(distinct sweep_id) from sweeps").fetchone()[0] == 2


def test_explore_notebook_tours_the_lake_regimes_signals_sweep_and_portfolio(sample_lake_rw, tmp_path: Path):
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "explore.ipynb"), str(out), kernel_name="python3", cwd=str(NOTEBOOKS),
                        parameters={"lake": str(sample_lake_rw.root), "symbol": "MSFT",
                                    "grid": {"fast": [5, 10], "slow": [50, 100]}}, progress_bar=False)
    text = out.read_text()
    for expect in ("trades over the whole history", "Total Return [%]", "application/vnd.plotly.v1+json"):
        assert expect in text, expect
