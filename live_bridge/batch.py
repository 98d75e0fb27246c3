"""Every sleeve deciding at a bar close, decided at once: ``decide_many`` == ``[decide(...)]``, batched.

A feed delivers the close of hundreds of symbols together, and the last sleeve decided waits for all
the others. ``sleeves.decide`` costs ~70 µs a sleeve (a regime-switched one ~600 µs, mostly labelling
its bars with the regimes table), of which the signal and simulation loops are a few µs: the rest is
numba's dispatch and numpy/pandas work around them, paid per sleeve. Here it is paid per bar:

* what depends on the sleeves only (entries, params rows, exit rules, strategy groups) is built once
  per set of sleeves and kept (``_plan``: the runner decides the same sleeves bar after bar);
* a regimes table labels the sessions the bars span once (``research.regimes.label_bars``), as small
  ints, so a sleeve's entry codes are one lookup;
* each strategy's ``signals_nb`` (the sweep's hook, equal to its ``signals`` bit for bit) runs for
  every entry of that strategy in one call, and ``simulate_nb`` for every sleeve in another
  (``research.kernels.batch``), over the symbols' bars concatenated;
* only the last bar comes back, and the decision is built from it as ``decide`` builds it.

The path is still recomputed from the anchor at every bar: its state is path-dependent, and a halt, a
reload or a new regimes table may change its past codes. In one call it costs a few µs a sleeve, so no
incremental state is kept. tests/live_bridge/test_batch.py holds the result equal to ``decide``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pandas as pd

from research.bars import Bars, bars_from_arrays
from research.exits import stop_price, target_price
from research.kernels import batch as kb
from research.kernels.simulate import rule_arrays
from research.regimes import label_bars
from research.signals import get

from .sleeves import Decision, Sleeve, _reason, decide, decision_strategy, halt_masks

PLAIN, BY_REGIME, EPOCHS = range(3)  # how a sleeve's entry codes are found


class Item(NamedTuple):
    """One sleeve to decide at the last bar of ``arrays``: ``decide``'s arguments (``bars``: the
    runner's ``History.bars`` of ``arrays``, built when None; ``regimes``: its benchmark's table)."""

    sleeve: Sleeve
    arrays: Mapping[str, np.ndarray]
    regimes: pd.DataFrame | None = None
    bars: Bars | None = None
    halts: Sequence[tuple[int, str]] = ()


def decide_many(items: Sequence[Item], timeframe: str, trade_from_us: int | None = None) -> list[Decision]:
    """``[decide(it.sleeve, it.arrays, timeframe, it.regimes, trade_from_us, it.bars, it.halts)[0] for it
    in items]``, bit for bit, in a few numba calls (see the module docstring).

    Multi-leg sleeves are ``decide_basket``'s (ValueError). An error of one sleeve (e.g. a regimes
    table with a non-session row) raises for the call: the caller may retry the sleeves one by one.
    """
    items = [it if isinstance(it, Item) else Item(*it) for it in items]
    for it in items:
        if it.sleeve.legs is not None:
            raise ValueError(f"{it.sleeve.strategy} {it.sleeve.symbol}: a multi-leg sleeve is decided by "
                             "decide_basket")
    bars = [it.bars for it in items]
    built: dict[int, Bars] = {}
    for i, it in enumerate(items):
        if bars[i] is None:  # sleeves of one symbol share their arrays: built once
            if id(it.arrays) not in built:
                built[id(it.arrays)] = bars_from_arrays(dict(it.arrays), timeframe)
            bars[i] = built[id(it.arrays)]
    ok = [i for i, it in enumerate(items) if len(bars[i]) and all(e is not None for e in it.sleeve.entries)]
    out: list = [None] * len(items)
    for i in sorted(set(range(len(items))) - set(ok)):  # nothing to batch: decide's own answer (or error)
        it = items[i]
        out[i] = decide(it.sleeve, it.arrays, timeframe, it.regimes, trade_from_us, bars[i], it.halts)[0]
    if ok:
        for i, d in zip(ok, _decide(_plan(tuple(items[i].sleeve for i in ok)), [items[i] for i in ok],
                                    [bars[i] for i in ok], timeframe, trade_from_us)):
            out[i] = d
    return out


class _Plan(NamedTuple):
    """What depends on the sleeves only, per entry e (sleeve-major) and per strategy group."""

    sleeves: tuple[Sleeve, ...]
    kind: list[int]  # PLAIN, BY_REGIME or EPOCHS per sleeve
    kk: np.ndarray  # entries per sleeve
    e0: np.ndarray  # sleeve i's entries: [e0[i], e0[i + 1])
    sleeve_of: np.ndarray  # per entry: its sleeve
    k_of: np.ndarray  # per entry: its code in its sleeve
    groups: list[tuple[str, np.ndarray, np.ndarray | None]]  # (strategy, its entries, params rows or None)
    rules: object  # RuleArrays, per entry


_PLANS: OrderedDict[tuple[int, ...], _Plan] = OrderedDict()


def _plan(sleeves: tuple[Sleeve, ...]) -> _Plan:
    """The plan of these sleeves, kept for the next bars (a few: the sets a runner decides)."""
    key = tuple(map(id, sleeves))
    p = _PLANS.get(key)
    if p is not None and all(a is b for a, b in zip(p.sleeves, sleeves)):
        _PLANS.move_to_end(key)
        return p
    kk = np.array([len(s.entries) for s in sleeves], np.int64)
    e0 = np.concatenate([[0], np.cumsum(kk)]).astype(np.int64)
    sleeve_of = np.repeat(np.arange(len(sleeves)), kk)
    k_of = np.arange(int(e0[-1])) - e0[sleeve_of]
    by: dict[str, list[int]] = {}
    for e, (i, k) in enumerate(zip(sleeve_of.tolist(), k_of.tolist())):
        by.setdefault(sleeves[i].strategy_at(k), []).append(e)
    groups = []
    for name, es in by.items():
        strat = get(name)
        fast = strat.signals_nb is not None and strat.params_to_array is not None
        rows = np.array([strat.params_to_array(sleeves[sleeve_of[e]].entries[k_of[e]][0]) for e in es],
                        np.float64) if fast else None
        groups.append((name, np.array(es, np.int64), rows))
    kind = [EPOCHS if s.epoch_from else BY_REGIME if s.by_regime else PLAIN for s in sleeves]
    p = _PLANS[key] = _Plan(sleeves, kind, kk, e0, sleeve_of, k_of, groups,
                            rule_arrays([r for s in sleeves for _, r in s.entries]))
    if len(_PLANS) > 8:
        _PLANS.popitem(last=False)
    return p


@lru_cache(maxsize=4096)
def _label_codes(labels: tuple[str, ...], vocab: tuple) -> np.ndarray:
    """Per vocabulary label, the entry code ``sleeves.entry_codes`` gives it (the same numpy steps)."""
    names = np.asarray(labels, dtype=object)
    order = np.argsort(names)
    v = np.empty(len(vocab), dtype=object)
    v[:] = vocab
    pos = np.clip(np.searchsorted(names[order], v), 0, len(names) - 1)
    return np.where(names[order][pos] == v, order[pos], -1).astype(np.int64)


def _epoch_codes(sl: Sleeve, ts: np.ndarray, lab: np.ndarray, vocab: tuple, out: np.ndarray) -> None:
    """``sleeves._epoch_codes`` into ``out``, from label ids."""
    ep = np.searchsorted(np.asarray(sl.epoch_from, dtype=np.int64), ts, side="right") - 1
    out[:] = -1
    for k, (label, e) in enumerate(zip(sl.labels, sl.epoch_of)):
        mask = ep == e
        if label != "all":
            mask &= np.array([str(x) == label for x in vocab])[lab]
        out[mask & (out < 0)] = k


def _halted(sl: Sleeve, ts: np.ndarray, bars: Bars, halts, codes: np.ndarray) -> np.ndarray | None:
    """``sleeves.sleeve_path``'s halts: entries taken off ``codes`` (in place), the flatten mask."""
    flatten = None
    for k, name in enumerate(sl.names):
        no_entry, fl = halt_masks(sl, ts, bars, halts, name)
        mine = np.isin(codes, [i for i in range(len(sl.entries)) if sl.strategy_at(i) == name])
        codes[no_entry & (mine if sl.strategies else True)] = -1
        flatten = fl if k == 0 else flatten | fl
    return flatten if flatten is not None and flatten.any() else None


class _Labels:
    """Label ids of every concatenated bar, per regimes table (``sleeves.next_labels`` as small ints):
    the tables' sessions are labelled once, by ``research.regimes.label_bars`` itself."""

    def __init__(self, session: np.ndarray, bars_left: np.ndarray, daily: bool) -> None:
        self.nxt = session + (1 if daily else (bars_left <= 0).astype(np.int64))
        self.lo, self.hi = int(self.nxt.min()), int(self.nxt.max())
        self.parts: list[np.ndarray] = []
        self.known: dict[int, tuple[int, tuple, object]] = {}  # id(table) -> (part, vocabulary, table)

    def of(self, regimes: pd.DataFrame | None) -> tuple[int, tuple]:
        """(index of its part, its vocabulary): the label of bar j is ``vocabulary[parts[part][j]]``."""
        got = self.known.get(id(regimes))
        if got is None:
            if regimes is None:
                ids, vocab = np.zeros(len(self.nxt), np.int64), {"all": 0}
            else:
                per_session = label_bars(np.arange(self.lo, self.hi + 1, dtype=np.int64), regimes)
                vocab = {}
                ids = np.fromiter((vocab.setdefault(x, len(vocab)) for x in per_session), np.int64,
                                  len(per_session))[self.nxt - self.lo]
            self.parts.append(ids)
            got = self.known[id(regimes)] = (len(self.parts) - 1, tuple(vocab), regimes)
        return got[0], got[1]


class _Codes:
    """Where each sleeve's entry codes come from (``kb.last_bars_nb``'s ``source``): 0 for a plain
    sleeve, a label -> code table for a per-regime one, else computed here (params epochs, halts)."""

    def __init__(self, plan: _Plan, items: list[Item], bars: list[Bars], b0: np.ndarray, ns: np.ndarray,
                 ts_all: np.ndarray, first: list[int], labels: _Labels | None) -> None:
        m = len(items)
        self.source = np.full(m, kb.CODE_ZERO, np.int64)
        self.c0, self.l0, self.t0 = (np.zeros(m, np.int64) for _ in range(3))
        self.f0 = np.full(m, -1, np.int64)
        self.lab_of: list[tuple[int, tuple] | None] = [None] * m  # (labels part, vocabulary) per sleeve
        self.given, self.tables, self.flat = [], [], []
        table_at: dict[tuple, int] = {}
        at_c = at_t = at_f = 0
        for i, it in enumerate(items):
            kind, sl = plan.kind[i], it.sleeve
            halts = [h for h in it.halts if h[0] >= first[i]] if it.halts else ()  # older ones change nothing
            if kind == PLAIN and not halts:
                continue
            a, n = int(b0[i]), int(ns[i])
            if sl.by_regime:
                self.lab_of[i] = labels.of(it.regimes)
            part, vocab = self.lab_of[i] or (None, ("all",))
            if kind == BY_REGIME and not halts:
                key = (sl.labels, part)
                if key not in table_at:
                    table_at[key] = at_t
                    self.tables.append(_label_codes(sl.labels, vocab))
                    at_t += len(vocab)
                self.source[i], self.t0[i], self.l0[i] = kb.CODE_TABLE, table_at[key], part * len(ts_all) + a
                continue
            c = np.zeros(n, np.int64)
            lab = None if part is None else labels.parts[part][a:a + n]
            if kind == EPOCHS:
                _epoch_codes(sl, ts_all[a:a + n], np.zeros(n, np.int64) if lab is None else lab, vocab, c)
            elif kind == BY_REGIME:
                c[:] = _label_codes(sl.labels, vocab)[lab]
            if halts and (fl := _halted(sl, ts_all[a:a + n], bars[i], halts, c)) is not None:
                self.flat.append(fl)
                self.f0[i], at_f = at_f, at_f + n
            self.source[i], self.c0[i] = kb.CODE_GIVEN, at_c
            self.given.append(c)
            at_c += n


_SCRATCH = threading.local()  # per thread: two runners' workers never share a buffer


def _scratch(name: str, n: int, dtype) -> np.ndarray:
    """A reusable array of ``n`` items for this thread's next batch (the bars of 250 symbols concatenated
    are ~10 MB: a new array per bar cost its page faults, ~7 ms, ten times the copy itself). Only read
    inside one ``decide_many`` call: no decision keeps a view of it."""
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or buf.shape[0] < n or buf.dtype != dtype:
        buf = bufs[name] = np.empty(n + n // 4, dtype)  # room to grow by a few bars a day
    return buf[:n]


def _signals(plan: _Plan, cols: list[np.ndarray], b0: np.ndarray, ns: np.ndarray, s0: np.ndarray) -> list:
    """Every entry's four signals, flat (``research.kernels.batch`` layout): one call per strategy."""
    sig = [_scratch(f"sig{j}", int(s0[-1]), np.bool_) for j in range(4)]
    es = plan.sleeve_of
    at_all = s0[es] + plan.k_of * ns[es]
    for name, ents, rows in plan.groups:
        a, at = b0[es[ents]], at_all[ents]
        b = a + ns[es[ents]]
        if rows is not None:
            kb.signals_many_nb(get(name).signals_nb, cols, a, b, rows, at, *sig)
        else:
            for e, x, y, w in zip(ents.tolist(), a.tolist(), b.tolist(), at.tolist()):
                params = plan.sleeves[es[e]].entries[plan.k_of[e]][0]
                s = get(name).signals(Bars(*(col[x:y] for col in cols)), params)
                for j in range(4):
                    sig[j][w:w + y - x] = s[j]
    return sig


def _decide(plan: _Plan, items: list[Item], bars: list[Bars], timeframe: str,
            trade_from_us: int | None) -> list[Decision]:
    """The batched decisions (``decide_many``): the bars concatenated, codes, signals, paths, decisions."""
    ubars: dict[tuple[int, int], int] = {}
    ulist: list[tuple[Bars, np.ndarray]] = []
    u_of = []
    for it, b in zip(items, bars):
        ts = it.arrays["ts"]
        u = ubars.setdefault((id(b), id(ts)), len(ulist))
        if u == len(ulist):
            ulist.append((b, ts))
        u_of.append(u)
    ulen = np.array([len(b) for b, _ in ulist], np.int64)
    ustart = np.concatenate([[0], np.cumsum(ulen)[:-1]]).astype(np.int64)
    total = int(ulen.sum())
    cols = [np.concatenate([b[j] for b, _ in ulist], out=_scratch(f"col{j}", total, np.float64 if j < 5 else np.int64),
                           casting="unsafe") for j in range(8)]
    ts_all = np.concatenate([np.asarray(ts) for _, ts in ulist], out=_scratch("ts", total, np.int64), casting="unsafe")
    b0, ns = ustart[u_of], ulen[u_of]
    s0 = np.concatenate([[0], np.cumsum(ns * plan.kk)]).astype(np.int64)
    labels = _Labels(cols[5], cols[7], timeframe == "1Day") if any(s.by_regime for s in plan.sleeves) else None
    c = _Codes(plan, items, bars, b0, ns, ts_all, ts_all[ustart[u_of]].tolist(), labels)
    sig = _signals(plan, cols, b0, ns, s0)
    cat = lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.zeros(0, dt)  # noqa: E731
    cut = np.int64(trade_from_us) if trade_from_us is not None else np.iinfo(np.int64).min
    ints, floats = kb.last_bars_nb(cols[0], cols[1], cols[2], cols[7], ts_all, cut, b0, b0 + ns, plan.e0, s0,
                                   c.source, c.c0, cat(c.given, np.int64),
                                   cat(labels.parts if labels else [], np.int64), c.l0, cat(c.tables, np.int64), c.t0, c.f0, cat(c.flat, np.bool_), *sig, plan.rules)
    last = b0 + ns - 1
    label_last = [None if lab is None else lab[1][labels.parts[lab[0]][j]]
                  for lab, j in zip(c.lab_of, last.tolist())]
    stamps: dict[int, pd.Timestamp] = {}
    return [_decision(it.sleeve, ints_i, floats_i, t_us, close, label, stamps)
            for it, ints_i, floats_i, t_us, close, label in
            zip(items, ints.tolist(), floats.tolist(), ts_all[last].tolist(), cols[3][last].tolist(), label_last)]


def _decision(sl: Sleeve, ints: list, floats: list, t_us: int, close: float, label: object,
              stamps: dict[int, pd.Timestamp]) -> Decision:
    """``sleeves.decide``'s decision from the last bar of the path (``kb.last_bars_nb``'s row)."""
    pos, want, active, code = ints[kb.POSITION], ints[kb.TARGET], ints[kb.ACTIVE], ints[kb.CODE]
    ts = stamps.get(t_us)
    if ts is None:
        ts = stamps[t_us] = pd.Timestamp(t_us, unit="us", tz="UTC")
    entry = stop = take = rules = None
    if pos != 0:
        rules = sl.entries[active][1]
        entry = floats[kb.ENTRY_PRICE]
        hi = floats[kb.HIGHEST] if pos > 0 else floats[kb.LOWEST]
        extreme = max(entry, hi) if pos > 0 else min(entry, hi)
        if want == pos:
            stop = stop_price(pos, entry, extreme, rules)
            take = target_price(pos, entry, rules)
    elif want != 0:
        rules = sl.entries[code][1]
    label = "all" if label is None else str(label)
    who = sl.strategy if not sl.strategies else decision_strategy(
        sl, active if pos else -1, code, np.array([ints[kb.TRADE_CODE]] if ints[kb.N_TRADES] else [], np.int64))
    return Decision(who, sl.symbol, ts, close, label, want, pos, entry, stop, take, rules,
                    _reason(pos, want, label, code >= 0))
