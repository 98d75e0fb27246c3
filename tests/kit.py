"""Builders the tests share: valid params files, entries and metrics to edit, minute bars on real
sessions, a lake's digest. Import them from here (``from tests.kit import entry, params_file``)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from data_lake.calendar import US_PER_MIN, nyse
from research.params import (
    DataWindow,
    Entry,
    EntryVerdict,
    ExitRulesModel,
    GateThresholds,
    Metrics,
    ParamsFile,
    RunInfo,
    SelectionInfo,
    Verdict,
    dumps,
)

CREATED = datetime(2024, 5, 2, 22, 5, 1, tzinfo=timezone.utc)


def metrics(**over: float | None) -> Metrics:
    """Plausible metrics of a decent backtest; override any of them."""
    base = dict(total_return=0.31, cagr=0.09, sharpe=1.1, sortino=1.6, max_drawdown=-0.12, calmar=0.75,
                win_rate=0.55, profit_factor=1.4, expectancy=0.012, trades=25.0, exposure=0.48)
    return Metrics(**{**base, **over})


def entry(symbol: str = "AAPL", regime: str = "all", params: dict | None = None, **over) -> Entry:
    """A candidate that passes the default gate (sma_cross fast 10 / slow 50); override any field."""
    values = dict(strategy="sma_cross", symbol=symbol, regime=regime, status="active",
                  params={"fast": 10, "slow": 50} if params is None else params, exit_rules=ExitRulesModel(),
                  in_sample=metrics(), out_of_sample=metrics(sharpe=0.8), oos_trades=25, n_trials=120,
                  deflated_sharpe=0.97, pbo=0.2, stability=0.8, gate=EntryVerdict(passed=True), source="candidate")
    return Entry(**{**values, **over})


def params_file(entries: list[Entry] | None = None, promoted: bool = True, previous: str | None = None,
                **over) -> ParamsFile:
    """A valid params file over AAPL and MSFT daily bars."""
    values = dict(
        schema_version=1, created_at=CREATED, code_version="abc1234",
        run=RunInfo(job="nightly", notebook="notebooks/nightly.ipynb", run_dir="runs/2024-05-02"),
        data=DataWindow(timeframe="1Day", start=date(2015, 1, 2), end=date(2024, 5, 1), symbols=["AAPL", "MSFT"],
                        bars_hash={"AAPL": "a1b2c3", "MSFT": "d4e5f6"}, benchmark="SPY"),
        selection=SelectionInfo(objective="sharpe", walk_forward="2y:6m", min_trades=5, sweep_ids=["s1"]),
        gate=GateThresholds(), verdict=Verdict(promoted=promoted, reasons=("test",), previous_sha256=previous),
        entries=[entry()] if entries is None else entries)
    return ParamsFile(**{**values, **over})


def edited(pf: ParamsFile, edit) -> str:
    """The file's JSON after a hand edit (edit mutates the parsed dict)."""
    doc = json.loads(dumps(pf))
    edit(doc)
    return json.dumps(doc, indent=2)



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
