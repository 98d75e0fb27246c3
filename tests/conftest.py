"""Shared fixtures: real lakes in temp folders, small hand-made bar frames on real NYSE sessions."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_lake import Batch, Lake
from data_lake.calendar import US_PER_MIN, nyse
from data_lake.sources.sample import SYMBOLS, sample_bars, sample_meta


def pytest_configure(config: pytest.Config) -> None:
    """Hermetic: the caller's TRADELAB_* and APCA_* variables (a lake, keys, a test clock) never reach a test;
    a test that needs one sets it itself."""
    for name in [n for n in os.environ if n.startswith(("TRADELAB_", "APCA_"))]:
        del os.environ[name]


def minute_bars(dates: list[str], seed: int = 0, price: float = 100.0) -> pd.DataFrame:
    """Valid 1Min bars covering every minute of the given NYSE sessions (half days respected)."""
    s = nyse()
    rng = np.random.default_rng(seed)
    ts = []
    for d in dates:
        i = int(s.dates.searchsorted(pd.Timestamp(d)))
        assert s.dates[i] == pd.Timestamp(d), f"{d} is not a session"
        ts.append(np.arange(s.open_us[i], s.close_us[i], US_PER_MIN))
    ts = np.concatenate(ts)
    n = len(ts)
    close = np.round(price * np.exp(np.cumsum(rng.normal(0, 0.001, n))), 2)
    open_ = np.r_[price, close[:-1]]
    high = np.round(np.maximum(open_, close) + rng.uniform(0, 0.05, n), 2)
    low = np.round(np.minimum(open_, close) - rng.uniform(0, 0.05, n), 2)
    vol = rng.integers(100, 10_000, n).astype(float)
    return pd.DataFrame({
        "ts": pd.to_datetime(ts, unit="us", utc=True), "open": open_, "high": high, "low": low,
        "close": close, "volume": vol, "vwap": np.round((high + low + close) / 3, 4),
        "trade_count": rng.integers(1, 100, n),
    })


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root with the sha256 of its bytes: to prove a lake did not change."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".writer.lock"}


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
