"""`tradelab live` as a long-running process (live_bridge/daemon.py), against the simulator on loopback:
a broker that is down at start, an all-flat params file, reloads (good, invalid, refused) without a
restart, and `tradelab live status` naming the file the process actually trades. The runner is the
real command in its own process; alerts go to a real local webhook receiver."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from data_lake import Lake
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.params_store import install, write_candidate
from research.params import DataWindow, ExitRulesModel
from tests import webhook
from tests.kit import entry, params_file
from tests.soak.kit import Live, hermetic_env, simulator

START = "2012-06-01"


@pytest.fixture()
def world(tmp_path):
    lake = Lake(tmp_path / "lake")
    cut = pd.Timestamp(START, tz="America/New_York")
    frames = {}
    for s in ("AAPL", "MSFT", "IBM"):
        bars = sample_bars(s)
        lake.write_bars(s, "1Day", bars[bars["ts"] < cut].reset_index(drop=True), sample_meta())
        frames[s] = bars[bars["ts"] >= cut][["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    return tmp_path, frames


@pytest.fixture()
def receiver():
    with webhook.receiver("/hook/SECRET-TOKEN-123") as r:
        yield r


def pf_with(symbols, flat=False, previous=None):
    entries = [entry(symbol=s, status="flat", out_of_sample=None, deflated_sharpe=None) if flat else entry(symbol=s)
               for s in symbols]
    return params_file(entries, data=DataWindow(timeframe="1Day", start="2010-01-04", end="2012-05-31",
                                                symbols=list(symbols), bars_hash={s: "x" for s in symbols}),
                       promoted=not flat, previous=previous)


def cli(work: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradelab", *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_broker_down_at_start_is_retried_with_backoff_then_trading_starts(world, receiver):
    work, frames = world
    install(pf_with(["AAPL"]), work / "params")
    key, secret = "dmn-" + secrets.token_hex(4), secrets.token_hex(16)
    with socket.socket() as s:  # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url, got = receiver
    live = Live(work, f"http://127.0.0.1:{port}", hermetic_env(key, secret, TRADELAB_ALERT_WEBHOOK=url), "--poll", "0.05")
    live.log = open(work / "live.log", "a")  # noqa: SIM115
    live.proc = subprocess.Popen([sys.executable, "-m", "tradelab", "live", "--url", live.url, "--poll", "0.05",
                                  "--lake", "lake"], cwd=work, env=live.env, stdout=live.log, stderr=subprocess.STDOUT)
    try:
        down = live.wait(lambda s: (s.get("broker") or {}).get("ok") is False, "the broker to be seen down", 30)
        assert "params" not in down and live.proc.poll() is None
        time.sleep(4.0)  # a few tries with backoff (1, 2, 5 s ...)
        with simulator(frames, "1Day", key, secret, port=port)[0]:
            up = live.wait(lambda s: s.get("idle") and "params" in s, "the runner to start once the broker is up", 60)
            assert up["broker"]["ok"] is True and up["sleeves"] == ["sma_cross AAPL"]
            live.stop()
    finally:
        if live.proc.poll() is None:
            live.proc.kill()
    text = (work / "live.log").read_text()
    assert "broker unreachable reading the clock (try 1)" in text and "(try 3)" in text
    assert "Traceback" not in text
    assert [b["alert"]["kind"] for b in got] == ["broker_unreachable"]
    assert "SECRET-TOKEN-123" not in text and key not in text and secret not in text


def test_flat_params_idle_then_reloads_good_bad_and_refused_files_without_a_restart(world, receiver):
    work, frames = world
    flat = pf_with(["AAPL"], flat=True)
    install(flat, work / "params")  # as after a first rejected nightly: nothing active
    key, secret = "dmn-" + secrets.token_hex(4), secrets.token_hex(16)
    url, got = receiver
    with simulator(frames, "1Day", key, secret)[0] as sim:
        env = hermetic_env(key, secret, TRADELAB_ALERT_WEBHOOK=url)
        live = Live(work, sim.url, env, "--poll", "0.05")
        try:
            live.start()
            s = live.status()
            assert s["params"]["sha256"] == flat.sha256() and s["sleeves"] == [] and s["params"]["active"] == 0

            good = pf_with(["AAPL", "MSFT"], previous=flat.sha256())
            install(good, work / "params")  # what the nightly's install does
            live.wait(lambda s: s["params"]["sha256"] == good.sha256() and s.get("idle"), "the good file")
            assert live.status()["sleeves"] == ["sma_cross AAPL", "sma_cross MSFT"]

            (work / "params" / "current.json").write_text('{"schema_version": 1, "entries": [')  # a torn file
            live.wait(lambda s: any(a.get("event") == "reload_failed" for a in s.get("alerts", [])), "the refusal")
            assert live.status()["params"]["sha256"] == good.sha256()  # the file in force stays

            # valid, but a take-profit without a stop: the runner refuses it (two strategies in one
            # (symbol, regime), its other refusal, is now refused by the params file itself)
            two = params_file([entry(symbol="AAPL", exit_rules=ExitRulesModel(take_profit=0.05))], data=good.data)
            write_candidate(two, work / "params" / "current.json")
            live.wait(lambda s: sum(a.get("event") == "reload_failed" for a in s.get("alerts", [])) >= 2,
                      "the second refusal")
            status = cli(work, env, "live", "status")
            assert status.returncode == 0, status.stderr
            assert f"trades params {good.sha256()[:12]}" in status.stdout
            assert f"({two.sha256()[:12]}) is not what the runner trades yet" in status.stdout

            write_candidate(good, work / "params" / "current.json")  # back to the good one: nothing to do
            assert cli(work, env, "live", "reload").returncode == 0
            live.wait(lambda s: not (live.state / "RELOAD").exists(), "the RELOAD file to be read")
            assert live.status()["params"]["sha256"] == good.sha256()
            live.stop()
        finally:
            if live.proc is not None and live.proc.poll() is None:
                live.proc.kill()
    lines = [json.loads(x) for x in (live.state / "decisions.jsonl").read_text().splitlines()]
    assert [x["sha256"] for x in lines if x["event"] == "reload"] == [good.sha256()]
    refusals = [x["message"] for x in lines if x["event"] == "reload_failed"]
    assert len(refusals) == 2 and "take_profit but no stop_loss" in refusals[1]
    kinds = [b["alert"]["kind"] for b in got]
    assert kinds.count("reload_failed") == 2
    text = (work / "live.log").read_text()
    assert "Traceback" not in text and "SECRET-TOKEN-123" not in text


@pytest.mark.parametrize(("now", "tf", "bar"), [
    ("2024-03-13 12:00", "1Day", "2024-03-13 00:00"),  # during a session: that session's bar
    ("2024-03-13 17:30", "1Day", "2024-03-13 00:00"),  # after the close: its decision fills at the next open
    ("2024-03-14 08:00", "1Day", "2024-03-13 00:00"),  # before the open: yesterday's bar is still ahead
    ("2024-03-16 10:00", "1Day", "2024-03-15 00:00"),  # a Saturday: Friday's bar fills on Monday
    ("2024-03-13 12:00:30", "1Min", "2024-03-13 12:00"),  # the minute in progress
    ("2024-03-13 12:07", "5Min", "2024-03-13 12:05"),
    ("2024-03-13 18:00", "1Min", "2024-03-13 15:59"),  # after the close: the session's last bar
    ("2024-11-29 14:00", "1Min", "2024-11-29 12:59"),  # after a half day's 13:00 close
])
def test_a_fresh_runner_anchors_at_the_first_bar_whose_fill_is_still_ahead(now, tf, bar):
    from live_bridge.daemon import first_actionable_bar

    got = first_actionable_bar(pd.Timestamp(now, tz="America/New_York"), tf)

    assert pd.Timestamp(got, unit="us", tz="UTC") == pd.Timestamp(bar, tz="America/New_York")
