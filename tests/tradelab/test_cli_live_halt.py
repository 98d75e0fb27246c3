"""`tradelab live halt` as a user runs it in an emergency: HALT first, then the broker with a bounded
wait; exit 0 (flat), 3 (broker out of reach: the runner will flatten) or 4 (partly done), one report
line per fact on stdout, never a traceback. The broker is the simulator on loopback, reached through
the real alpaca-py client; the command is a real process with a hermetic environment."""

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

from data_lake.sources.sample import sample_bars
from live_bridge.alpaca import AlpacaBroker
from live_bridge.ports import OrderIntent
from simulator.ledger import Asset
from tests.soak.kit import hermetic_env, simulator

START = "2012-06-01"


@pytest.fixture(scope="module")
def frames():
    cut = pd.Timestamp(START, tz="America/New_York")
    out = {}
    for s in ("AAPL", "MSFT", "IBM"):
        bars = sample_bars(s)
        out[s] = bars[bars["ts"] >= cut][["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    return out


@pytest.fixture()
def keys():
    return "halt-" + secrets.token_hex(4), secrets.token_hex(16)


def halt(work: Path, keys: tuple[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradelab", "live", "halt", "--state-dir", "runs/live", *args],
                          cwd=work, env=hermetic_env(*keys), capture_output=True, text=True, timeout=120)


def halt_file(work: Path) -> dict:
    return json.loads((work / "runs" / "live" / "HALT").read_text())


def an_account(sim, clock, keys) -> AlpacaBroker:
    """AAPL 10 and MSFT 5 held (bought at the first open), and an IBM limit order that cannot fill."""
    broker = AlpacaBroker(*keys, url_override=sim.url, retry_wait=0)
    broker.submit(OrderIntent("manual-aapl", "AAPL", "buy", 10))
    broker.submit(OrderIntent("manual-msft", "MSFT", "buy", 5))
    clock.step()
    broker.submit(OrderIntent("manual-ibm", "IBM", "buy", 3, type="limit", limit_price=1.0, time_in_force="gtc"))
    assert {s: p.qty for s, p in broker.positions().items()} == {"AAPL": 10, "MSFT": 5}
    return broker


def test_halt_with_the_broker_unreachable_writes_halt_pending_and_exits_3_within_the_wait(tmp_path, keys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    t0 = time.monotonic()
    r = halt(tmp_path, keys, "--url", f"http://127.0.0.1:{port}", "--wait", "2")
    took = time.monotonic() - t0

    assert r.returncode == 3, r.stdout + r.stderr
    assert took < 2 + 8, took  # the wait, plus the interpreter's start
    doc = halt_file(tmp_path)
    assert doc["flatten"] == "pending" and doc["by"] == "tradelab live halt" and doc["cli_until"] is None
    pd.Timestamp(doc["halted_at"])
    assert "broker not reachable within 2s" in r.stdout
    assert "closing orders sent: none confirmed" in r.stdout and "halt: 0 closing orders sent" in r.stdout
    assert "the runner, if running, stops trading at its next poll and flattens the account itself" in r.stdout
    for text in (r.stdout, r.stderr):
        assert "Traceback" not in text and keys[0] not in text and keys[1] not in text


def test_halt_cancels_and_closes_everything_then_the_account_is_flat(tmp_path, frames, keys):
    served, clock, sim_broker = simulator(frames, "1Day", *keys)
    with served as sim:
        broker = an_account(sim, clock, keys)

        r = halt(tmp_path, keys, "--url", sim.url, "--wait", "10")

        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert "orders cancelled: 1 (IBM limit buy)" in lines
        assert "closing orders sent: AAPL sell 10, MSFT sell 5" in lines
        assert "still open: AAPL 10 (closing order working); MSFT 5 (closing order working)" in lines
        assert "halt: 2 closing orders sent; every order cancelled" in r.stdout
        doc = halt_file(tmp_path)
        assert doc["flatten"] == "done" and doc["cancelled"] == 1
        assert doc["closing_orders"] == [{"symbol": "AAPL", "side": "sell", "qty": 10.0},
                                         {"symbol": "MSFT", "side": "sell", "qty": 5.0}]
        clock.step()  # the closing market orders fill at the next open
        assert broker.positions() == {} and broker.open_orders() == []
        assert sim_broker.positions_json() == []
    assert "Traceback" not in r.stderr and keys[1] not in r.stdout + r.stderr


def test_halt_that_the_broker_refuses_in_part_exits_4_and_names_what_is_still_open(tmp_path, frames, keys):
    served, clock, sim_broker = simulator(frames, "1Day", *keys)
    with served as sim:
        broker = an_account(sim, clock, keys)
        sim_broker.assets["AAPL"] = Asset("AAPL", tradable=False)  # its close is refused: a 207 with one refusal

        r = halt(tmp_path, keys, "--url", sim.url, "--wait", "10")

        assert r.returncode == 4, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert "orders cancelled: 1 (IBM limit buy)" in lines
        assert "closing orders sent: MSFT sell 5" in lines
        assert any(x.startswith("refused by the broker: close_all could not close AAPL: 422") for x in lines), lines
        assert "still open: AAPL 10 (NO closing order); MSFT 5 (closing order working)" in lines
        assert "PARTLY DONE (exit 4)" in r.stdout
        assert halt_file(tmp_path)["flatten"] == "pending"  # the runner flattens what is left
        clock.step()
        assert {s: p.qty for s, p in broker.positions().items()} == {"AAPL": 10}
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("wait", ["nan", "inf", "-1", "3601"])
def test_halt_wait_must_be_finite_and_bounded(tmp_path, keys, wait):
    r = halt(tmp_path, keys, "--url", "http://127.0.0.1:9", "--wait", wait)

    assert r.returncode == 2 and "--wait must be a finite number of seconds from 0 to 3600" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs" / "live" / "HALT").exists()


def test_halt_with_wrong_or_no_keys_is_not_retried_and_leaves_the_flatten_to_the_runner(tmp_path, frames, keys):
    served, _, _ = simulator(frames, "1Day", *keys)
    with served as sim:
        t0 = time.monotonic()
        wrong = halt(tmp_path, (keys[0], "not-the-secret"), "--url", sim.url, "--wait", "30")
        took = time.monotonic() - t0
    none = subprocess.run([sys.executable, "-m", "tradelab", "live", "halt", "--state-dir", "runs/live", "--wait", "1"],
                          cwd=tmp_path, env=hermetic_env("", ""), capture_output=True, text=True, timeout=120)

    assert wrong.returncode == 3 and took < 15, (took, wrong.stdout + wrong.stderr)  # a 401: no retry for 30 s
    assert "broker refused the request: BrokerError: 401" in wrong.stdout
    assert none.returncode == 3 and "broker not contacted: set APCA_API_KEY_ID" in none.stdout
    assert halt_file(tmp_path)["flatten"] == "pending"
    for r in (wrong, none):
        assert "Traceback" not in r.stdout + r.stderr and "not-the-secret" not in r.stdout + r.stderr
