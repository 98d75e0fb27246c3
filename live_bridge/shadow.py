"""The shadow backtest of what the live runner trades, and the evening's live report built on it.

"The backtest of the params in force" is the runner's own decision path, recomputed from the lake:
every params file the runner traded (the state store's epochs, each from the bar it took over),
from the runner's first bar (its anchor), with the regime labels of the benchmark's daily bars in
the lake and the same functions (``sleeves.sleeve_path``, ``research.switching``). Its fills of a
day are what the live fills of that day should have been (``daily_report.compare``).

The store is read read-only (``mode=ro``): the runner keeps writing it while the report runs.
Multi-leg sleeves (pairs, rotation) are not in the shadow yet; their fills show as ``extra``.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from data_lake import Lake
from data_lake.calendar import nyse
from research.bars import bars_from_arrays
from research.exits import ExitReason
from research.params import ParamsFile, loads
from research.regimes import regimes_from_daily

from . import daily_report
from .avg_cost import apply_fill
from .regimes_live import daily_arrays, regime_params_of
from .sleeves import sleeve_path, sleeves_over

HISTORY_DAYS = 800
# Fill prices reach the store as the broker reports them (the simulator, like Alpaca, to a few
# decimals): a price within 1e-6 relative (0.01 bps) is the same price; slippage is still measured.
PRICE_TOL = 1e-6
EXPECTED_COLUMNS = ["strategy", "symbol", "regime", "bar", "side", "price", "kind", "reason"]


class NotTrading(ValueError):
    """The state store holds no anchor or params yet: the runner has not started trading."""


@dataclass(frozen=True)
class StoredRun:
    """What the state store says the runner traded: its first bar and its params files."""

    anchor_us: int
    epochs: list[tuple[int, ParamsFile]]
    halts: list[tuple[int, str]]  # (when it tripped, UTC µs; scope): the path flattens and stops entering there

    @property
    def timeframe(self) -> str:
        return self.epochs[-1][1].data.timeframe


def _ro(path: Path) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise NotTrading(f"{path}: no live runner state (start one with tradelab live)")
    return sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True)


def stored_run(store_path: Path) -> StoredRun:
    """The anchor and epochs of a runner's state store, read-only."""
    with closing(_ro(store_path)) as db:
        try:
            anchor = db.execute("SELECT value FROM meta WHERE key = 'anchor_us'").fetchone()
            rows = db.execute("SELECT from_us, sha256, params FROM epochs ORDER BY from_us").fetchall()
            halts = db.execute("SELECT at, scope FROM halts ORDER BY at").fetchall()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{store_path}: the state store cannot be read ({exc}); it is left untouched") from None
    if anchor is None or not rows:
        raise NotTrading(f"{store_path}: the runner has not started trading yet (no anchor or params stored)")
    return StoredRun(int(anchor[0]), [(int(f), loads(text, f"state epoch {sha[:12]}")) for f, sha, text in rows],
                     [(int(pd.Timestamp(at).value // 1000), scope) for at, scope in halts])


def shadow_fills(lake: Lake, run: StoredRun, through: date) -> pd.DataFrame:
    """Every fill of the shadow backtest from the anchor through ``through`` (EXPECTED_COLUMNS)."""
    tf = run.timeframe
    end = pd.Timestamp(through) + pd.Timedelta(days=1)
    start = pd.Timestamp(run.anchor_us, unit="us", tz="UTC").tz_localize(None) - pd.Timedelta(days=HISTORY_DAYS)
    rows = []
    labels_of: dict[str, pd.DataFrame] = {}
    for sl in sleeves_over(run.epochs):
        if sl.legs is not None:
            continue
        f = lake.read_bars(sl.symbol, tf, start, end)
        if f.empty:
            continue
        arrays = {c: (pd.DatetimeIndex(f["ts"]).as_unit("us").asi8 if c == "ts" else f[c].to_numpy(float))
                  for c in ("ts", "open", "high", "low", "close", "volume")}
        if sl.by_regime and sl.benchmark not in labels_of:
            a = daily_arrays(lake.read_bars(sl.benchmark, "1Day", None, end))
            labels_of[sl.benchmark] = regimes_from_daily(a["ts"], a["open"], a["high"], a["low"], a["close"],
                                                         regime_params_of(run.epochs))
        bars = bars_from_arrays(arrays, tf)
        sp = sleeve_path(sl, arrays, bars, tf, labels_of.get(sl.benchmark), run.anchor_us, run.halts)
        tr, ts, flatten = sp.path.trades, arrays["ts"], sp.flatten
        # each trade is its entry's strategy's (a mixed sleeve switches strategy with the regime)
        for e, ep, x, xp, d, why, k, who in zip(tr.entry_bar, tr.entry_price, tr.exit_bar, tr.exit_price, tr.direction,
                                                tr.reason, sp.trade_codes, sp.trade_strategies(sl)):
            regime = sl.labels[int(k)] if k >= 0 else "unknown"
            rows.append((who, sl.symbol, regime, _stamp(ts[e]), "buy" if d > 0 else "sell", float(ep),
                         "entry", f"enter under {regime}"))
            if x >= 0:
                why = "day-loss halt" if flatten is not None and flatten[max(x - 1, 0)] else ExitReason.label(why)
                rows.append((who, sl.symbol, regime, _stamp(ts[x]), "sell" if d > 0 else "buy", float(xp),
                             "exit", why))
    out = pd.DataFrame(rows, columns=EXPECTED_COLUMNS)
    out["bar"] = pd.to_datetime(out["bar"], utc=True)
    return out.sort_values(["bar", "strategy", "symbol"], kind="stable").reset_index(drop=True)


def _stamp(us: int) -> pd.Timestamp:
    return pd.Timestamp(int(us), unit="us", tz="UTC")


def opening_positions(store_path: Path, day: date) -> dict[tuple[str, str], tuple[float, float]]:
    """(strategy, symbol) -> (qty, average price) held at the start of ``day``, from the stored fills."""
    with closing(_ro(store_path)) as db:
        rows = db.execute("SELECT strategy, symbol, side, qty, price FROM fills WHERE day < ? ORDER BY rowid",
                          (day.isoformat(),)).fetchall()
    held: dict[tuple[str, str], tuple[float, float]] = {}
    for strategy, symbol, side, qty, price in rows:
        q, avg = held.get((strategy, symbol), (0.0, 0.0))
        q, avg, _ = apply_fill(q, avg, side, qty, price)
        held[(strategy, symbol)] = (q, avg)
    return {k: v for k, v in held.items() if v[0]}


def run_for_day(lake: Lake, state_dir: Path, params_path: Path | None, day: date, out_dir: Path):
    """The evening's live report of ``day``: (DailyReport, html path, json path). ``params_path`` is
    not read: the store says what was traded (a file installed tonight trades tomorrow)."""
    store = Path(state_dir) / "state.db"
    run = stored_run(store)
    cal = nyse()
    if pd.Timestamp(day) not in cal.dates:
        raise ValueError(f"{day} is not an NYSE session")
    lake = lake.snapshot()  # the backtest and the day's closes from one lake state
    expected = shadow_fills(lake, run, day)
    ny = expected["bar"].dt.tz_convert("America/New_York").dt.date
    expected = expected[ny == day].reset_index(drop=True)
    bar_of = daily_report.daily_bar if run.timeframe == "1Day" else _intraday_bar(run.timeframe)
    live = daily_report.live_fills(store, day, bar_of)
    symbols = sorted(set(expected["symbol"]) | set(live["symbol"]) |
                     {s for (_, s) in opening_positions(store, day)})
    closes = {}
    for s in symbols:
        f = lake.read_bars(s, "1Day", pd.Timestamp(day) - pd.Timedelta(days=10), pd.Timestamp(day) + pd.Timedelta(days=1))
        if len(f):
            closes[s] = pd.Series(f["close"].to_numpy(float), index=pd.DatetimeIndex(f["ts"]))
    report = daily_report.build(day, expected, live, closes, opening=opening_positions(store, day),
                                regimes=expected, tol=PRICE_TOL)
    html, js = daily_report.write_report(report, Path(out_dir))
    return report, html, js


def _intraday_bar(timeframe: str):
    """The bar an intraday fill belongs to: the last bar of the lake's grid starting at or before it
    (a stop filled inside a bar is stamped inside it by a real broker)."""
    from data_lake.schema import TIMEFRAMES

    step = TIMEFRAMES[timeframe] * 60_000_000
    cal = nyse()

    def bar_of(t: pd.Timestamp) -> pd.Timestamp:
        us = int(t.value // 1000)
        i = max(int(np.searchsorted(cal.open_us, us, side="right")) - 1, 0)
        return _stamp(cal.open_us[i] + (us - cal.open_us[i]) // step * step)

    return bar_of
