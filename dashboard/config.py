"""The dashboard's settings: built once at the CLI edge (the environment is read there), then passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """Where the dashboard reads from, where it listens, and the control token (None: no control)."""

    state_dir: Path = Path("runs/live")       # the runner's folder: state.db, decisions.jsonl, status.json, HALT
    params_dir: Path = Path("params")         # current.json and its history
    runs_dir: Path = Path("runs")             # nightly / weekend run folders with their reports
    lake: Path = Path("lake")                 # the Parquet lake and its DuckDB catalog
    host: str = "127.0.0.1"
    port: int = 8050
    token: str | None = None                  # TRADELAB_DASHBOARD_TOKEN; never shown on a page or response
    refresh: float = 1.0                      # seconds between the live page's server-sent updates

    @property
    def loopback(self) -> bool:
        """True when the dashboard listens on this machine only."""
        return self.host in LOOPBACK
