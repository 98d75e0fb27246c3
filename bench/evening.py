"""The evening job's steps for 100 symbols of daily bars: ingest, regimes, nightly, report; prints one table.

    python bench/evening.py [--symbols 100] [--days 1000] [--day 2025-12-30]

Setup: N synthetic daily symbols (``data_lake.sources.synthetic``, labelled synthetic), ``--days``
sessions each up to ``--day``. The lake holds every bar before ``--day``; the Alpaca-compatible
simulator (in this process, on loopback) serves them all, so the evening fetches exactly one new
session per symbol through the real alpaca-py client. The params in force hold one per-regime
sma_cross entry per symbol and no benchmark, so the regimes step labels every symbol (the live
bridge's own-regime case, the heaviest). The nightly is the real notebook with a small grid
(sma_cross fast 5/10 x slow 50, a 2% stop, 3 years, walk-forward 1y:6m) over all N symbols. The
report step is the shadow backtest of every symbol's sleeve from a runner's anchor 90 days back
(``live_bridge.shadow.run_for_day``) and the day's report (no live fills: every expected one is missed). The evening runs once, through ``tradelab.evening.run_evening``
(what ``tradelab evening`` calls); numba kernels are warmed first, as a scheduled machine has them cached.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere (imports are inside the functions)

KEY, SECRET = "bench-key", "bench-secret"
NIGHTLY = """notebook = "{notebook}"
runs_dir = "{runs}"
[parameters]
symbols = {symbols}
strategies = ["sma_cross"]
grids = {{sma_cross = {{fast = [5, 10], slow = [50]}}}}
lookback = "3y"
walk_forward = "1y:6m"
stop_loss = [0.02]
min_trades = 1
"""


def params_file(symbols: list[str], end: date):
    """One per-regime sma_cross entry per symbol (gated), daily, no benchmark: own regimes."""
    from research.params import DataWindow, Entry, ExitRulesModel, Metrics, ParamsFile, RunInfo, SelectionInfo
    from research.params import EntryVerdict, GateThresholds, Verdict

    m = Metrics(**{k: 1.0 for k in Metrics.model_fields})
    rules = ExitRulesModel(stop_loss=0.02, allow_short=False)
    entries = [Entry(strategy="sma_cross", symbol=s, regime="up_normal", status="active",
                     params={"fast": 5, "slow": 20}, exit_rules=rules,
                     in_sample=m, out_of_sample=m, oos_trades=50, n_trials=1, deflated_sharpe=0.99, pbo=0.1,
                     stability=0.9, gate=EntryVerdict(passed=True)) for s in symbols]
    return ParamsFile(schema_version=1, created_at=pd.Timestamp("2025-01-02", tz="UTC").to_pydatetime(),
                      code_version="bench",
                      run=RunInfo(job="manual", notebook="bench/evening.py", run_dir="bench"),
                      data=DataWindow(timeframe="1Day", start=date(2022, 1, 3), end=end, symbols=symbols,
                                      bars_hash={s: "synthetic" for s in symbols}),
                      selection=SelectionInfo(objective="sharpe", min_trades=1), gate=GateThresholds(),
                      verdict=Verdict(promoted=True, reasons=("bench",)), entries=entries)


def setup(root: Path, symbols: list[str], days: int, seed: int, day: str) -> tuple[dict, float]:
    """The lake (every bar before ``day``), the params in force, the live state; the simulator's frames."""
    from data_lake import Batch, Lake
    from data_lake.sources.synthetic import synthetic_bars, synthetic_meta
    from pipeline.params_store import write_candidate

    t0 = time.perf_counter()
    frames = {s: synthetic_bars(s, days, seed, end=day, timeframe="1Day", start_price=100.0) for s in symbols}
    cut = pd.Timestamp(day, tz="America/New_York")
    Lake(root / "lake").write_many([Batch(s, "1Day", f[f["ts"] < cut], synthetic_meta())
                                    for s, f in frames.items()])
    pf = params_file(symbols, (cut - pd.Timedelta(days=1)).date())
    write_candidate(pf, root / "params" / "current.json")
    (root / "runs" / "live").mkdir(parents=True)
    from live_bridge.state import StateStore
    from research.params import dumps

    with StateStore(root / "runs" / "live" / "state.db") as store:  # a runner trading pf for 60 sessions
        store.set_anchor(int((cut - pd.Timedelta(days=90)).tz_convert("UTC").value // 1000))
        store.record_epoch(0, pf.sha256(), dumps(pf).decode(), "params/current.json")
    (root / "nightly.toml").write_text(NIGHTLY.format(
        notebook=ROOT / "notebooks" / "nightly_optimize.ipynb", runs=root / "runs",
        symbols="[" + ", ".join(f'"{s}"' for s in symbols) + "]"))
    return {(s, "1Day"): f for s, f in frames.items()}, time.perf_counter() - t0


def run_evening(root: Path, url: str, day: str):
    from tradelab import evening as ev
    from tradelab.cli.jobs import _install, _paths
    from tradelab.jobs import load_config

    cfg = load_config(root / "nightly.toml", "nightly")
    overrides = _paths("nightly", dict(cfg.parameters),
                       {"lake": str(root / "lake"), "params_dir": str(root / "params")})
    settings = ev.Settings(
        now=datetime.fromisoformat(f"{day}T21:30:00").replace(tzinfo=UTC), lake=root / "lake",
        params_path=root / "params" / "current.json",
        nightly=ev.NightlyJob(cfg, overrides, lambda run_dir: _install(run_dir, root / "params")),
        keys=lambda: (KEY, SECRET), state_dir=root / "runs" / "live", url=url)
    return ev.run_evening(settings)


def warm() -> None:
    """Calendar, numba kernels (cached on disk), regime code: as a machine that ran yesterday has them."""
    from data_lake.calendar import nyse
    from data_lake.sources.synthetic import synthetic_bars
    from research.regimes import RegimeParams, regimes_from_daily

    nyse()
    f = synthetic_bars("WARM", 400, 0, timeframe="1Day")
    ts = f["ts"].to_numpy(dtype="datetime64[us]").view("int64")
    regimes_from_daily(ts, *(f[c].to_numpy() for c in ("open", "high", "low", "close")), RegimeParams())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--days", type=int, default=1000, help="sessions of history per symbol")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--day", default="2025-12-30", help="the evening's session (a full day)")
    args = ap.parse_args()
    from simulator import market_data_app, serve

    symbols = [f"SYN{i:03d}" for i in range(args.symbols)]
    warm()
    with tempfile.TemporaryDirectory(prefix="tradelab-bench-evening-") as tmp:
        root = Path(tmp)
        frames, setup_s = setup(root, symbols, args.days, args.seed, args.day)
        with serve(market_data_app(frames, api_key=KEY, secret_key=SECRET)) as sim:
            t0 = time.perf_counter()
            result = run_evening(root, sim.url, args.day)
            total = time.perf_counter() - t0
            requests = len(sim.state.requests.all("/v2/stocks/bars"))
        render(result, total, len(symbols), [
            f"setup (generate {len(symbols)} x {args.days} daily bars, write the lake): {setup_s:.1f} s",
            f"{requests} bars request(s) to the simulator (in this process, sharing its GIL)",
            f"evening {args.day}: {'ok' if result.ok else 'FAILED'}, exit {result.exit_code}"])


def render(result, total: float, n: int, notes: list[str]) -> None:
    table = Table(title=f"tradelab evening, {n} symbols of daily bars", title_justify="left",
                  caption="\n".join(notes), caption_justify="left")
    for name in ("step", "seconds", "per symbol (ms)", "outcome"):
        table.add_column(name, justify="left" if name in ("step", "outcome") else "right")
    for s in result.steps:
        outcome = s.message if s.skipped else ("ok: " if s.ok else "FAILED: ") + s.message
        table.add_row(s.name, f"{s.seconds:.2f}", f"{s.seconds / n * 1000:.1f}", outcome[:110])
    table.add_row("whole evening", f"{total:.2f}", f"{total / n * 1000:.1f}", "lock, status.json, the steps")
    Console(width=200).print(table)
    if not result.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
