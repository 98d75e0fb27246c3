"""The live page follows a running `tradelab live` bar by bar, without a reload, and no key reaches any
page or response.

The runner is the real command in its own process (tests/soak/kit.py's ``Live``), trading the
simulator through alpaca-py; the test steps the simulator's clock in lockstep with the runner's
status.json. The dashboard serves the runner's folder from a thread of the test process, whose
environment holds the same keys (as a dashboard started from the runner's shell would).
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request

import pandas as pd
import pytest

from dashboard import create_app
from data_lake import Lake
from data_lake.sources.sample import sample_bars, sample_meta
from live_bridge.state import StateStore
from pipeline.params_store import install
from research.params import DataWindow, ExitRulesModel
from tests.kit import entry, params_file
from tests.soak.kit import Live, Lockstep, hermetic_env, simulator

from .conftest import World
from .test_live_page import ROWS, _num

START, STEPS = "2012-06-01", 8
SYMBOLS = ("AAPL", "MSFT")


@pytest.fixture()
def runner_world(tmp_path):
    lake = Lake(tmp_path / "lake")
    cut = pd.Timestamp(START, tz="America/New_York")
    frames = {}
    for s in SYMBOLS:
        bars = sample_bars(s)
        lake.write_bars(s, "1Day", bars[bars["ts"] < cut].reset_index(drop=True), sample_meta())
        frames[s] = bars[bars["ts"] >= cut][["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    entries = [entry(symbol=s, params={"fast": 2, "slow": 4, "short": False},
                     exit_rules=ExitRulesModel(stop_loss=0.05, allow_short=False)) for s in SYMBOLS]
    install(params_file(entries, data=DataWindow(timeframe="1Day", start="2010-01-04", end="2012-05-31",
                                                 symbols=list(SYMBOLS), bars_hash={s: "x" for s in SYMBOLS})),
            tmp_path / "params")
    world = World(tmp_path, tmp_path / "runs" / "live", tmp_path / "params", tmp_path / "runs", tmp_path / "lake")
    return world, frames


def _get_paths(routes) -> list[str]:
    """Every GET path without a parameter, through included routers (FastAPI keeps them nested)."""
    out = []
    for r in routes:
        if hasattr(r, "original_router"):
            out += _get_paths(r.original_router.routes)
        elif "GET" in (getattr(r, "methods", None) or ()) and "{" not in r.path:
            out.append(r.path)
    return out


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:  # an error page is a response too: it must not hold a key either
        return exc.read().decode(errors="replace")


def _events(url: str, size: int = 4096) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read(size).decode(errors="replace")


def test_the_page_follows_the_runner_bar_by_bar_and_shows_no_key(runner_world, serve_dashboard, browser, monkeypatch):
    world, frames = runner_world
    key, secret = "dash-" + secrets.token_hex(4), secrets.token_hex(16)
    monkeypatch.setenv("APCA_API_KEY_ID", key)
    monkeypatch.setenv("APCA_API_SECRET_KEY", secret)
    served, clock, sim_broker = simulator(frames, "1Day", key, secret)
    with served as sim:
        live = Live(world.root, sim.url, hermetic_env(key, secret), "--poll", "0.05")
        live.start()
        try:
            step = Lockstep(clock, sim_broker, live)
            with serve_dashboard(world.config(refresh=0.1)) as url, browser.open(url + "/") as page:
                page.evaluate("window.__loaded = 'once'")
                seen_bars, seen_positions = [], []
                for _ in range(STEPS):
                    step.step()
                    due = max(live.status()["last_bar"].values())
                    page.wait(f"document.getElementById('last-bar').dataset.iso === {due!r}", what=f"bar {due}")
                    seen_bars.append(due)
                    seen_positions.append(tuple((r.get("symbol"), r.get("qty")) for r in page.evaluate(ROWS % "positions")))
                shown = page.evaluate(ROWS % "positions")
                broker = page.evaluate("document.getElementById('broker-state').textContent")
                loaded, updates = page.evaluate("window.__loaded"), page.evaluate("Number(document.body.dataset.updates)")
                html = page.evaluate("document.documentElement.outerHTML")
                errors = page.errors
                bodies = [html, _events(url + "/live/events")]
                routes = [p for p in _get_paths(create_app(world.config()).routes) if p != "/live/events"]
                bodies += [_get(url + path) for path in routes]
        finally:
            live.stop()
    with StateStore(world.state_dir / "state.db", read_only=True) as store:
        held = sorted((p.symbol, p.qty) for p in store.positions().values() if p.qty)

    assert errors == []
    assert loaded == "once" and updates >= STEPS, "the page must update in place, never reload"
    assert len(set(seen_bars)) == STEPS, "each bar shows as it arrives"
    assert len(set(seen_positions)) >= 2, "the positions shown must change while the runner trades"
    assert sorted((r["symbol"], _num(r["qty"])) for r in shown) == held
    assert broker == "connected"
    assert "/" in routes and "/live/snapshot.json" in routes
    for body in bodies:
        assert key not in body and secret not in body
