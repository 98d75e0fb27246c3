"""``tradelab regimes`` on a real lake holding the sample bars: counts, next session, table, plot."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from data_lake import Lake, query
from data_lake.sources.sample import sample_bars, sample_meta
from tradelab.cli.regimes import app

runner = CliRunner()


@pytest.fixture(scope="module")
def ibm_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("regimes") / "lake"
    Lake(root).write_bars("IBM", "1Day", sample_bars("IBM"), sample_meta())
    return root


def test_regimes_writes_table_prints_counts_and_plots(ibm_lake: Path, tmp_path: Path):
    plot = tmp_path / "out" / "ibm.html"
    r = runner.invoke(app, ["--benchmark", "ibm", "--lake", str(ibm_lake), "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    assert "range_normal" in r.output and "warmup" in r.output
    assert "next session 2013-03-04 (after the last bar, 2013-03-01): range_normal" in r.output
    html = plot.read_text()
    assert "plotly" in html.lower() and "IBM regimes" in html
    got = query(ibm_lake, "SELECT benchmark, count(*) n, count(DISTINCT params_hash) h, max(session)::VARCHAR last "
                          "FROM regimes GROUP BY 1")
    assert got.to_dict("records") == [{"benchmark": "IBM", "n": 3271, "h": 1, "last": "2013-03-04"}]


def test_params_options_and_default_plot_path(ibm_lake: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["--benchmark", "IBM", "--lake", str(ibm_lake), "--vol-history", "100", "--er-min", "0.3"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / "regimes-IBM.html").exists()
    warm = query(ibm_lake, "SELECT count(*) n FROM regimes WHERE label = 'warmup'")["n"][0]
    assert warm == 20 + 100 + 1  # vol_window + vol_history + 1 bars before the first label


@pytest.mark.parametrize("args,msg", [
    (["--benchmark", "SPY"], "holds no 1Day bars of SPY"),
    (["--benchmark", "IBM", "--low-pct", "0.9"], "low_pct < high_pct"),
    (["--benchmark", "not a symbol"], "invalid symbol"),
])
def test_user_errors_are_one_line(ibm_lake: Path, args, msg):
    r = runner.invoke(app, [*args, "--lake", str(ibm_lake)])
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output
