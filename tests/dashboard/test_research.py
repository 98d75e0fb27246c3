"""The research pages against a real night: a lake with sample bars, its sweeps and regimes tables,
the run folder and params files a nightly leaves. Each page's numbers are checked against their source
(the lake through DuckDB, the summary, the params files), and the sweeps and regimes pages are
rendered in headless Chromium, served by uvicorn on a loopback port."""

from __future__ import annotations

import html
import json
import re
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from dashboard import DashboardConfig, create_app
from data_lake import Lake, query
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.nightly import NightlyConfig, nightly
from pipeline.nightly_report import write_report
from pipeline.nightly_summary import summarize, write_summary
from pipeline.params_store import install, write_candidate
from pipeline.sweep import load_sweep
from research.params import GateThresholds, RunInfo
from research.regimes import load_regimes
from tests import browser

#: Lets candidates with a positive out-of-sample Sharpe through, so the night has active and flat entries.
MIDDLE_GATE = GateThresholds(min_oos_sharpe=0.0, min_deflated_sharpe=0.0, max_pbo=1.0, min_oos_trades=0,
                             min_stability=0.0)
RUN = "2024-05-02/nightly-220501"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One small real night: the lake it leaves (bars, sweeps, regimes), its run folder and params files."""
    root = tmp_path_factory.mktemp("research")
    lake = Lake(root / "lake")
    for sym in ("MSFT", "IBM"):
        lake.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    cfg = NightlyConfig(symbols=("MSFT", "IBM"), strategies=("sma_cross", "rsi_reversion"),
                        grids={"sma_cross": {"fast": (5, 10, 20), "slow": (50, 100)},
                               "rsi_reversion": {"n": (7, 14), "lower": (25.0, 30.0)}},
                        lookback="5y", walk_forward="2y:1y", stop_loss=(0.02,), min_trades=2, gate=MIDDLE_GATE)
    run_dir = root / "runs" / RUN
    result = nightly(lake, cfg, params_dir=root / "params", run=RunInfo(job="nightly", notebook="test", run_dir=str(run_dir)))
    summary = summarize(result)
    write_candidate(result.params, run_dir / "params.json")
    write_summary(summary, run_dir / "summary.json")
    write_report(lake, result, run_dir / "report.html", summary)
    (run_dir / "status.json").write_text(json.dumps({"job": "nightly", "ok": True, "started": "2024-05-02T22:05:01Z",
                                                     "ended": "2024-05-02T22:07:00Z", "error": None}))
    install(result.params, root / "params")
    app = create_app(DashboardConfig(params_dir=root / "params", runs_dir=root / "runs", lake=root / "lake"))
    return {"root": root, "lake": lake, "result": result, "summary": summary, "app": app,
            "client": TestClient(app, base_url="http://127.0.0.1")}


def table_rows(page: str, table_id: str) -> list[dict[str, str]]:
    """The rows of ``<table id=...>`` as {column: text}, from the cells' data-col attributes."""
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert body, f"no table {table_id} on the page"
    return [{c: html.unescape(v) for c, v in re.findall(r'<td[^>]*data-col="([^"]+)"[^>]*>(.*?)</td>', row, re.S)}
            for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S) if "<td" in row]


def test_lake_page_counts_equal_duckdb(site):
    page = site["client"].get("/lake")

    counts = query(site["lake"], "SELECT symbol, count(*) AS n, min(ts) AS first FROM bars GROUP BY symbol ORDER BY symbol")
    shown = table_rows(page.text, "contents")
    assert page.status_code == 200
    assert [(r["symbol"], int(r["rows"])) for r in shown] == list(zip(counts["symbol"], counts["n"]))
    assert [r["first_ts"][:10] for r in shown] == [f"{t:%Y-%m-%d}" for t in counts["first"]]
    assert "No gaps" in page.text  # the sample series are complete


def test_runs_page_shows_the_summary_verdict_and_serves_the_report(site):
    client = site["client"]
    page = client.get("/runs").text

    row = re.search(rf'<tr id="{RUN}" data-run="{RUN}">(.*?)</tr>', page, re.S).group(1)
    s = site["summary"]
    assert f"{html.escape(s.verdict, quote=True)} ({s.active} active of {s.entries} entries)" in row
    assert s.verdict.startswith("promoted: " if s.promoted else "rejected: ")
    assert f'class="verdict {"good" if s.promoted else "bad"}"' in row
    report = client.get(f"/runs/{RUN}/report.html")
    assert report.content == (site["root"] / "runs" / RUN / "report.html").read_bytes()
    assert report.headers["content-security-policy"].startswith("sandbox")
    assert client.get(f"/runs/{RUN}/params.json").json()["entries"][0]["strategy"] in ("sma_cross", "rsi_reversion")


def test_params_page_lists_history_and_current(site):
    page = site["client"].get("/params").text
    pf = site["result"].params

    names = re.findall(r'<tr data-name="([^"]+)">', page)
    assert names[0] == "current" and len(names) == 2 and names[1].endswith(f"-{pf.sha256()[:12]}-promoted.json")
    assert page.count(f"<code>{pf.sha256()[:12]}</code>") == 2


def test_sweeps_page_shows_each_sweep_of_the_night_with_its_row_counts(site):
    client = site["client"]
    page = client.get("/sweeps").text

    listed = {(r["sweep_id"], r["symbol"]): int(r["rows"]) for r in table_rows(page, "sweeps")}
    expected = {}
    for run in site["result"].runs:
        rows = load_sweep(site["lake"], str(run.results["sweep_id"].iloc[0]))
        expected.update({(str(sid), sym): len(g) for (sid, sym), g in rows.groupby(["sweep_id", "symbol"])})
    assert listed == expected
    assert 'class="plotly-graph-div"' in page
    sid = next(str(r.results["sweep_id"].iloc[0]) for r in site["result"].runs if r.strategy == "sma_cross")
    picked = client.get(f"/sweeps?strategy=sma_cross&sweep={sid}&symbol=IBM&x=slow&y=fast&objective=sortino&split=full")
    assert picked.status_code == 200
    shown = re.search(r'<p id="shown">(.*?)</p>', picked.text, re.S).group(1)
    assert f"IBM sma_cross, sweep <code>{sid}</code>: {expected[(sid, 'IBM')]} rows" in shown
    assert "sortino over slow x fast in the full window" in shown


@pytest.mark.parametrize(("query_string", "status", "named"), [
    ("x=nope", 400, "x=&#39;nope&#39; is not a swept param"),
    ("objective=alpha", 400, "unknown objective &#39;alpha&#39;"),
    ("split=test-99", 400, "split &#39;test-99&#39; is not in this sweep"),
    ("x=fast&y=fast&strategy=sma_cross", 400, "x and y are both &#39;fast&#39;"),
    ("strategy=nope", 404, "no sweep of strategy &#39;nope&#39;"),
    ("sweep=0123456789abcdef", 404, "no sweep 0123456789abcdef"),
    ("sweep=../../x", 400, "not a sweep id"),
    ("symbol=AAPL", 404, "has no symbol &#39;AAPL&#39;"),
])
def test_bad_sweep_choices_are_named(site, query_string, status, named):
    response = site["client"].get(f"/sweeps?{query_string}")

    assert response.status_code == status and named in response.text


def test_regimes_page_shows_the_next_label_and_the_counts_of_the_lake(site):
    page = site["client"].get("/regimes?benchmark=IBM")

    frame = load_regimes(site["lake"], "IBM")
    assert page.status_code == 200
    assert f"next session {frame['session'].iloc[-1]:%Y-%m-%d}: <strong>{frame['label'].iloc[-1]}</strong>" in page.text
    counts = {r["label"]: int(r["sessions"]) for r in table_rows(page.text, "counts")}
    assert counts == frame["label"].value_counts().to_dict()
    assert site["client"].get("/regimes?benchmark=SPY").status_code == 404


def _serve(app) -> tuple[uvicorn.Server, threading.Thread, str]:
    """uvicorn on a free loopback port in a background thread; returns the server, thread and base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


PLOTS = ("JSON.stringify([document.querySelectorAll('.plotly-graph-div').length, "
         "[...document.querySelectorAll('.plotly-graph-div')].filter(d => d.querySelector('.main-svg')).length])")


def render_check(chromium: browser.Chromium, url: str) -> tuple[int, int, list[str], str]:
    """(plot divs, plots rendered as SVG, console / log errors, title) of one page once its plots are drawn."""
    with chromium.open(url) as page:
        page.wait("document.readyState === 'complete'", what=f"{url} to load")
        plots = json.loads(page.evaluate(PLOTS))
        if plots[0]:
            page.wait("[...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('.main-svg'))",
                      what=f"the plots of {url} to render")
            plots = json.loads(page.evaluate(PLOTS))
        time.sleep(0.3)  # late errors: timers, promises
        return plots[0], plots[1], page.errors, page.evaluate("document.title")


def test_sweeps_regimes_and_a_report_render_their_plots_in_chromium(site):
    browser.chromium_path()  # skips here (fails in CI) without a Chromium, before a server starts
    server, thread, base = _serve(site["app"])
    try:
        with browser.Chromium(timeout=60) as chromium:
            checks = {path: render_check(chromium, base + path)
                      for path in ("/sweeps", "/regimes", "/lake", f"/runs/{RUN}/report.html")}
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    for path, (_, _, errors, _) in checks.items():
        assert errors == [], f"{path}: {errors}"
    assert checks["/sweeps"][:2] == (1, 1) and checks["/sweeps"][3] == "Sweeps · tradelab"
    assert checks["/regimes"][:2] == (1, 1) and checks["/regimes"][3] == "Regimes · tradelab"
    assert checks["/lake"][:2] == (0, 0) and checks["/lake"][3] == "Lake · tradelab"
    plots, rendered, _, _ = checks[f"/runs/{RUN}/report.html"]  # the nightly's report, in its sandbox
    assert plots >= 3 and rendered == plots
