"""Parity: the replay's fills, positions and equity against the backtest of the same params.

For every sleeve (strategy, symbol) the backtest is ``sleeves.sleeve_path`` (what ``decide`` reads)
over the same bars (warm-up and replay, no entries before the replay's first bar): the trades it
makes inside the replay must be the broker's fills, bar for bar and price for price (sides and bars
exactly; prices to 1e-9), each under the strategy of the entry it was opened under (a mixed
sleeve's fills: the order ids name the strategy of each trade). A netted symbol's strategies
(runner_book.py) are compared on their shares of the net orders, as the state store allocated them
(``ReplayResult.virtual``): every strategy's virtual fills against its own backtest.
Positions: the sign of the broker's position after every bar equals the backtest's. Equity:
vectorbt replays the broker's fills (its own accounting, one cash pool) and must give the
broker's equity after every bar (relative 1e-9). Quantities come from the live sizing (risk
limits), so they are the broker's, not the backtest's all-in convention: the check is that the
same decisions happen at the same prices, and that the money adds up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from research.bars import bars_from_arrays
from research.sweep.vbt import portfolio_from_fills

from .ids import parse_client_order_id
from .replay import ReplayResult
from .runner_book import netted_groups
from .sleeves import basket_path, sleeve_path, sleeves, sleeves_over

TOL = 1e-9


@dataclass(frozen=True)
class Parity:
    """The verdict: ok, the first divergence (None when ok) and the tables behind it."""

    ok: bool
    first_divergence: str | None
    trades: pd.DataFrame  # per sleeve: backtest vs live fills, side by side
    equity: pd.DataFrame  # broker vs vectorbt equity per bar

    def summary(self) -> str:
        n = len(self.trades)
        return (f"parity OK: {n} fills, every one at the backtest's bar and price; equity equal at "
                f"{len(self.equity)} bar closes" if self.ok else f"parity FAILED: {self.first_divergence}")


def check(result: ReplayResult) -> Parity:
    """Compare one replay with the backtest of its params (see the module docstring)."""
    problems: list[str] = []
    rows = []
    sls = sleeves_over(result.epochs, result.candidates) if result.epochs else sleeves(result.params, result.candidates)
    names = sorted({n for s in sls for n in s.names})
    live = result.fills.copy()
    owners = [parse_client_order_id(result.legs.get(c, c), names) for c in live["client_order_id"]]  # OCO legs: their parent
    live["strategy"] = [o.strategy if o else None for o in owners]
    first_us = result.trade_from if result.trade_from is not None else \
        int(min(f["ts"].iloc[0] for f in result.bars.values()).value // 1000)
    refusals = _refusals(result, names)
    netted = set(netted_groups(sls)) if result.virtual is not None else set()
    for sleeve in sls:
        if sleeve.legs is not None:
            _basket(result, sleeve, first_us, live, refusals, rows, problems)
            continue
        arrays = result.history[sleeve.symbol]
        tf = result.params.data.timeframe
        bars = bars_from_arrays(dict(arrays), tf)
        sp = sleeve_path(sleeve, arrays, bars, tf, result.regimes.get(sleeve.benchmark), first_us, result.halts)
        path, ts = sp.path, arrays["ts"]
        expect = _expected(path, ts, first_us, sp.trade_strategies(sleeve))
        if sleeve.symbol in netted:  # one net order for several strategies: each one's allocated share
            v = result.virtual
            got = v[(v["symbol"] == sleeve.symbol) & (v["strategy"] == sleeve.strategy)]
        else:
            got = live[(live["symbol"] == sleeve.symbol) & live["strategy"].isin(sleeve.names)]
        mixed = bool(sleeve.strategies)  # its fills name their strategy
        got_rows = [(_bar_of(ts, t), side, float(px), who)
                    for t, side, px, who in zip(_stamps(got), got["side"], got["price"], got["strategy"])]
        for i in range(max(len(expect), len(got_rows))):
            e = expect[i] if i < len(expect) else None
            g = got_rows[i] if i < len(got_rows) else None
            rows.append({"strategy": (e or g)[3], "symbol": sleeve.symbol,
                         "bar": _day(ts, (e or g)[0]), "backtest": _fmt(e, mixed), "live": _fmt(g, mixed)})
            if e is None or g is None or e[0] != g[0] or e[1] != g[1] or e[3] != g[3] \
                    or abs(e[2] - g[2]) > TOL * max(1.0, abs(e[2])):
                why = refusals.get((e[3], sleeve.symbol, _day(ts, e[0] - 1))) if e is not None else None
                problems.append(f"{sleeve.strategy} {sleeve.symbol} fill #{i + 1}: backtest {_fmt(e, mixed)} "
                                f"vs live {_fmt(g, mixed)} at {_day(ts, (e or g)[0])}"
                                + (f" ({why})" if why else ""))
        problems += _positions(path, ts, first_us, got, sleeve)
    eq = _equity(result)
    bad = eq[(eq["broker"] - eq["vectorbt"]).abs() > TOL * eq["broker"].abs()]
    if len(bad):
        t = bad.index[0]
        problems.append(f"equity at {_ny(t)}: broker {bad['broker'].iloc[0]:.6f} vs vectorbt "
                        f"{bad['vectorbt'].iloc[0]:.6f}")
    trades = pd.DataFrame(rows, columns=["strategy", "symbol", "bar", "backtest", "live"])
    return Parity(not problems, problems[0] if problems else None, trades, eq)


def _refusals(result: ReplayResult, names: list[str]) -> dict[tuple[str, str, str], str]:
    """(strategy, symbol, decision bar) -> the rule and message of an order the risk manager refused."""
    out = {}
    if result.decision_log is None or not Path(result.decision_log).exists():
        return out
    for line in Path(result.decision_log).read_text().splitlines():
        d = json.loads(line)
        if d.get("event") == "order_rejected":  # accepted, then rejected by the broker (at the open)
            p = parse_client_order_id(d.get("order", ""), names)
            if p is not None:
                out[(p.strategy, p.symbol, _ny(pd.Timestamp(p.bar_time)))] = f"the broker rejected it: {d['message']}"
        for a in d.get("actions", []):
            if d.get("event") == "decision" and a.get("allowed") is False:
                key = (d["strategy"], a.get("symbol", d["symbol"]), _ny(pd.Timestamp(d["bar_time"])))
                out[key] = f"the risk manager refused the order: rule {a['rule']}: {a['risk']}"
    return out


def _basket(result: ReplayResult, sleeve, first_us: int, live: pd.DataFrame, refusals: dict, rows: list,
            problems: list) -> None:
    """A multi-leg sleeve: per traded leg, the fills and positions of its effective weights (research/baskets.py)."""
    ts, aligned, _, w = basket_path(sleeve, result.history, result.params.data.timeframe, first_us)
    for i, leg in enumerate(sleeve.traded):
        prev = np.r_[0.0, w[:-1, i]]
        change = np.flatnonzero(w[:-1, i] != prev[:-1])  # decided at t, filled at t + 1 (inside the data)
        expect = [(int(t) + 1, "buy" if w[t, i] > prev[t] else "sell", float(aligned[leg]["open"][t + 1]))
                  for t in change]
        got = live[(live["symbol"] == leg) & (live["strategy"] == sleeve.strategy)]
        got_rows = [(_bar_of(ts, t), side, float(px)) for t, side, px in zip(_stamps(got), got["side"], got["price"])]
        name = f"{sleeve.strategy} {sleeve.symbol} {leg}"
        for k in range(max(len(expect), len(got_rows))):
            e = expect[k] if k < len(expect) else None
            g = got_rows[k] if k < len(got_rows) else None
            rows.append({"strategy": sleeve.strategy, "symbol": leg, "bar": _day(ts, (e or g)[0]),
                         "backtest": _fmt(e), "live": _fmt(g)})
            if e is None or g is None or e[:2] != g[:2] or abs(e[2] - g[2]) > TOL * max(1.0, abs(e[2])):
                why = refusals.get((sleeve.strategy, leg, _day(ts, e[0] - 1))) if e is not None else None
                problems.append(f"{name} fill #{k + 1}: backtest {_fmt(e)} vs live {_fmt(g)} at {_day(ts, (e or g)[0])}"
                                + (f" ({why})" if why else ""))
        signed = np.where(got["side"] == "buy", 1.0, -1.0) * got["qty"].to_numpy(float)
        held = np.zeros(len(ts))
        np.add.at(held, np.array([r[0] for r in got_rows], dtype=np.int64), signed)
        held = np.cumsum(held)
        bad = np.flatnonzero(np.sign(np.round(held[1:], 9)) != np.sign(prev[1:]))
        if len(bad):
            t = int(bad[0]) + 1
            problems.append(f"{name} position at {_day(ts, t)}: backtest weight {prev[t]:+.3f} vs live {held[t]:g} shares")


def _expected(path, ts: np.ndarray, first_us: int, strategies: list[str]) -> list[tuple[int, str, float, str]]:
    """The backtest's fills inside the replay, in time order: (bar, side, raw price, strategy), the
    strategy of each trade's entry on its exit too."""
    out = []
    tr = path.trades
    start = int(np.searchsorted(ts, first_us))
    for e, ep, x, xp, d, who in zip(*tr[:5], strategies):
        if e < start:
            continue
        out.append((int(e), "buy" if d > 0 else "sell", float(ep), who))
        if x >= 0:
            out.append((int(x), "sell" if d > 0 else "buy", float(xp), who))
    return sorted(out, key=lambda r: r[0])


def _positions(path, ts, first_us, got: pd.DataFrame, sleeve) -> list[str]:
    start = int(np.searchsorted(ts, first_us))
    signed = np.where(got["side"] == "buy", 1.0, -1.0) * got["qty"].to_numpy(float)
    bars = np.array([_bar_of(ts, t) for t in _stamps(got)], dtype=np.int64)
    held = np.zeros(len(ts))
    np.add.at(held, bars, signed)
    held = np.cumsum(held)
    for t in range(start, len(ts)):
        if int(np.sign(round(held[t], 9))) != int(path.position[t]):
            return [f"{sleeve.strategy} {sleeve.symbol} position at {_day(ts, t)}: backtest {int(path.position[t])} "
                    f"vs live {held[t]:g} shares"]
    return []


def _equity(result: ReplayResult) -> pd.DataFrame:
    """The broker's equity per bar next to vectorbt's accounting of the broker's fills."""
    symbols = sorted(result.bars)
    close = pd.DataFrame({s: pd.Series(result.bars[s]["close"].to_numpy(float),
                                       index=pd.DatetimeIndex(result.bars[s]["ts"])) for s in symbols}).ffill()
    stamps = close.index.as_unit("us").asi8
    f = result.fills
    bar = [_bar_of(stamps, t) for t in _stamps(f)]
    col = [symbols.index(s) for s in f["symbol"]]
    qty = np.where(f["side"] == "buy", 1.0, -1.0) * f["qty"].to_numpy(float)
    pf = portfolio_from_fills(close, np.asarray(bar, np.int64), np.asarray(col, np.int64), f["price"].to_numpy(float),
                              qty, result.cash)
    value = pd.Series(np.asarray(pf.value(), dtype=float), index=close.index)
    broker = result.equity.reindex(close.index)
    return pd.DataFrame({"broker": broker, "vectorbt": value}).dropna()


def _stamps(fills: pd.DataFrame) -> list[int]:
    """Per fill, a UTC µs stamp inside the bar it belongs to: the replay's record of the step that
    made it (``bar``) when there is one. The broker's stamp alone is ambiguous on minute bars: a
    fill inside bar t is stamped at t's close, which is bar t+1's open."""
    col = fills["bar"] if "bar" in fills else fills["ts"]
    return [int(pd.Timestamp(t).value // 1000) for t in col]


def _bar_of(ts: np.ndarray, t_us: int) -> int:
    """The bar a fill belongs to: the last bar starting at or before it."""
    return int(np.searchsorted(ts, t_us, side="right")) - 1


def _day(ts: np.ndarray, i: int) -> str:
    """Bar i's date in New York, with its minute for intraday bars (daily bars are stamped 00:00)."""
    return _ny(pd.Timestamp(int(ts[i]), unit="us", tz="UTC"))


def _ny(t: pd.Timestamp) -> str:
    t = t.tz_convert("America/New_York")
    return t.strftime("%Y-%m-%d" if t == t.normalize() else "%Y-%m-%d %H:%M")


def _fmt(r, strategy: bool = False) -> str:
    return "-" if r is None else f"{r[1]} @ {r[2]:.4f}" + (f" ({r[3]})" if strategy else "")
