"""`tradelab live`, `sim`, `parity` as a user runs them: paper by default, the double opt-in for live,
a runner against the simulator in separate processes, SIGTERM, status, and keys that never leak."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from pipeline.params_store import write_candidate
from research.params import DataWindow, ExitRulesModel
from tests.kit import entry, params_file
from tests.tradelab.test_cli import run

KEY, SECRET = "PKTESTKEY0123456789", "s3cr3t-TEST-abcdefghijklmnopqrstuv"
ENV = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET}


def sma_file(tmp_path, status="active"):
    entries = [entry(symbol=s, regime="all", status=status, params={"fast": 5, "slow": 20, "short": False},
                     exit_rules=ExitRulesModel(stop_loss=0.02, allow_short=False),
                     **({} if status == "active" else {"gate": {"passed": False, "reasons": ["pbo 0.9 > 0.5"]}}))
               for s in ("AAPL", "MSFT")]
    data = DataWindow(timeframe="1Day", start="2000-01-03", end="2012-06-01", symbols=["AAPL", "MSFT"],
                      bars_hash={"AAPL": "x", "MSFT": "y"})
    return write_candidate(params_file(entries, data=data), tmp_path / f"params-{status}.json")


def test_live_needs_keys_and_the_double_opt_in(sample_lake_rw, tmp_path):
    path = sma_file(tmp_path)
    no_keys = {k: "" for k in ENV}
    r = run("live", "--params", str(path), lake=sample_lake_rw.root, env=no_keys)
    assert r.returncode == 2 and "APCA_API_KEY_ID" in r.stderr
    r = run("live", "--live", "--params", str(path), lake=sample_lake_rw.root, env={**ENV, "TRADELAB_LIVE": ""})
    assert r.returncode == 2 and "--live and TRADELAB_LIVE=1" in r.stderr
    r = run("live", "status", "--state-dir", str(tmp_path / "none"))
    assert r.returncode == 2 and "no live runner state" in r.stderr
    flat = sma_file(tmp_path, status="flat")
    r = run("parity", "--params", str(flat), "--start", "2012-03-01", lake=sample_lake_rw.root)
    assert r.returncode == 2 and "no active entry" in r.stderr
    for out in (r.stdout, r.stderr):
        assert KEY not in out and SECRET not in out


def test_live_runner_trades_the_simulator_in_another_process_and_stops_on_sigterm(sample_lake_rw, tmp_path):
    env = {**os.environ, **ENV, "TRADELAB_LAKE": str(sample_lake_rw.root)}
    path = sma_file(tmp_path)
    state = tmp_path / "live"
    # 40000x: a session every ~0.6 s, slower than the runner's 0.2 s poll, so each bar is the newest when it
    # is polled (a bar a newer one already follows is decided but never traded late: the daemon's rule)
    sim = subprocess.Popen([sys.executable, "-m", "tradelab", "sim", "--symbols", "AAPL,MSFT", "--start", "2012-06-01",
                            "--end", "2012-12-01", "--speed", "40000"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    live = None
    try:
        url = re.search(r"simulator at (http://\S+)", sim.stdout.readline()).group(1)
        live = subprocess.Popen([sys.executable, "-m", "tradelab", "live", "--params", str(path), "--url", url,
                                 "--state-dir", str(state), "--poll", "0.2"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        log = state / "decisions.jsonl"
        deadline = time.time() + 90
        while time.time() < deadline and live.poll() is None:
            lines = log.read_text().splitlines() if log.exists() else []
            if sum('"decision"' in x for x in lines) >= 40 and any('"fill"' in x for x in lines):
                break
            time.sleep(0.3)
        assert live.poll() is None, live.stderr.read()
        live.send_signal(signal.SIGTERM)
        out, err = live.communicate(timeout=60)
        assert live.returncode == 0, err[-3000:]
        assert "paper trading 2 active entries" in out
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        assert lines[0]["event"] == "start" and lines[0]["order_sender"].startswith("process ")  # sender.py
        assert sum(x["event"] == "decision" for x in lines) >= 40
        assert any(x["event"] == "fill" for x in lines), "the runner never traded"
        status = run("live", "status", "--state-dir", str(state), "--params", str(path))
        assert status.returncode == 0 and "last decision" in status.stdout
    finally:
        for p in (live, sim):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        sim_out, sim_err = sim.communicate(timeout=30)
    texts = [out, err, status.stdout, status.stderr, sim_out, sim_err]
    texts += [p.read_bytes().decode(errors="replace") for p in state.rglob("*") if p.is_file()]
    for text in texts:
        assert KEY not in text and SECRET not in text, "a key leaked"
        assert "Traceback" not in text


def test_live_status_on_a_damaged_state_store_says_so_and_touches_nothing(tmp_path):
    state = tmp_path / "live"
    state.mkdir()
    (state / "state.db").write_bytes(b"not a database at all " * 200)
    before = (state / "state.db").read_bytes()

    r = run("live", "status", "--state-dir", str(state))

    assert r.returncode == 2, r.stdout + r.stderr
    assert "is damaged and cannot be read" in r.stderr and "Traceback" not in r.stderr
    assert (state / "state.db").read_bytes() == before


def test_live_status_reads_the_store_while_the_runner_holds_it(tmp_path):
    from datetime import UTC, date, datetime

    from live_bridge.ports import Fill, OrderIntent
    from live_bridge.state import StateStore

    state = tmp_path / "live"
    state.mkdir()
    at = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)
    with StateStore(state / "state.db") as runner:  # the runner's store: it holds the writer lock
        runner.record_intent(OrderIntent("c-1", "AAPL", "buy", 10, strategy="smacross"))
        runner.record_fill(Fill("e-1", "o-1", "c-1", "AAPL", "buy", 10, 100.0, at))
        runner.record_halt(date(2024, 1, 2), "smacross", "lost 1.2% today", at=at)

        r = run("live", "status", "--state-dir", str(state))

        assert runner.fill_count() == 1
    assert r.returncode == 0, r.stdout + r.stderr
    assert "smacross" in r.stdout and "AAPL" in r.stdout and "lost 1.2% today" in r.stdout
    assert "flat" not in r.stdout.split("halts")[0]


def test_a_params_path_that_is_a_directory_or_a_pipe_is_one_error_never_a_hang(sample_lake_rw, tmp_path):
    folder = tmp_path / "params-dir"
    folder.mkdir()
    fifo = tmp_path / "params.fifo"
    os.mkfifo(fifo)
    for path, words in ((folder, "a directory"), (fifo, "not a regular file")):
        for args in (["params", "validate", str(path)], ["parity", "--params", str(path)],
                     ["live", "--params", str(path)]):
            r = run(*args, lake=sample_lake_rw.root, env=ENV)
            assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_money_arguments_must_be_finite_and_positive(sample_lake_rw, tmp_path):
    path = sma_file(tmp_path)
    for cash in ("nan", "inf", "-1", "0"):
        for args in (["parity", "--params", str(path), "--cash", cash], ["sim", "--cash", cash]):
            r = run(*args, lake=sample_lake_rw.root, env=ENV)
            assert r.returncode == 2 and "--cash must be a finite amount > 0" in r.stderr, (args, r.stderr)


def test_sim_arguments_are_checked_with_one_line_errors(sample_lake_rw):
    for args, words in ((["--port", "99999"], "--port must be between 0 and 65535"),
                        (["--start", "garbage"], "--start must be a date"),
                        (["--end", "garbage"], "--end must be a date"),
                        (["--speed", "nan"], "--speed must be a finite number")):
        r = run("sim", *args, lake=sample_lake_rw.root, env=ENV)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_strategy_budgets_are_checked_with_one_line_errors(sample_lake_rw, tmp_path):
    path = sma_file(tmp_path)
    for spec, words in (("sma_cross", "must be NAME=FRACTION"), ("=0.1", "must be NAME=FRACTION"),
                        ("nope=0.1", "unknown strategy 'nope'"), ("sma_cross=x", "'x' is not a number"),
                        ("sma_cross=1.5", "strategy_budgets['sma_cross'] must be in (0, 1]"),
                        ("sma_cross=0", "must be in (0, 1]"), ("sma_cross=nan", "must be in (0, 1]")):
        r = run("live", "--params", str(path), "--strategy-budget", spec, lake=sample_lake_rw.root, env=ENV)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (spec, r.stderr)


def test_a_strategy_budget_given_overrides_only_its_strategy():
    from live_bridge.daemon import Daemon
    from live_bridge.risk import DEFAULT_BUDGETS

    d = Daemon(None, "p.json", "k", "s", budgets={"sma_cross": 0.05})
    assert d.budgets == {**DEFAULT_BUDGETS, "sma_cross": 0.05} and DEFAULT_BUDGETS["pairs"] == 0.25
