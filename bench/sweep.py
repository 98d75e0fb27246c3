"""Sweep throughput, memory and cold start: our fused engine vs vectorbt (idiomatic) vs backtesting.py.

    python bench/sweep.py                  # ~100k 1Min bars, every engine on the 184-combo peer grid (~8 min)
    python bench/sweep.py --bt-combos 12   # backtesting.py on 12 of the 184 combos (its rate is linear)
    python bench/sweep.py --quick          # a smoke run: smaller data, no no-cache row

Data: ``synthetic_arrays("BENCH", days, seed)`` minute bars (257 sessions ~ 99.5k bars). Strategy:
sma_cross long-only, fees 0.1% of notional, no slippage, all in; decisions at a bar's close fill at
the next open. Grids: ours on fast 2..101 x slow 20..210 step 10 (fast < slow: 1,622 combos); the
peers and ours on fast 5..50 step 5 x slow 20..210 step 10 (184 combos). Every timed row is warm
(a first call compiled or loaded the numba caches; best of --repeat runs, backtesting.py: one
optimize). Memory and cold start run in child processes.
Prints one table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

PPY_MIN = 252.0 * 390
FIXED = (10, 50)  # the combo every engine reports in the equality rows
PEER_GRID = [(f, s) for f in range(5, 55, 5) for s in range(20, 220, 10) if f < s]


# ---------------------------------------------------------------- child processes
def child_prep(folder: str, days: int, seed: int) -> None:
    """Write the bench's bars to folder (so the parent, which forks the measured children, stays small)."""
    from data_lake.sources.synthetic import synthetic_arrays
    from research.bars import bars_from_arrays

    raw = synthetic_arrays("BENCH", days, seed)
    np.savez(f"{folder}/raw.npz", **raw)
    np.savez(f"{folder}/minute.npz", *bars_from_arrays(raw, "1Min"))
    np.savez(f"{folder}/daily.npz", *bars_from_arrays(synthetic_arrays("BENCH", 2520, seed, timeframe="1Day"), "1Day"))
    print(json.dumps({"ok": True}))


def peak_rss_mb() -> tuple[float, float]:
    """(getrusage ru_maxrss, /proc VmHWM) in MB. Linux keeps ru_maxrss across fork + exec (it is at
    least the parent's RSS at the fork), which is why the parent forks these children while small."""
    hwm = np.nan
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, hwm


def child_rss(npz: str, n_params: int, n_rules: int) -> None:
    """Sweep n_params x n_rules combos on the daily bars in chunks; print peak RSS as JSON."""
    from research.bars import Bars
    from research.exits import ExitRules
    from research.signals.sma_cross import SmaCross
    from research.sweep import Costs, run_grid

    bars = Bars(*np.load(npz).values())
    params = [SmaCross(f, s) for f in range(2, 52) for s in range(60, 260, 10)][:n_params]
    rules = [ExitRules(stop_loss=sl / 100, take_profit=tp / 100, allow_short=False)
             for sl in range(1, 41) for tp in range(0, 50, 2)][:n_rules]
    run_grid("sma_cross", bars, params[:1], rules[:1], Costs())  # compile or load the kernels first
    t0 = time.perf_counter()
    best = -np.inf
    for a in range(0, len(params), 100):  # 100 params x n_rules combos per call; keep a running best
        out = run_grid("sma_cross", bars, params[a:a + 100], rules, Costs())
        best = max(best, float(np.nanmax(out[:, 0, -1, 2])))
    dt = time.perf_counter() - t0
    rss, hwm = peak_rss_mb()
    print(json.dumps({"combos": len(params) * len(rules), "bars": len(bars), "seconds": dt, "peak_rss_mb": rss,
                      "vm_hwm_mb": hwm, "best_sharpe": best}))


def child_cold(npz: str, launched: float) -> None:
    """Import, load bars, run a first small sweep; print the times (from the parent's launch) as JSON."""
    t_start = time.time()
    from research.bars import Bars
    from research.exits import ExitRules
    from research.signals.sma_cross import SmaCross
    from research.sweep import Costs, run_grid

    t_import = time.time()
    bars = Bars(*np.load(npz).values())
    t_data = time.time()
    run_grid("sma_cross", bars, [SmaCross(10, 50), SmaCross(20, 100)], [ExitRules(allow_short=False)], Costs(),
             periods_per_year=PPY_MIN)
    t_sweep = time.time()
    print(json.dumps({"interpreter": t_start - launched, "imports": t_import - t_start, "data": t_data - t_import,
                      "first_sweep": t_sweep - t_data, "total": t_sweep - launched}))


def run_child(args: list[str], env: dict | None = None) -> dict:
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- engines
def timed(fn, repeat: int) -> tuple[float, object]:
    """Best of ``repeat`` warm runs: the cores are shared, and the least disturbed run is the engine's."""
    out = fn()  # compile / load caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def ours(bars, combos, repeat: int):
    from research.exits import ExitRules
    from research.signals.sma_cross import SmaCross
    from research.sweep import Costs, run_grid

    params = [SmaCross(f, s) for f, s in combos]
    return timed(lambda: run_grid("sma_cross", bars, params, [ExitRules(allow_short=False)], Costs(),
                                  periods_per_year=PPY_MIN), repeat)


def vectorbt_idiomatic(a: dict, combos, repeat: int):
    """MA.run over the paired windows, crossings, Portfolio.from_signals on the whole grid, then metrics.

    Convention alignment: from_signals fills at the signal bar's price, so signals are shifted one
    bar and ``price=open``: decided at t's close, filled at t+1's open, like ours.
    """
    import pandas as pd
    import vectorbt as vbt

    idx = pd.DatetimeIndex(a["ts"].view("datetime64[us]")).tz_localize("UTC")
    close, open_ = pd.Series(a["close"], idx), pd.Series(a["open"], idx)

    def from_signals(entries, exits):
        return vbt.Portfolio.from_signals(close, entries.vbt.fshift(1, fill_value=False),
                                          exits.vbt.fshift(1, fill_value=False), price=open_, size=np.inf,
                                          fees=0.001, init_cash=1.0, freq="1min")

    def signals_and_pf():
        fast = vbt.MA.run(close, window=[f for f, _ in combos], short_name="fast")
        slow = vbt.MA.run(close, window=[s for _, s in combos], short_name="slow")
        return from_signals(fast.ma_crossed_above(slow), fast.ma_crossed_below(slow))

    def with_metrics():
        pf = signals_and_pf()
        pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown(), pf.trades.count()
        return pf

    t_pf, _ = timed(signals_and_pf, repeat)
    t_all, pf = timed(with_metrics, repeat)
    return t_pf, t_all, pf, from_signals, vbt.__version__


RAW_CLOSE: np.ndarray | None = None  # backtesting.py's indicators read the unscaled closes (see below)


def backtesting_py(a: dict, combos):
    """Backtest.optimize over ``combos``; the same crossing rule on research.kernels.indicators.rolling_mean_nb averages.

    Conventions: orders placed in next() fill at the next open (trade_on_close=False), like ours.
    backtesting.py trades whole units and sizes a fraction < 1 of equity, so FractionalBacktest
    (unit 1e-8) with cash 1e6 and size 1 - 1e-12 stands for "all in". FractionalBacktest scales the
    prices by the unit, which changes the averages' last bits and so the crossings of exactly tied
    averages (cent prices tie often): the indicators are computed on the unscaled closes instead.
    Its Sharpe is annualised from daily equity returns (not comparable) and # Trades leaves out a
    trade still open at the end.
    """
    import backtesting
    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    from research.kernels.indicators import rolling_mean_nb

    global RAW_CLOSE
    RAW_CLOSE = np.ascontiguousarray(a["close"], dtype=np.float64)

    class BtCross(Strategy):
        n1, n2 = FIXED

        def init(self):
            self.f = self.I(rolling_mean_nb, RAW_CLOSE, self.n1)
            self.s = self.I(rolling_mean_nb, RAW_CLOSE, self.n2)

        def next(self):
            f, s = self.f, self.s
            if not self.position and f[-1] > s[-1] and f[-2] <= s[-2]:
                self.buy(size=1 - 1e-12)
            elif self.position and s[-1] > f[-1] and s[-2] <= f[-2]:
                self.position.close()

    # optimize pickles the class to its worker processes: make it a module attribute
    BtCross.__qualname__ = "BtCross"
    globals()["BtCross"] = BtCross

    idx = pd.DatetimeIndex(a["ts"].view("datetime64[us]"))
    df = pd.DataFrame({"Open": a["open"], "High": a["high"], "Low": a["low"], "Close": a["close"],
                       "Volume": a["volume"]}, index=idx)
    bt = FractionalBacktest(df, BtCross, cash=1e6, commission=0.001, trade_on_close=False, fractional_unit=1e-8)
    grid = {"n1": sorted({f for f, _ in combos}), "n2": sorted({s for _, s in combos})}
    allowed = set(combos)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        bt.optimize(**grid, constraint=lambda p: (p.n1, p.n2) in allowed, maximize="Equity Final [$]")
        dt = time.perf_counter() - t0
        fixed = bt.run(n1=FIXED[0], n2=FIXED[1])
    return dt, fixed, backtesting.__version__


# ---------------------------------------------------------------- the table
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=257)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bt-combos", type=int, default=184, help="backtesting.py combos (of the 184)")
    ap.add_argument("--rss-params", type=int, default=1000, help="x 1000 rules = the big RSS sweep")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child-prep", nargs=3)
    ap.add_argument("--child-rss", nargs=3)
    ap.add_argument("--child-cold", nargs=2)
    args = ap.parse_args(argv)
    if args.child_prep:
        return child_prep(args.child_prep[0], int(args.child_prep[1]), int(args.child_prep[2]))
    if args.child_rss:
        return child_rss(args.child_rss[0], int(args.child_rss[1]), int(args.child_rss[2]))
    if args.child_cold:
        return child_cold(args.child_cold[0], float(args.child_cold[1]))
    if args.quick:
        args.days, args.repeat, args.bt_combos, args.rss_params = 40, 1, 2, 200
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        # children first, while this process is small (ru_maxrss survives fork + exec)
        run_child(["--child-prep", tmp, str(args.days), str(args.seed)])
        run_child(["--child-cold", f"{tmp}/minute.npz", str(time.time())])  # the on-disk cache is warm from here
        rss = [run_child(["--child-rss", f"{tmp}/daily.npz", str(k), "1000"]) for k in (10, 100, args.rss_params)]
        cold = run_child(["--child-cold", f"{tmp}/minute.npz", str(time.time())])
        nocache = None
        if not args.quick:
            env = {**os.environ, "NUMBA_CACHE_DIR": f"{tmp}/empty-cache"}
            nocache = run_child(["--child-cold", f"{tmp}/minute.npz", str(time.time())], env=env)
        raw = dict(np.load(f"{tmp}/raw.npz"))
        minute = list(np.load(f"{tmp}/minute.npz").values())
    report(args, raw, minute, rss, cold, nocache, load0)


def report(args, a: dict, minute: list, rss: list, cold: dict, nocache: dict | None, load0: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from research.bars import Bars
    from research.exits import ExitRules
    from research.metrics import METRICS
    from research.signals import sma_cross
    from research.signals.sma_cross import SmaCross
    from research.sweep import Costs
    from research.sweep.vbt import metrics_from_portfolio, portfolio

    bars = Bars(*minute)
    n = len(bars)
    big = [(f, s) for f in range(2, 102) for s in range(20, 220, 10) if f < s]
    fmt = lambda x: f"{x / 1e6:,.1f} M" if x >= 1e6 else f"{x / 1e3:,.1f} k"  # noqa: E731
    table = Table(title=f"sma_cross sweeps on {n:,} synthetic 1Min bars ({args.days} sessions), "
                        f"{os.cpu_count()} cores")
    for col in ("row", "setup", "seconds", "bar-combos/s", "vs ours / check"):
        table.add_column(col)

    # throughput
    t_big, _ = ours(bars, big, args.repeat)
    rate_big = n * len(big) / t_big
    t_peer, out_peer = ours(bars, PEER_GRID, args.repeat)
    rate_peer = n * len(PEER_GRID) / t_peer
    table.add_row("ours (fused numba)", f"{len(big):,} combos", f"{t_big:.2f}", fmt(rate_big),
                  f"target >= 100 M: {'PASS' if rate_big >= 1e8 else 'FAIL'}")
    table.add_row("ours (fused numba)", f"peer grid, {len(PEER_GRID)} combos", f"{t_peer:.2f}", fmt(rate_peer), "")
    t_vpf, t_vall, vpf, vbt_from_signals, vver = vectorbt_idiomatic(a, PEER_GRID, args.repeat)
    for label, t in (("MA.run, crossings, from_signals", t_vpf), ("+ return, sharpe, max dd, trades", t_vall)):
        rate = n * len(PEER_GRID) / t
        ok = "PASS" if rate_peer / rate >= 25 else "FAIL"
        table.add_row(f"vectorbt {vver} idiomatic", f"{len(PEER_GRID)} combos: {label}", f"{t:.2f}", fmt(rate),
                      f"ours {rate_peer / rate:,.0f}x (>= 25x: {ok})")
    step = max(1, len(PEER_GRID) // args.bt_combos)
    bt_combos = PEER_GRID[::step][: args.bt_combos]
    if FIXED not in bt_combos:
        bt_combos[-1] = FIXED
    t_bt, bt_fixed, bver = backtesting_py(a, bt_combos)
    rate_bt = n * len(bt_combos) / t_bt
    table.add_row(f"backtesting.py {bver} optimize", f"{len(bt_combos)} of the {len(PEER_GRID)} combos",
                  f"{t_bt:.1f}", fmt(rate_bt),
                  f"ours {rate_peer / rate_bt:,.0f}x (>= 1,000x: {'PASS' if rate_peer / rate_bt >= 1000 else 'FAIL'})")

    # one combo, every engine
    m = {k: i for i, k in enumerate(METRICS)}
    mine = out_peer[PEER_GRID.index(FIXED), 0, -1]
    show = ("total_return", "sharpe", "max_drawdown", "trades")
    rel = lambda d: max(abs(d[k] - mine[m[k]]) / abs(mine[m[k]]) for k in show)  # noqa: E731
    via_path = metrics_from_portfolio(portfolio("sma_cross", bars, SmaCross(*FIXED), ExitRules(allow_short=False),
                                                Costs()), PPY_MIN)
    sig = sma_cross.signals(bars, SmaCross(*FIXED))
    import pandas as pd

    idx = vpf.wrapper.index
    ours_sig = metrics_from_portfolio(vbt_from_signals(pd.Series(sig.long_entry, idx), pd.Series(sig.long_exit, idx)),
                                      PPY_MIN)
    idiom = metrics_from_portfolio(vpf[FIXED], PPY_MIN)
    theirs_in = vpf[FIXED].trades.values["entry_idx"]
    ours_in = np.flatnonzero(np.r_[False, sig.long_entry[:-1]])  # every up-cross fills at the next open
    k = min(len(theirs_in), len(ours_in))
    first = np.flatnonzero(theirs_in[:k] != ours_in[:k])
    bt_total = bt_fixed["Return [%]"] / 100
    table.add_section()
    table.add_row("ours", f"fast {FIXED[0]} slow {FIXED[1]}", "", "",
                  ", ".join(f"{k} {mine[m[k]]:.10g}" for k in show))
    table.add_row("vectorbt, our path", "research.sweep.vbt.portfolio", "", "",
                  f"max rel diff {max(abs(via_path[k] - mine[m[k]]) / max(abs(mine[m[k]]), 1e-300) for k in METRICS if np.isfinite(mine[m[k]])):.1e} over all {len(METRICS)} metrics")
    table.add_row("vectorbt from_signals", "our signals, shifted, price=open", "", "",
                  f"max rel diff {rel(ours_sig):.1e}")
    table.add_row("vectorbt idiomatic", "its MA crossings, shifted, price=open", "", "",
                  f"max rel diff {rel(idiom):.1e}: vbt.MA's rolling mean differs in the last bits, and on "
                  f"cent prices averages tie exactly; first different trade: #{first[0] if len(first) else '-'}")
    table.add_row("backtesting.py", "FractionalBacktest, all in", "", "",
                  f"total return rel diff {abs(bt_total - mine[m['total_return']]) / abs(mine[m['total_return']]):.1e}; "
                  f"trades {bt_fixed['# Trades']} closed + {int(mine[m['trades']]) - bt_fixed['# Trades']} open at "
                  "the end; whole 1e-8 units, size 1 - 1e-12 of equity")

    # memory and cold start (measured first, in child processes)
    table.add_section()
    for r in rss:
        table.add_row("peak RSS (child)", f"{r['combos']:,} combos x {r['bars']:,} 1Day bars", f"{r['seconds']:.1f}",
                      fmt(r["combos"] * r["bars"] / r["seconds"]),
                      f"{r['peak_rss_mb']:,.0f} MB getrusage, {r['vm_hwm_mb']:,.0f} MB VmHWM "
                      f"(< 1,500 MB: {'PASS' if r['peak_rss_mb'] < 1500 else 'FAIL'})")
    table.add_row("", "", "", "", f"{rss[-1]['peak_rss_mb'] - rss[0]['peak_rss_mb']:+,.0f} MB from "
                                  f"{rss[0]['combos']:,} to {rss[-1]['combos']:,} combos (run_grid on chunks of "
                                  "100 params x 1,000 rules, a running best kept)")
    table.add_section()
    table.add_row("cold start, warm cache", "new process: import, load bars, 2-combo sweep", f"{cold['total']:.2f}", "",
                  f"interpreter {cold['interpreter']:.2f} + imports {cold['imports']:.2f} + bars {cold['data']:.2f} "
                  f"+ first sweep {cold['first_sweep']:.2f} (< 3 s: {'PASS' if cold['total'] < 3 else 'FAIL'})")
    if nocache:
        table.add_row("cold start, empty cache", "the same, numba compiles", f"{nocache['total']:.1f}", "",
                      "what the on-disk cache saves")
    table.caption = (f"load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end (2 cores shared with "
                     "other work); fees 0.1%, long only, all in, next-open fills")
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
