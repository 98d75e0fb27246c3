"""Throughput of each single-symbol strategy's signal function (and of the exit simulation) on one
symbol's bars; prints one table.

    python bench/signals.py                 # 1M bars, median of 3 warm runs
    python bench/signals.py --bars 200000   # a quick check

Bars are a seeded random walk built here: daily-style bars (one session each) for the daily
strategies, and 1Min bars on real NYSE sessions (390 a day, half days 210) with overnight gaps for
the intraday ones. Every row is timed warm: one call compiles (or loads the numba cache) first.
Default params with ``short=True``, so both sides are computed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from anywhere

from data_lake.calendar import US_PER_MIN, nyse  # noqa: E402
from research.bars import Bars, bars_from_arrays  # noqa: E402
from research.exits import ExitRules, simulate_exits  # noqa: E402
from research.signals import get  # noqa: E402


def random_ohlcv(n: int, rng: np.random.Generator, sigma: float, gap_at: np.ndarray | None = None) -> dict:
    """A valid OHLCV random walk of n bars (gaps of ~2% where ``gap_at`` is True)."""
    r = rng.normal(0, sigma, n)
    if gap_at is not None:
        r += np.where(gap_at, rng.normal(0, 0.02, n), 0.0)
    close = 100.0 * np.exp(np.cumsum(r - r.mean()))
    open_ = np.r_[100.0, close[:-1]] * np.exp(np.where(gap_at, r, 0.0) if gap_at is not None else 0.0)
    w = rng.uniform(0, sigma, (n, 2))
    return {"open": open_, "high": np.maximum(open_, close) * (1 + w[:, 0]),
            "low": np.minimum(open_, close) * (1 - w[:, 1]), "close": close,
            "volume": np.round(rng.lognormal(8, 0.6, n))}


def daily_bars(n: int, seed: int) -> Bars:
    a = random_ohlcv(n, np.random.default_rng(seed), 0.015)
    return Bars(a["open"], a["high"], a["low"], a["close"], a["volume"], np.arange(n, dtype=np.int64),
                np.zeros(n, np.int64), np.zeros(n, np.int64))


def minute_bars(n: int, seed: int) -> Bars:
    s = nyse()
    ts, total, i = [], 0, int(s.dates.searchsorted(np.datetime64("1990-01-02")))
    while total < n:
        day = np.arange(s.open_us[i], s.close_us[i], US_PER_MIN)
        ts.append(day)
        total += len(day)
        i += 1
    t = np.concatenate(ts)[:n]
    a = random_ohlcv(n, np.random.default_rng(seed), 0.0008, gap_at=np.r_[False, np.diff(t) > US_PER_MIN])
    a["ts"] = t
    return bars_from_arrays(a, "1Min")


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # compile / load the numba cache
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    daily, minute = daily_bars(args.bars, 1), minute_bars(args.bars, 2)

    rows: list[tuple[str, str, int, float, int]] = []
    cases = [("sma_cross", {}), ("sma_cross", {"kind": "ema"}), ("sma_convergence", {}), ("breakout", {}),
             ("rsi_reversion", {}), ("vwap_reversion", {}), ("gap", {"mode": "go"}),
             ("gap", {"mode": "fill"})]
    for name, extra in cases:
        s = get(name)
        bars = minute if s.intraday else daily
        p = s.make_params(short=True, **extra)
        sig = s.signals(bars, p)
        label = name + "".join(f" {k}={v}" for k, v in extra.items())
        sec = timed(lambda: s.signals(bars, p), args.repeat)
        entries = int(sig.long_entry.sum() + sig.short_entry.sum())
        rows.append((label, "1Min" if s.intraday else "daily-style", len(bars), sec, entries))
    # the multi-asset strategies: a pair on two daily-style series; rotation over 10 assets
    other = daily_bars(args.bars, 3)
    pairs = get("pairs")
    pp = pairs.make_params()
    sig = pairs.signals(daily, other, pp)
    rows.append(("pairs (y, x)", "daily-style", len(daily), timed(lambda: pairs.signals(daily, other, pp), args.repeat),
                 int(sig.long_entry.sum() + sig.short_entry.sum())))
    rot = get("rotation")
    n_assets = 10
    closes = np.column_stack([daily_bars(args.bars // n_assets, 10 + i).close for i in range(n_assets)])
    bench_close = daily_bars(args.bars // n_assets, 99).close
    rp = rot.make_params(short=True)
    rsig = rot.signals(closes, bench_close, rp)
    rows.append((f"rotation ({n_assets} assets, bar-asset cells)", "daily-style", closes.size,
                 timed(lambda: rot.signals(closes, bench_close, rp), args.repeat), int(rsig.rebalance.sum())))
    sig = get("vwap_reversion").signals(minute, get("vwap_reversion").make_params(short=True))
    rules = ExitRules(stop_loss=0.005, take_profit=0.01, trailing_stop=0.01, flat_at_close=True)
    n_trades = len(simulate_exits(minute, sig, rules).trades.entry_bar)
    rows.append(("simulate_exits (vwap_reversion signals)", "1Min", len(minute),
                 timed(lambda: simulate_exits(minute, sig, rules), args.repeat), n_trades))

    table = Table(title=f"Signal throughput, one symbol, warm (median of {args.repeat})")
    for col, just in (("strategy", "left"), ("bars", "left"), ("n bars", "right"), ("seconds", "right"),
                      ("M bars/s", "right"), ("entries / trades", "right")):
        table.add_column(col, justify=just)
    for label, kind, n, sec, count in rows:
        table.add_row(label, kind, f"{n:,}", f"{sec:.4f}", f"{n / sec / 1e6:.1f}", f"{count:,}")
    table.caption = "simulate_exits: stop 0.5%, target 1%, trailing 1%, flat at close"
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
