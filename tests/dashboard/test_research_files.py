"""The research pages on hand-made folders: run files served only from the runs folder (no ``..``, no
absolute path, no symlink out), params diffs that name exactly the changed entries, the lake's gaps,
empty and missing folders, and every text escaped."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from dashboard import DashboardConfig, create_app
from data_lake import Lake
from data_lake.calendar import nyse
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.nightly import NightlyConfig
from pipeline.params_store import history_name, write_candidate
from pipeline.sweep import run_sweep
from research.params import Verdict
from tests.kit import entry, metrics, params_file

SECRET = "not-for-the-dashboard-7f3a"
MARKUP = '<script>alert("x")</script>'


def client_for(tmp_path: Path) -> TestClient:
    """The dashboard over ``tmp_path``'s params, runs and lake folders (made or not by the test)."""
    return TestClient(create_app(DashboardConfig(params_dir=tmp_path / "params", runs_dir=tmp_path / "runs",
                                                 lake=tmp_path / "lake")), base_url="http://127.0.0.1")


def make_run(runs: Path, rel: str, status: dict, files: dict[str, str]) -> Path:
    folder = runs / rel
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps(status))
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    """A weekend run, a failed nightly whose error holds markup, a secret outside, symlinks pointing at it."""
    root = tmp_path / "runs"
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "report.html").write_text(SECRET)
    (tmp_path / "secret.txt").write_text(SECRET)
    candidates = ("strategy,symbol,regime,status,oos_sharpe,passes_gate,why_not\n"
                  "sma_cross,AAPL,up,active,1.2,True,\nsma_cross,AAPL,down,active,0.1,False,pbo 0.7 > 0.5\n"
                  "rsi_reversion,MSFT,up,flat,,False,status flat\n")
    make_run(root, "2024-05-04/weekend-090000", {"job": "weekend", "ok": True, "started": "2024-05-04T09:00:00Z"},
             {"candidates.csv": candidates, "weekend.html": "<p>weekend</p>"})
    folder = make_run(root, "2024-05-03/nightly-220000", {"job": "nightly", "ok": False, "error": MARKUP},
                      {"report.html": "<p>report</p>"})
    (folder / "summary.json").symlink_to(tmp_path / "secret.txt")
    (root / "2024-05-03" / "nightly-230000").symlink_to(tmp_path / "outside", target_is_directory=True)
    (tmp_path / "outside" / "nightly-000000").mkdir()
    (tmp_path / "outside" / "nightly-000000" / "report.html").write_text(SECRET)
    (root / "2024-05-05").symlink_to(tmp_path / "outside", target_is_directory=True)
    return root


def test_runs_are_listed_newest_first_with_verdicts_and_escaped_errors(tmp_path, runs):
    page = client_for(tmp_path).get("/runs").text

    # newest first; the folders symlinked out of the runs folder are not runs of it
    assert re.findall(r'data-run="([^"]+)"', page) == ["2024-05-04/weekend-090000", "2024-05-03/nightly-220000"]
    assert "1 of 3 candidates pass the gate" in page
    assert str(escape(MARKUP)) in page and MARKUP not in page
    assert '<a href="/runs/2024-05-04/weekend-090000/weekend.html">' in page
    assert "nightly-220000/summary.json" not in page  # symlinked out: neither read nor linked
    assert "no summary.json" in page


OUTSIDE, NOT_A_FILE, NOT_A_FOLDER = "points outside the runs folder", "not a run file", "not a run folder"


@pytest.mark.parametrize(("url", "status", "named"), [
    ("/runs/2024-05-03/nightly-220000/summary.json", 404, OUTSIDE),  # a file symlinked out of the folder
    ("/runs/2024-05-03/nightly-230000/report.html", 404, OUTSIDE),  # a run folder symlinked out
    ("/runs/2024-05-05/nightly-000000/report.html", 404, OUTSIDE),  # a day folder symlinked out
    ("/runs/2024-05-03/nightly-220000/%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt", 400, NOT_A_FILE),
    ("/runs/2024-05-03/nightly-220000/..%2F..%2F..%2Fsecret.txt", 400, NOT_A_FILE),
    ("/runs/%2E%2E/%2E%2E/secret.txt", 400, NOT_A_FOLDER),
    ("/runs/2024-05-03/%2E%2E/secret.txt", 400, NOT_A_FOLDER),
    ("/runs//%2Ftmp/secret.txt", 400, NOT_A_FILE),  # absolute paths
    ("/runs/%2Fetc%2Fpasswd", 400, NOT_A_FOLDER),
    ("/runs/2024-05-03/nightly-220000/status.json", 400, "not a file the dashboard serves"),
    ("/runs/2024-05-03/nightly-220000", 400, NOT_A_FILE),
])
def test_run_files_outside_the_runs_folder_are_refused(tmp_path, runs, url, status, named):
    response = client_for(tmp_path).get(url)

    assert response.status_code == status
    assert named in re.search(r'<p class="bad" id="error">(.+)</p>', response.text).group(1)
    assert SECRET not in response.text


def test_a_served_report_is_the_file_in_a_sandbox(tmp_path, runs):
    response = client_for(tmp_path).get("/runs/2024-05-03/nightly-220000/report.html")

    assert response.status_code == 200 and response.text == "<p>report</p>"
    assert response.headers["content-security-policy"].startswith("sandbox allow-scripts")


def write_params(params: Path) -> tuple[str, str]:
    """current.json (a) and a later history file (b): one entry changed, one removed, one added, one re-measured."""
    a = params_file([entry("AAPL", "up_normal"), entry("AAPL", "down_high"), entry("MSFT", "all"),
                     entry("MSFT", "range_low")])
    b = params_file([entry("AAPL", "up_normal", params={"fast": 20, "slow": 50}), entry("AAPL", "down_high"),
                     entry("MSFT", "up_low"), entry("MSFT", "range_low", deflated_sharpe=0.99,
                                                    out_of_sample=metrics(sharpe=0.9))],
                    created_at=a.created_at.replace(day=3), verdict=Verdict(promoted=True, reasons=(MARKUP,)))
    write_candidate(a, params / "current.json")
    write_candidate(a, params / "history" / history_name(a))
    write_candidate(b, params / "history" / history_name(b))
    return history_name(a), history_name(b)


def test_the_diff_names_exactly_the_changed_entries(tmp_path):
    a, b = write_params(tmp_path / "params")
    page = client_for(tmp_path).get(f"/params/diff?a=current&b={b}")

    rows = re.findall(r'<td data-col="change">([^<]*)</td><td data-col="strategy">[^<]*</td>'
                      r'<td data-col="symbol">([^<]*)</td><td data-col="regime">([^<]*)</td>', page.text)
    assert page.status_code == 200
    assert sorted(rows) == [("added", "MSFT", "up_low"), ("changed", "AAPL", "up_normal"),
                            ("re-measured", "MSFT", "range_low"), ("removed", "MSFT", "all")]
    assert "fast 10 -&gt; 20" in page.text and "oos_sharpe, deflated_sharpe" in page.text
    assert "created_at" in page.text  # provenance
    same = client_for(tmp_path).get(f"/params/diff?a=current&b={a}").text
    assert "No entry was added, removed or changed" in same and "Same provenance." in same


def test_the_history_lists_every_file_with_escaped_verdicts(tmp_path):
    a, b = write_params(tmp_path / "params")
    (tmp_path / "params" / "history" / "20990101T000000Z-0123456789ab-promoted.json").write_text("{not json")
    page = client_for(tmp_path).get("/params").text

    assert re.findall(r'<tr data-name="([^"]+)">', page) == ["current", "20990101T000000Z-0123456789ab-promoted.json",
                                                             *sorted([a, b], reverse=True)]
    assert "does not load" in page
    assert str(escape(MARKUP)) in page and MARKUP not in page


@pytest.mark.parametrize(("query", "status", "named"), [
    ("", 400, "a diff needs two params files"),
    ("a=current", 400, "a diff needs two params files"),
    ("a=current&b=..%2F..%2Fsecret.txt", 400, "not a params file name"),
    ("a=%2Fetc%2Fpasswd&b=current", 400, "not a params file name"),
    ("a=current&b=20240101T000000Z-0123456789ab-rejected.json", 404, "no params file"),
    ("a=current&b=20990101T000000Z-0123456789ab-promoted.json", 400, "does not load"),
])
def test_bad_diff_requests_are_named(tmp_path, query, status, named):
    write_params(tmp_path / "params")
    (tmp_path / "params" / "history" / "20990101T000000Z-0123456789ab-promoted.json").write_text("{not json")
    response = client_for(tmp_path).get(f"/params/diff?{query}")

    assert response.status_code == status and named in html.unescape(response.text)


def test_the_lake_page_lists_exactly_the_missing_sessions(tmp_path):
    bars = sample_bars("IBM")
    dropped = [100, 101, 2000]
    Lake(tmp_path / "lake").write_bars("IBM", "1Day", bars.drop(index=dropped).reset_index(drop=True), sample_meta())
    page = client_for(tmp_path).get("/lake").text

    sessions = re.findall(r'<td data-col="session">([^<]*)</td>', page)
    cal = nyse().dates
    expected = [str(cal[cal.searchsorted(t.tz_convert("America/New_York").tz_localize(None).normalize())].date())
                for t in bars["ts"].iloc[dropped]]
    assert sessions == expected
    assert re.search(r'data-col="sessions">3</td><td class="num" data-col="missing">3</td>', page)


@pytest.mark.parametrize("path", ["/runs", "/params", "/sweeps", "/regimes", "/lake"])
@pytest.mark.parametrize("made", [False, True])
def test_every_page_renders_on_missing_and_empty_folders(tmp_path, path, made):
    if made:
        for name in ("runs", "params", "lake"):
            (tmp_path / name).mkdir()
    response = client_for(tmp_path).get(path)

    assert response.status_code == 200
    assert re.search(r'<p class="muted empty">[^<]+</p>', response.text)


def test_a_sweep_of_one_param_is_listed_without_a_heatmap(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write_bars("IBM", "1Day", sample_bars("IBM"), sample_meta())
    cfg = NightlyConfig(symbols=("IBM",), grids={"sma_cross": {"fast": (5, 10), "slow": (50,)}}, lookback="3y",
                        walk_forward="1y:1y", stop_loss=(0.02,), by_regime=False)
    rows = run_sweep(lake, cfg.spec("sma_cross", None, None))
    client = client_for(tmp_path)
    page = client.get("/sweeps")

    assert page.status_code == 200 and 'class="plotly-graph-div"' not in page.text
    assert "varies fewer than two params" in page.text and "(swept: fast)" in page.text
    assert f"{len(rows)} rows." in page.text
    assert "is not a swept param of this sweep (swept: fast)" in html.unescape(client.get("/sweeps?x=slow").text)
