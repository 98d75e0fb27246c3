"""Fixtures the dashboard tests share (live, research and control pages alike).

* ``replay_world``: a real replay (the live runner through alpaca-py against the simulator, in
  lockstep) of two symbols over a few weeks, ending with a position held under an OCO stop and
  take-profit: its runner folder (state.db, decisions.jsonl), the params folder with the file it
  traded, an empty runs/ folder and the lake. Made once per session; tests copy it to change it.
* ``copy_world(tmp_path)``: a private copy of that world (to add a HALT, an alert, a damaged file).
* ``serve_dashboard(cfg)``: the dashboard app on a free loopback port in a thread (uvicorn), as a
  context manager giving its base URL.
* ``browser``: one headless Chromium for the module (``tests/browser.py``; skipped without one).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from dashboard import DashboardConfig, create_app

SYMBOLS = ("AAPL", "MSFT")
START, END = "2012-10-01", "2012-11-09"  # ends with MSFT held under its OCO stop and target


@dataclass(frozen=True)
class World:
    """A runner folder from a real replay, and the folders the dashboard reads beside it."""

    root: Path
    state_dir: Path
    params_dir: Path
    runs_dir: Path
    lake: Path

    def config(self, **over) -> DashboardConfig:
        """A config reading this world (loopback, no token, a fast refresh)."""
        cfg = DashboardConfig(state_dir=self.state_dir, params_dir=self.params_dir, runs_dir=self.runs_dir,
                              lake=self.lake, refresh=0.2)
        return replace(cfg, **over)


def traded_params():
    """sma_cross 3/8 on AAPL and MSFT with a 3% stop and a 6% take-profit (an OCO at the broker)."""
    from research.params import DataWindow, ExitRulesModel
    from tests.kit import entry, params_file

    rules = ExitRulesModel(stop_loss=0.03, take_profit=0.06, allow_short=False)
    entries = [entry(symbol=s, params={"fast": 3, "slow": 8, "short": False}, exit_rules=rules) for s in SYMBOLS]
    data = DataWindow(timeframe="1Day", start="2010-01-04", end="2012-09-28", symbols=list(SYMBOLS),
                      bars_hash={s: "x" for s in SYMBOLS})
    return params_file(entries, data=data)


@pytest.fixture(scope="session")
def replay_world(tmp_path_factory) -> World:
    from data_lake import Lake
    from data_lake.sources.sample import sample_bars, sample_meta
    from live_bridge.replay import replay
    from pipeline.params_store import install

    root = tmp_path_factory.mktemp("dashboard-world")
    lake = Lake(root / "lake")
    for s in SYMBOLS:
        lake.write_bars(s, "1Day", sample_bars(s), sample_meta())
    pf = traded_params()
    install(pf, root / "params")
    state = root / "runs" / "live" / "parity-20121109T000000"
    result = replay(lake, pf, START, END, work_dir=state)
    assert result.errors == [] and len(result.fills) >= 4, "the world needs trades to show"
    (state / "state.db.lock").unlink(missing_ok=True)
    return World(root, state, root / "params", root / "runs", root / "lake")


@pytest.fixture()
def copy_world(replay_world, tmp_path) -> World:
    """A private copy of the replay world (the session's stays untouched)."""
    root = tmp_path / "world"
    shutil.copytree(replay_world.root, root, ignore=shutil.ignore_patterns("lake"))
    rel = replay_world.state_dir.relative_to(replay_world.root)
    return World(root, root / rel, root / "params", root / "runs", replay_world.lake)


@contextmanager
def dashboard_server(cfg: DashboardConfig) -> Iterator[str]:
    """The dashboard for ``cfg`` served on a free loopback port in a thread; yields its base URL."""
    from simulator.server import serve

    with serve(create_app(cfg), host="127.0.0.1", port=0) as server:
        yield server.url


@pytest.fixture()
def serve_dashboard():
    """``with serve_dashboard(cfg) as url:`` the dashboard for ``cfg`` on a free loopback port."""
    return dashboard_server


@pytest.fixture(scope="module")
def browser():
    from tests.browser import Chromium

    with Chromium(timeout=60.0) as b:
        yield b
