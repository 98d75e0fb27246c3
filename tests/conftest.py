"""Shared fixtures: real lakes in temp folders, small hand-made bar frames on real NYSE sessions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_lake import Batch, Lake
from data_lake.sources.sample import SYMBOLS, sample_bars, sample_meta


def pytest_configure(config: pytest.Config) -> None:
    """Hermetic: the caller's TRADELAB_* and APCA_* variables (a lake, keys, a test clock) never reach a test;
    a test that needs one sets it itself."""
    for name in [n for n in os.environ if n.startswith(("TRADELAB_", "APCA_"))]:
        del os.environ[name]


@pytest.fixture()
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A lake holding the real sample daily bars (read-only for tests)."""
    lk = Lake(tmp_path_factory.mktemp("sample") / "lake")
    for sym in SYMBOLS:
        lk.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    return lk


@pytest.fixture()
def sample_lake_rw(tmp_path: Path) -> Lake:
    """A fresh lake with the sample daily bars, for tests that write (sweeps, regimes)."""
    lk = Lake(tmp_path / "lake")
    lk.write_many([Batch(sym, "1Day", sample_bars(sym), sample_meta()) for sym in SYMBOLS])
    return lk
