"""``tradelab evening`` as a timer runs it: the calendar, an incremental Alpaca ingest through the real
alpaca-py client against the in-process simulator, regimes, the nightly (once for real, tiny), the
live report hook, alerts, the lock, and a failed ingest that leaves the params in force alone.

The lake holds the real sample daily bars up to 2012-11-20; the simulator serves them all (to
2013-03-01), so each evening must bring exactly the sessions after that and up to its own date.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from data_lake import Batch, Lake, LakeError
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.params_store import write_candidate
from research.regimes import load_regimes
from simulator import market_data_app, serve
from tests import webhook
from tests.kit import tree_digest
from tests.kit import entry, params_file
from tradelab.cli import app
from tradelab.evening import plan, send_alert
from tradelab.jobs import job_lock

KEY, SECRET = "evening-key-id-7f3a", "evening-secret-9c1d"
BARS = "/v2/stocks/bars"
SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")
LAKE_END = "2012-11-21"  # exclusive: the lake's last bar is 2012-11-20
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
FIXTURES = Path(__file__).parent / "fixtures"
#: The real nightly notebook, as small as it gets: one symbol, two combinations, three years.
TINY_NIGHTLY = f'''notebook = "{NOTEBOOKS / "nightly_optimize.ipynb"}"
[parameters]
symbols = ["MSFT"]
strategies = ["sma_cross"]
grids = {{sma_cross = {{fast = [5, 10], slow = [50]}}}}
lookback = "3y"
walk_forward = "1y:6m"
stop_loss = [0.02]
benchmark = "IBM"
min_trades = 1
'''
#: A stand-in nightly (tests/tradelab/fixtures/job_ok.ipynb): seconds instead of a sweep.
FAKE_NIGHTLY = f'notebook = "{FIXTURES / "job_ok.ipynb"}"\n'


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return {s: sample_bars(s) for s in SYMBOLS}


@pytest.fixture(scope="module")
def sim(sample):
    """The Alpaca market-data simulator on loopback, serving every sample bar."""
    frames = {(s, "1Day"): f[["ts", "open", "high", "low", "close", "volume"]] for s, f in sample.items()}
    with serve(market_data_app(frames, api_key=KEY, secret_key=SECRET)) as server:
        yield server


@pytest.fixture(scope="module")
def base_lake(tmp_path_factory, sample) -> Path:
    lake = Lake(tmp_path_factory.mktemp("base") / "lake")
    cut = pd.Timestamp(LAKE_END, tz="America/New_York")
    lake.write_many([Batch(s, "1Day", f[f["ts"] < cut], sample_meta()) for s, f in sample.items()])
    return lake.root


@dataclass
class Sent:
    """What the local webhook receiver got: one JSON body per alert."""

    bodies: list = field(default_factory=list)

    @property
    def alerts(self) -> list[dict]:
        return [b["alert"] for b in self.bodies]


@pytest.fixture(scope="module")
def receiver():
    with webhook.receiver() as r:
        yield r


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch, base_lake, sim, receiver) -> Sent:
    """A fresh project folder (lake copy, no params, no .env); only the test's keys and webhook in the
    environment (none of the caller's TRADELAB_* / APCA_* variables)."""
    for name in list(os.environ):
        if name.startswith(("TRADELAB_", "APCA_")):
            monkeypatch.delenv(name)
    url, got = receiver
    got.clear()
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("TRADELAB_ALPACA_DATA_URL", sim.url)  # as the ingest tests do; --url beats it
    monkeypatch.setenv("TRADELAB_ALERT_WEBHOOK", url)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(base_lake, tmp_path / "lake")
    sim.state.requests.clear()
    return Sent(got)


def live_state(tmp_path: Path, anchor: str = "2012-11-01") -> Path:
    """A live runner's state store that has started trading the params in force (anchor and epoch)."""
    from live_bridge.state import StateStore
    from research.params import dumps, load

    pf = load(tmp_path / "params" / "current.json")
    (tmp_path / "runs" / "live").mkdir(parents=True, exist_ok=True)
    with StateStore(tmp_path / "runs" / "live" / "state.db") as store:
        store.set_anchor(int(pd.Timestamp(anchor, tz="America/New_York").tz_convert("UTC").value // 1000))
        store.record_epoch(0, pf.sha256(), dumps(pf).decode(), "params/current.json")
    return tmp_path / "runs" / "live"


def in_force(tmp_path: Path) -> Path:
    """A valid params file in force: sma_cross on AAPL and MSFT, a GOOG/AAPL pair, benchmark IBM."""
    pf = params_file([entry("AAPL"), entry("MSFT", regime="up_normal"),
                      entry(strategy="pairs", symbol="GOOG/AAPL", params={})],
                     data=params_file().data.model_copy(update={"benchmark": "IBM"}))
    return write_candidate(pf, tmp_path / "params" / "current.json")


def evening(tmp_path: Path, when: str, *args: str, nightly: str = FAKE_NIGHTLY) -> Result:
    """``tradelab evening --now WHEN`` in this process (the nightly still runs a real kernel)."""
    (tmp_path / "nightly.toml").write_text(nightly)
    return CliRunner().invoke(app, ["evening", "--now", when, "--config", "nightly.toml", *args])


def days(lake: Path, symbol: str) -> list[str]:
    ts = Lake(lake).read_bars(symbol, "1Day")["ts"].dt.tz_convert("America/New_York")
    return ts.dt.strftime("%Y-%m-%d").tolist()


def status_of(tmp_path: Path, day: str) -> dict:
    [path] = (tmp_path / "runs" / day).glob("evening-*/status.json")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------- the calendar
@pytest.mark.parametrize(("when", "kind"), [("2016-07-04T21:30:00Z", "holiday"),
                                            ("2016-07-02T21:30:00Z", "weekend"),
                                            ("2016-12-26T21:30:00Z", "holiday")])
def test_a_day_without_a_session_does_nothing_and_says_so(tmp_path, sim, when, kind):
    before = tree_digest(tmp_path / "lake")

    r = evening(tmp_path, when)

    day = when[:10]
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == f"{day} is not an NYSE session ({kind}): nothing to do"
    status = status_of(tmp_path, day)
    assert (status["ok"], status["exit_code"], status["kind"], status["steps"]) == (True, 0, kind, [])
    assert sim.state.requests.all(BARS) == [] and tree_digest(tmp_path / "lake") == before


# --------------------------------------------------------------------------------------- a half day
def test_a_half_day_is_refused_before_13_et_and_runs_after(tmp_path, sim, monkeypatch):
    in_force(tmp_path)
    live_state(tmp_path)  # a live runner that has traded (nothing filled) since 2012-11-01
    before = tree_digest(tmp_path / "lake")

    early = evening(tmp_path, "2012-11-23T12:30:00-05:00")  # the day after Thanksgiving

    assert early.exit_code == 2
    assert early.stderr.strip() == ("error: the 2012-11-23 session closes at 13:00 ET (half day); "
                                    "run after the close")
    assert not list((tmp_path / "runs").glob("2012-*")) and tree_digest(tmp_path / "lake") == before

    late = evening(tmp_path, "2012-11-23T13:05:00-05:00")

    assert late.exit_code == 0, late.output
    for sym in ("AAPL", "GOOG", "IBM", "MSFT"):  # the params' symbols, the pair's legs, the benchmark
        assert days(tmp_path / "lake", sym)[-3:] == ["2012-11-20", "2012-11-21", "2012-11-23"]
    status = status_of(tmp_path, "2012-11-23")
    assert status["session"] == {"open": "2012-11-23T14:30:00Z", "close": "2012-11-23T18:00:00Z",
                                 "half_day": True}
    assert [(s["name"], s["ok"]) for s in status["steps"]] == [
        ("ingest", True), ("regimes", True), ("nightly", True), ("report", True)]
    assert "nothing to install" in status["steps"][2]["message"]
    assert status["steps"][3]["message"].startswith("2012-11-23: OK")
    [run] = (tmp_path / "runs" / "2012-11-23").glob("evening-*")
    doc = json.loads((run / "live-report.json").read_text())
    assert (doc["schema"], doc["day"], doc["ok"]) == ("tradelab.live_report/1", "2012-11-23", True)


# --------------------------------------------------------------------------------------- a normal evening
def test_a_normal_evening_ingests_the_new_session_relabels_and_runs_the_nightly(tmp_path, sim, sample,
                                                                                hermetic):
    in_force(tmp_path)
    held = {s: days(tmp_path / "lake", s) for s in SYMBOLS}

    r = evening(tmp_path, "2012-11-21T21:30:00Z", nightly=TINY_NIGHTLY)

    assert r.exit_code == 0, r.output
    # exactly one new bar per symbol, the 2012-11-21 session, equal to what the simulator served
    for sym in SYMBOLS:
        assert days(tmp_path / "lake", sym) == [*held[sym], "2012-11-21"]
        got = Lake(tmp_path / "lake").read_bars(sym, "1Day").iloc[-1]
        want = sample[sym].set_index("ts").loc[got["ts"]]
        assert (got["close"], got["source"], got["adjustment"]) == (want["close"], "alpaca", "all")
    [request] = sim.state.requests.all(BARS)  # one request: every symbol misses the same session
    assert request.params["symbols"] == "AAPL,GOOG,IBM,MSFT"
    regimes = load_regimes(Lake(tmp_path / "lake"), "IBM")
    assert regimes["session"].iloc[-1] == pd.Timestamp("2012-11-23")  # the next session is labelled
    status = status_of(tmp_path, "2012-11-21")
    assert status["symbols"] == {"1Day": ["AAPL", "GOOG", "IBM", "MSFT"]} and status["regimes"] == ["IBM"]
    steps = {s["name"]: s for s in status["steps"]}
    assert [s["name"] for s in status["steps"]] == ["ingest", "regimes", "nightly", "report"]
    assert steps["ingest"]["message"] == "1Day: 4 symbols, 4 bars written, 1 requests"
    assert steps["regimes"]["message"].startswith("IBM: next session 2012-11-23 ")
    assert any(f"params {verdict}" in steps["nightly"]["message"] for verdict in ("PROMOTED", "REJECTED"))
    assert steps["report"] == {**steps["report"], "ok": None, "skipped": True}
    [nightly] = (tmp_path / "runs" / "2012-11-21").glob("nightly-*")
    assert json.loads((nightly / "status.json").read_text())["ok"] is True
    assert (status["ok"], status["exit_code"], status["failed_steps"], status["alert"]) == (True, 0, [], None)
    assert hermetic.alerts == []
    for line in ("ingest", "regimes", "nightly", "report", "status ->"):
        assert line in r.stdout


# --------------------------------------------------------------------------------------- failures
def test_a_failed_ingest_keeps_the_params_skips_what_needs_it_alerts_and_exits_1(tmp_path, hermetic,
                                                                                  monkeypatch):
    current = in_force(tmp_path)
    before, lake_before = current.read_bytes(), tree_digest(tmp_path / "lake")
    live_state(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"

    r = evening(tmp_path, "2012-11-21T21:30:00Z", "--url", closed)

    assert r.exit_code == 1
    assert current.read_bytes() == before and tree_digest(tmp_path / "lake") == lake_before
    status = status_of(tmp_path, "2012-11-21")
    steps = {s["name"]: s for s in status["steps"]}
    assert (status["ok"], status["exit_code"], status["failed_steps"]) == (False, 1, ["ingest"])
    assert steps["ingest"]["ok"] is False
    assert steps["ingest"]["message"] == f"could not reach Alpaca at {closed}: ConnectionError"
    assert steps["regimes"] == {**steps["regimes"], "ok": None, "skipped": True,
                                "message": "skipped: ingest did not succeed"}
    assert steps["nightly"]["message"] == "skipped: ingest, regimes did not succeed"
    assert steps["report"]["ok"] is True  # the report does not need the ingest
    assert (tmp_path / "runs" / "2012-11-21" / "evening-213000" / "live-report.html").is_file()
    assert not list((tmp_path / "runs").glob("*/nightly-*"))
    [alert] = hermetic.alerts  # at the receiver before the command returned (the notifier is flushed)
    assert (alert["kind"], alert["severity"], status["alert"]) == ("job_failed", "critical", "sent")
    assert alert["message"].startswith("evening 2012-11-21: ingest failed: could not reach Alpaca")
    assert alert["extra"]["failed"] == ["ingest"]
    assert r.stderr.startswith("error: evening 2012-11-21: ingest failed")
    texts = [r.stdout, r.stderr, json.dumps(hermetic.bodies),
             *(p.read_bytes().decode(errors="replace") for p in (tmp_path / "runs").rglob("*") if p.is_file())]
    assert not any(KEY in t or SECRET in t for t in texts)


def test_a_failed_nightly_and_a_damaged_live_store_keep_the_params_and_exit_1(tmp_path, hermetic):
    current = in_force(tmp_path)
    before = current.read_bytes()
    (tmp_path / "runs" / "live").mkdir(parents=True)
    (tmp_path / "runs" / "live" / "state.db").write_bytes(b"this is not a database " * 100)

    r = evening(tmp_path, "2012-11-21T21:30:00Z", nightly=f'notebook = "{FIXTURES / "job_fail.ipynb"}"\n')

    assert r.exit_code == 1 and current.read_bytes() == before
    status = status_of(tmp_path, "2012-11-21")
    assert [(s["name"], s["ok"]) for s in status["steps"]] == [
        ("ingest", True), ("regimes", True), ("nightly", False), ("report", False)]
    nightly, damaged = status["steps"][2]["message"], status["steps"][3]["message"]
    assert "nightly failed at cell 3 (In [4])" in nightly and "ZeroDivisionError" in nightly
    assert "state store cannot be read" in damaged
    assert status["failed_steps"] == ["nightly", "report"]
    assert days(tmp_path / "lake", "IBM")[-1] == "2012-11-21"  # the ingest before it stays
    [alert] = hermetic.alerts
    assert alert["message"].startswith("evening 2012-11-21: nightly failed: nightly failed at cell 3")
    assert "report failed: " in alert["message"] and KEY not in json.dumps(hermetic.bodies)


def test_a_second_evening_is_refused_with_3_while_one_runs(tmp_path):
    with job_lock(tmp_path / "runs", "evening", datetime(2012, 11, 21, 21, 30, tzinfo=UTC)):
        r = evening(tmp_path, "2012-11-21T21:30:00Z")

    assert r.exit_code == 3
    assert r.stderr.startswith(f"error: evening is already running (pid {os.getpid()}, "
                               "started 2012-11-21T21:30:00Z)")
    assert not list((tmp_path / "runs").glob("*/evening-*"))


@pytest.mark.parametrize(("args", "message"), [
    (("--now", "yesterday-ish"), "--now 'yesterday-ish' is not a time"),
    (("--params", "params/other.json"), "the nightly installs <folder>/current.json"),
    (("--feed", "sipp"), "unknown feed 'sipp'"),
    (("-p", "lake=/elsewhere", "--lake", "lake"), "--lake lake and the nightly's lake=/elsewhere differ"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, message):
    r = evening(tmp_path, "2012-11-21T21:30:00Z", *args)

    assert r.exit_code == 2
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "runs").exists()


def test_missing_keys_are_exit_2_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("APCA_API_SECRET_KEY")

    r = evening(tmp_path, "2012-11-21T21:30:00Z")

    assert r.exit_code == 2 and "set APCA_API_KEY_ID and APCA_API_SECRET_KEY" in r.stderr
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------- the plan
def test_the_plan_expands_legs_and_adds_benchmarks_at_1day():
    pf = params_file([entry("AAPL", regime="up_normal"), entry(strategy="pairs", symbol="KO/PEP", params={}),
                      entry(strategy="rotation", symbol="XLK,XLF/SPY", params={})])
    pf = pf.model_copy(update={"data": pf.data.model_copy(update={"timeframe": "5Min", "benchmark": "QQQ"})})

    got = plan(pf, {"symbols": ["MSFT"], "timeframe": "1Day", "benchmark": "DIA"})

    assert got.bars == {"1Day": ("AAPL", "DIA", "KO", "MSFT", "PEP", "QQQ", "SPY", "XLF", "XLK"),
                        "5Min": ("AAPL", "KO", "MSFT", "PEP", "SPY", "XLF", "XLK")}
    assert got.regimes == ("DIA", "QQQ")


def test_the_plan_brings_the_nightlys_swept_pairs_and_baskets_legs_up_to_date():
    got = plan(None, {"symbols": ["AAPL"], "pairs": ["MSFT/IBM"], "rotation": ["GOOG,FB/SPY"]})

    assert got.bars == {"1Day": ("AAPL", "FB", "GOOG", "IBM", "MSFT", "SPY")}
    with pytest.raises(LakeError, match="nightly parameter rotation must be a list of names"):
        plan(None, {"rotation": "GOOG,FB/SPY"})


# --------------------------------------------------------------------------------------- alerts
def test_an_alert_without_a_webhook_is_a_critical_log_record(caplog):
    from live_bridge import alerts

    with caplog.at_level(logging.WARNING):
        assert send_alert("evening 2012-11-21: ingest failed: x", {"job": "evening"}, {}) == "sent"
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == alerts.ALERT_LOG.name] == [
        (logging.CRITICAL, "[critical] job_failed: evening 2012-11-21: ingest failed: x")]


def test_a_live_fill_the_shadow_backtest_did_not_make_is_a_divergence_and_alerted(tmp_path, hermetic):
    from live_bridge.ports import Fill
    from live_bridge.state import StateStore

    in_force(tmp_path)
    state = live_state(tmp_path)
    with StateStore(state / "state.db") as store:  # a fill of the day no backtest of the params makes
        store.record_fill(Fill("x-1", "id-1", "manual-1", "AAPL", "buy", 3, 80.0,
                               datetime(2012, 11, 21, 15, 0, tzinfo=UTC)), "sma_cross")

    r = evening(tmp_path, "2012-11-21T21:30:00Z")

    assert r.exit_code == 0, r.output  # a divergence is news, not a failed evening
    report = status_of(tmp_path, "2012-11-21")["steps"][3]
    assert report["ok"] is True and report["message"].startswith("DIVERGED: 2012-11-21: DIVERGED (1 of 1 fills)")
    [run] = (tmp_path / "runs" / "2012-11-21").glob("evening-*")
    doc = json.loads((run / "live-report.json").read_text())
    assert doc["ok"] is False and doc["counts"]["extra"] == 1
    [alert] = hermetic.alerts
    assert (alert["kind"], alert["severity"]) == ("divergence", "warning")
    assert "extra" in alert["message"] or "DIVERGED" in alert["message"]
