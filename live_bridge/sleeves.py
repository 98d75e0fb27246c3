"""One symbol of a params file, decided at a bar close with the research functions.

A sleeve holds what the params file says for one symbol: the entry per regime (params + exit
rules; flat regimes have none). When the nightly chose different strategies for the symbol's regimes
(sma_cross in the up regimes, rsi_reversion in the ranging ones) the sleeve is *mixed*: one
switching path whose entries each run their own strategy (``Sleeve.strategies``), so the account's
one position per symbol holds by construction, and every decision, order and fill is the strategy's
of the entry governing it (an open position's, or the next regime's for an entry).

``decide`` runs ``research.switching`` (the strategy's own signal function and ``research.exits``'
fill convention and exit rules, switched by the regime labels) over the bars since the anchor and
reads the last bar: the position to hold from the next open, and the protective stop for the next
bar. The parity check runs the very same function over the whole replay, so the live bridge and the
backtest cannot drift apart.

Regimes: a decision at bar t's close uses the entry of the regime of the session bar t+1 is in
(the next session for a daily bar, or for the last bar of an intraday session), known before that
session opens. Decisions on bars before ``trade_from`` never enter (the warm-up history).

Multi-leg strategies (pairs, rotation) are sleeves with ``legs`` (research/baskets.py: the entry's
symbol names them): ``decide_basket`` computes every leg's target weight with
``research.baskets.weights`` / ``effective`` on the bars the legs share, the same functions parity
backtests with. They trade one entry in every regime and their exits are the strategy's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from research import baskets
from research.bars import Bars, bars_from_arrays
from research.exits import ExitRules, Path, stop_price, target_price
from research.params import ParamsFile
from research.regimes import label_bars
from research.switching import simulate_switching


@dataclass(frozen=True)
class Sleeve:
    """The entries of one symbol: ``entries[k]`` = (params, rules) of regime ``labels[k]``, run by
    ``strategy_at(k)``. ``strategy``: the one strategy, or a mixed sleeve's names joined by "+" (a
    label for logs and keys, never a strategy: orders and fills take ``strategy_at`` / ``names``)."""

    strategy: str
    symbol: str
    labels: tuple[str, ...]
    entries: tuple[tuple[object, ExitRules], ...]
    benchmark: str  # whose regime labels switch the entries
    legs: baskets.Legs | None = None  # multi-leg strategies: the legs the symbol names
    # params reloaded while trading (``sleeves_over``): entry k belongs to params file epoch_of[k],
    # in force for decisions on bars from epoch_from[epoch_of[k]] (UTC µs) on; () = one file
    epoch_of: tuple[int, ...] = ()
    epoch_from: tuple[int, ...] = ()
    strategies: tuple[str, ...] = ()  # mixed sleeves: the strategy of each entry (() = ``strategy`` for all)

    @property
    def names(self) -> tuple[str, ...]:
        """The strategies trading through this sleeve (one, unless mixed)."""
        return tuple(dict.fromkeys(self.strategies)) if self.strategies else (self.strategy,)

    def strategy_at(self, k: int) -> str:
        """The strategy of entry ``k``."""
        return self.strategies[k] if self.strategies else self.strategy

    @property
    def run_by(self) -> str | tuple[str, ...]:
        """What ``research.switching.simulate_switching`` takes: one name, or one per entry."""
        return self.strategies or self.strategy

    @property
    def by_regime(self) -> bool:
        return any(lab != "all" for lab in self.labels)

    @property
    def traded(self) -> tuple[str, ...]:
        """The symbols this sleeve places orders in."""
        return self.legs.traded if self.legs else (self.symbol,)

    @property
    def data(self) -> tuple[str, ...]:
        """The symbols whose bars it decides on."""
        return self.legs.data if self.legs else (self.symbol,)


@dataclass(frozen=True)
class Decision:
    """What the sleeve wants after bar t's close (every field the decision log records: ``vars(d)``, so no slots)."""

    strategy: str
    symbol: str
    bar_time: pd.Timestamp  # bar t's start (UTC)
    close: float
    regime_next: str  # the label whose entry a flat sleeve would use for the next open
    target: int  # position sign to hold from the next open
    position: int  # the backtest's position at t's close (after t's stops)
    entry_price: float | None  # the open trade's raw entry fill (the stop's base)
    stop: float | None  # the protective stop for the next bar (on the tick)
    take_profit: float | None
    rules: ExitRules | None  # the rules of the entry governing the position (or the next entry)
    reason: str


def sleeves(pf: ParamsFile, candidates: bool = False, netted: frozenset[str] | None = None) -> list[Sleeve]:
    """The sleeves with at least one active entry, in the file's order.

    ``candidates=True`` also takes the entries the gate turned flat but that carry a chosen
    combination (in-sample trades > 0): what the rejected candidates would have done. Only for
    replays that say so; the live runner never trades them.
    ``netted``: symbols whose strategies stay one sleeve each (``netted_symbols``; default: this file's).
    """
    groups: dict[tuple[str, str], list] = {}
    for e in pf.entries:
        chosen = e.in_sample.trades is not None and e.in_sample.trades > 0
        if e.status == "active" or (candidates and chosen):
            groups.setdefault((e.strategy, e.symbol), []).append(e)
    bench = pf.data.benchmark
    out = [Sleeve(s, sym, tuple(e.regime for e in es), tuple((e.make_params(), e.exit_rules.to_rules()) for e in es),
                  bench or sym, baskets.legs(s, sym) if s in baskets.MULTI_LEG else None)
           for (s, sym), es in groups.items()]
    out = _per_symbol(out, netted_symbols([pf], candidates) if netted is None else netted)
    for sl in out:
        if sl.legs and (sl.by_regime or _has_exits(sl.entries[0][1])):
            raise ValueError(f"{sl.strategy} {sl.symbol}: a multi-leg entry trades one entry for regime 'all' "
                             "with the strategy's own exits (exit_rules off); per-regime switching and exit "
                             "rules of multi-leg trades are not built")
    seen: dict[tuple[str, str], str] = {}
    for sl in out:
        for leg in sl.traded:
            other = seen.setdefault((sl.strategy, leg), sl.symbol)
            if other != sl.symbol:
                raise ValueError(f"{sl.strategy} trades {leg} in two entries ({other} and {sl.symbol}): "
                                 "positions are kept per (strategy, symbol)")
    return out


def _per_symbol(sls: list[Sleeve], netted: frozenset[str]) -> list[Sleeve]:
    """One sleeve per single-leg symbol, at the place of its first: a symbol several strategies trade
    in different regimes becomes one mixed sleeve; a ``netted`` symbol keeps one sleeve per strategy
    (their virtual positions are netted into one broker position: live_bridge/runner_book.py)."""
    group: dict[str, list[Sleeve]] = {}
    for sl in sls:
        if sl.legs is None and sl.symbol not in netted:
            group.setdefault(sl.symbol, []).append(sl)
    out = []
    for sl in sls:
        if sl.legs is not None or sl.symbol in netted:
            out.append(sl)
        elif (g := group.pop(sl.symbol, None)) is not None:
            out.append(g[0] if len(g) == 1 else _joined(sl.symbol, g[0].benchmark, [
                (lab, e, x.strategy, 0) for x in g for lab, e in zip(x.labels, x.entries)], ()))
    return out


def netted_symbols(files: Sequence[ParamsFile], candidates: bool = False) -> frozenset[str]:
    """The single-leg symbols two strategies may hold at once in one of ``files``: they share a regime
    (an "all" entry shares every one). Each strategy is then its own sleeve with its own virtual
    position, and the runner nets them (one strategy per regime is a mixed sleeve instead)."""
    out = set()
    for pf in files:
        cells: dict[str, dict[str, set[str]]] = {}
        for e in pf.entries:
            chosen = e.in_sample.trades is not None and e.in_sample.trades > 0
            if (e.status == "active" or (candidates and chosen)) and e.strategy not in baskets.MULTI_LEG:
                cells.setdefault(e.symbol, {}).setdefault(e.strategy, set()).add(e.regime)
        for sym, by in cells.items():
            names = list(by)
            if any(a < b and (by[a] & by[b] or "all" in by[a] | by[b]) for a in names for b in names):
                out.add(sym)
    return frozenset(out)


def _joined(symbol: str, benchmark: str, rows: list[tuple], froms: tuple[int, ...]) -> Sleeve:
    """A single-leg sleeve of (label, entry, strategy, epoch) rows; mixed when the strategies differ."""
    strategies = tuple(r[2] for r in rows)
    names = sorted(set(strategies))
    labels, entries, of = (tuple(r[i] for r in rows) for i in (0, 1, 3))
    return Sleeve("+".join(names), symbol, labels, entries, benchmark, None, of if froms else (), froms,
                  strategies if len(names) > 1 else ())


def sleeves_over(epochs: Sequence[tuple[int, ParamsFile]], candidates: bool = False) -> list[Sleeve]:
    """The sleeves of params files installed one after another: ``epochs`` = (from_us, file), oldest
    first; file i decides the bars from its from_us (UTC µs) until the next one's.

    A sleeve (strategy, symbol) of any file is kept: its entries are every file's, each tagged with
    its file, so a position keeps the entry (params, exit rules, stop) it was opened under until it
    exits, and an entry the newer file removed takes no new position (the rule regime switching
    follows already). Each file is checked on its own (``sleeves``); a benchmark change is refused.
    """
    if len(epochs) == 1:
        return sleeves(epochs[0][1], candidates)
    froms = tuple(int(f) for f, _ in epochs)
    if list(froms) != sorted(set(froms)):
        raise ValueError("params epochs must start at increasing bars")
    merged: dict[tuple[str, str], dict] = {}
    netted = netted_symbols([pf for _, pf in epochs], candidates)  # netted in one file: in all of them
    for i, (_, pf) in enumerate(epochs):
        for sl in sleeves(pf, candidates, netted):  # single-leg: one sleeve per symbol, its strategy may change
            key = sl.strategy if sl.legs or sl.symbol in netted else ""
            m = merged.setdefault((key, sl.symbol), {"rows": [], "sl": sl})
            if m["sl"].benchmark != sl.benchmark and (sl.by_regime or m["sl"].by_regime):
                raise ValueError(f"{sl.strategy} {sl.symbol}: the regime benchmark changed from {m['sl'].benchmark} "
                                 f"to {sl.benchmark}; a running runner cannot switch benchmarks (restart it flat)")
            m["rows"] += [(lab, e, sl.strategy_at(k), i) for k, (lab, e) in enumerate(zip(sl.labels, sl.entries))]
            m["sl"] = sl
    out = []
    for m in merged.values():
        sl, rows = m["sl"], m["rows"]
        out.append(_joined(sl.symbol, sl.benchmark, rows, froms) if sl.legs is None else
                   Sleeve(sl.strategy, sl.symbol, tuple(r[0] for r in rows), tuple(r[1] for r in rows), sl.benchmark,
                          sl.legs, tuple(r[3] for r in rows), froms))
    return out


def _epoch_codes(sleeve: Sleeve, ts: np.ndarray, labels) -> np.ndarray:
    """Per bar, the entry code of the params file in force at that bar and its next-session label."""
    ep = np.searchsorted(np.asarray(sleeve.epoch_from, dtype=np.int64), ts, side="right") - 1
    codes = np.full(len(ts), -1, dtype=np.int64)
    lab = None
    for k, (label, e) in enumerate(zip(sleeve.labels, sleeve.epoch_of)):
        mask = ep == e
        if label != "all":
            lab = np.asarray([str(x) for x in labels], dtype=object) if lab is None else lab
            mask &= lab == label
        codes[mask & (codes < 0)] = k
    return codes


def _has_exits(r: ExitRules) -> bool:
    return bool(r.stop_loss or r.take_profit or r.trailing_stop or r.time_stop or r.flat_at_close)


class _All:
    def __getitem__(self, _: object) -> str:
        return "all"


_ALL = _All()


def next_labels(bars: Bars, timeframe_is_daily: bool, regimes: pd.DataFrame | None) -> np.ndarray:
    """Per bar, the regime label of the session the next bar falls in (see the module docstring)."""
    nxt = bars.session + (1 if timeframe_is_daily else (bars.bars_left <= 0).astype(np.int64))
    if regimes is None:
        return np.full(len(bars), "all", dtype=object)
    return label_bars(nxt, regimes)


def halt_masks(sleeve: Sleeve, ts: np.ndarray, bars: Bars, halts: Sequence[tuple[int, str]],
               strategy: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(no entry, flatten) per bar from the runner's halts, (when in UTC µs, scope) as the state store
    keeps them: a halt of the account (``*``), of the sleeve's symbol (``symbol:<SYM>``: flattened by
    hand, ``live_bridge.control``) or of the sleeve's strategy (``strategy``: which one of a mixed
    sleeve's) takes no entry on the bars of its session from the bar it tripped in (the bar in
    progress then, or the last one closed); the account's and the symbol's also close the position at
    that bar's close, filled at the next open."""
    n = len(ts)
    no_entry, flatten = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    mine = "symbol:" + sleeve.symbol
    for at_us, scope in halts:
        if scope not in ("*", mine, strategy or sleeve.strategy):
            continue
        h = int(np.searchsorted(ts, at_us, side="right")) - 1
        if h < 0:
            continue
        end = int(np.searchsorted(bars.session, bars.session[h], side="right"))  # the session's bars
        no_entry[h:end] = True
        if scope in ("*", mine):
            flatten[h] = True
    return no_entry, flatten


def entry_codes(sleeve: Sleeve, arrays: Mapping[str, np.ndarray], bars: Bars, timeframe: str,
                regimes: pd.DataFrame | None, trade_from_us: int | None = None) -> tuple[object, np.ndarray]:
    """Per bar, the next session's label and the entry code a decision at its close uses (-1: none)."""
    if sleeve.epoch_from:
        labels = next_labels(bars, timeframe == "1Day", regimes) if sleeve.by_regime else _ALL
        codes = _epoch_codes(sleeve, np.asarray(arrays["ts"]), labels if sleeve.by_regime else ())
    elif sleeve.by_regime:
        labels = next_labels(bars, timeframe == "1Day", regimes)
        names = np.asarray(sleeve.labels, dtype=object)
        order = np.argsort(names)
        pos = np.clip(np.searchsorted(names[order], labels), 0, len(names) - 1)
        codes = np.where(names[order][pos] == labels, order[pos], -1).astype(np.int64)
    else:
        labels = _ALL  # one entry for every regime: no labels to look up (an object array per bar costs)
        codes = np.zeros(len(bars), dtype=np.int64)
    if trade_from_us is not None:
        codes[np.asarray(arrays["ts"]) < trade_from_us] = -1
    return labels, codes


class SleevePath(NamedTuple):
    """A sleeve's decision path: per bar the next session's label, the entry code a flat decision
    uses, the path (``research.exits.Path``) and the code governing each position; per trade its code."""

    labels: object
    codes: np.ndarray
    path: Path
    active: np.ndarray
    trade_codes: np.ndarray
    flatten: np.ndarray | None

    def trade_strategies(self, sleeve: Sleeve) -> list[str]:
        """The strategy each trade was entered under (its exits are that strategy's too)."""
        return [sleeve.strategy_at(int(k)) for k in self.trade_codes]


def sleeve_path(sleeve: Sleeve, arrays: Mapping[str, np.ndarray], bars: Bars, timeframe: str,
                regimes: pd.DataFrame | None, trade_from_us: int | None = None,
                halts: Sequence[tuple[int, str]] = ()) -> SleevePath:
    """The path the sleeve trades over ``arrays`` (``decide`` reads its last bar, shadow and parity all)."""
    labels, codes = entry_codes(sleeve, arrays, bars, timeframe, regimes, trade_from_us)
    flatten = None
    if halts:
        ts = np.asarray(arrays["ts"])
        for k, name in enumerate(sleeve.names):  # a strategy's halt stops that strategy's entries only
            no_entry, fl = halt_masks(sleeve, ts, bars, halts, name)
            mine = np.isin(codes, [i for i in range(len(sleeve.entries)) if sleeve.strategy_at(i) == name])
            codes[no_entry & (mine if sleeve.strategies else True)] = -1
            flatten = fl if k == 0 else flatten | fl
    path, active, trade_codes = simulate_switching(bars, sleeve.run_by, list(sleeve.entries), codes, flatten)
    return SleevePath(labels, codes, path, active, trade_codes, flatten)


def decide(sleeve: Sleeve, arrays: Mapping[str, np.ndarray], timeframe: str, regimes: pd.DataFrame | None,
           trade_from_us: int | None = None, bars: Bars | None = None,
           halts: Sequence[tuple[int, str]] = ()) -> tuple[Decision, object]:
    """The decision at the last bar of ``arrays`` (lake-style columns, ts in UTC µs), and the path.

    ``bars``: ``bars_from_arrays(arrays, timeframe)`` when the caller keeps it already (the runner).
    ``halts``: the runner's halts (``halt_masks``), so the path is the one the account traded.
    The decision's strategy is the entry's that governs it: an open position's (until it exits), else
    the next regime's entry's (a mixed sleeve; see ``decision_strategy``).
    """
    bars = bars_from_arrays(dict(arrays), timeframe) if bars is None else bars
    labels, codes, path, active, trade_codes, _ = sleeve_path(sleeve, arrays, bars, timeframe, regimes,
                                                              trade_from_us, halts)
    t = len(bars) - 1
    pos, want = int(path.position[t]), int(path.target[t])
    ts = pd.Timestamp(int(arrays["ts"][t]), unit="us", tz="UTC")
    entry = stop = take = None
    rules = None
    if pos != 0:
        k = int(active[t])
        rules = sleeve.entries[k][1]
        tr = path.trades
        e_bar = int(tr.entry_bar[-1])
        entry = float(tr.entry_price[-1])
        hi = bars.high[e_bar:t + 1].max() if pos > 0 else bars.low[e_bar:t + 1].min()
        extreme = max(entry, hi) if pos > 0 else min(entry, hi)
        if want == pos:
            stop = stop_price(pos, entry, extreme, rules)
            take = target_price(pos, entry, rules)
    elif want != 0:
        rules = sleeve.entries[int(codes[t])][1]
    reason = _reason(pos, want, str(labels[t]), codes[t] >= 0)
    who = decision_strategy(sleeve, int(active[t]) if pos else -1, int(codes[t]), trade_codes)
    return Decision(who, sleeve.symbol, ts, float(bars.close[t]), str(labels[t]), want, pos, entry, stop, take, rules,
                    reason), path


def decision_strategy(sleeve: Sleeve, active: int, code: int, trade_codes: np.ndarray) -> str:
    """Whose decision this is: the open position's entry's strategy, else the next regime's entry's
    (what a flat sleeve would enter under), else the last trade's; a sleeve of one strategy: that one."""
    if not sleeve.strategies:
        return sleeve.strategy
    k = active if active >= 0 else code if code >= 0 else int(trade_codes[-1]) if len(trade_codes) else 0
    return sleeve.strategy_at(k)


def holder(strategy: str, held: Mapping[str, float]) -> tuple[str, float]:
    """(the strategy acting on a decision of ``strategy``, the quantity it holds): a mixed sleeve's
    position stays its entry's strategy's until it exits, so while another of the sleeve's strategies
    still holds the symbol in the books (e.g. its stop's fill report is on its way) that one acts."""
    others = [(s, q) for s, q in held.items() if s != strategy and q]
    return others[0] if others and not held.get(strategy) else (strategy, held.get(strategy, 0.0))


def _reason(pos: int, want: int, label: str, has_entry: bool) -> str:
    if want == pos:
        if pos:
            return f"hold {'long' if pos > 0 else 'short'}"
        return "flat: no signal" if has_entry else f"flat: no active entry for regime {label}"
    if want == 0:
        return "exit (signal, time stop or session end)"
    return f"enter {'long' if want > 0 else 'short'} under regime {label}"


@dataclass(frozen=True)
class BasketDecision:
    """A multi-leg sleeve after bar t's close: per traded leg, the weight to hold from the next open."""

    strategy: str
    symbol: str  # the entry's symbol, e.g. "KO/PEP"
    bar_time: pd.Timestamp
    closes: dict[str, float]  # bar t's close of every traded leg
    target: dict[str, float]  # effective weight decided at t (held from t+1's open)
    previous: dict[str, float]  # effective weight decided at t-1
    raw: dict[str, float]  # the strategy's own weight at t (before the broker rules of baskets.effective)
    reason: str


def basket_path(sleeve: Sleeve, arrays: Mapping[str, Mapping[str, np.ndarray]], timeframe: str,
                trade_from_us: int | None = None) -> tuple[np.ndarray, dict, np.ndarray, np.ndarray]:
    """(common ts, aligned arrays, raw weights, effective weights) of a multi-leg sleeve."""
    ts, aligned = baskets.align(arrays, sleeve.legs.data)
    raw = baskets.weights(sleeve.strategy, sleeve.entries[0][0], sleeve.legs, aligned, timeframe)
    if sleeve.epoch_from:  # reloaded params: each file's weights on its own bars, none where a file dropped it
        ep = np.searchsorted(np.asarray(sleeve.epoch_from, dtype=np.int64), ts, side="right") - 1
        spliced = np.zeros_like(raw)
        for k, e in enumerate(sleeve.epoch_of):
            w = raw if k == 0 else baskets.weights(sleeve.strategy, sleeve.entries[k][0], sleeve.legs, aligned, timeframe)
            spliced[ep == e] = w[ep == e]
        raw = spliced
    start = 0 if trade_from_us is None else int(np.searchsorted(ts, trade_from_us))
    return ts, aligned, raw, baskets.effective(raw, start)


def decide_basket(sleeve: Sleeve, arrays: Mapping[str, Mapping[str, np.ndarray]], timeframe: str,
                  trade_from_us: int | None = None) -> BasketDecision:
    """The decision at the last bar the legs share (the runner calls it once all legs have that bar)."""
    ts, aligned, raw, w = basket_path(sleeve, arrays, timeframe, trade_from_us)
    t = len(ts) - 1
    legs = sleeve.traded
    prev = w[t - 1] if t > 0 else np.zeros(len(legs))
    changed = [f"{leg} {p:+.3f} -> {x:+.3f}" for leg, p, x in zip(legs, prev, w[t]) if p != x]
    missed = [leg for leg, r, x in zip(legs, raw[t], w[t]) if r != 0 and x == 0]
    reason = ("rebalance: " + ", ".join(changed)) if changed else \
        (f"hold; not entered late or flipping first: {', '.join(missed)}" if missed else "hold")
    return BasketDecision(sleeve.strategy, sleeve.symbol, pd.Timestamp(int(ts[t]), unit="us", tz="UTC"),
                          {leg: float(aligned[leg]["close"][t]) for leg in legs},
                          dict(zip(legs, map(float, w[t]))), dict(zip(legs, map(float, prev))),
                          dict(zip(legs, map(float, raw[t]))), reason)
