"""Bars into the runner: each into its symbol's history, then the sleeves deciding on them.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size. A feed delivers a close of many
symbols at once; the worker takes the bar events queued together (``_more_bars``: only bars right
behind each other, nothing else reordered), puts every bar into its history and the regime labels
first (``_ingest``: refused bars and data gaps alerted), then decides every single-leg sleeve of
those symbols in one ``batch.decide_many`` call (the same decisions as ``sleeves.decide``: a few
numba calls for hundreds of sleeves, ``bench/live.py``), and acts symbol by symbol in arrival order.
A lone bar, or a batch holding a symbol twice (a catch-up), goes one bar at a time as before.
"""

from __future__ import annotations

import logging

import pandas as pd

from .batch import Item, decide_many
from .history import COLUMNS, History, bar_problem, utc_us

log = logging.getLogger("live_bridge.runner")


class BarDesk:
    """Bars in, decisions out (mixed into Runner)."""

    def _more_bars(self, limit: int = 4096) -> list:
        """The bar events queued right behind the one taken (nothing else is reordered)."""
        out = []
        with self._q.mutex:
            q = self._q.queue
            while q and q[0].kind == "bar" and len(out) < limit:
                out.append(q.popleft())
            if out:
                self._q.not_full.notify()
        return out

    def _bars(self, items: list) -> None:
        """Bars that arrived together (a close of many symbols): all of them into the history (and the
        regime labels) first, then every sleeve deciding on them in one batched call (``batch.decide_many``:
        the same decisions as ``sleeves.decide``, a few numba calls for hundreds of sleeves)."""
        pairs = [x if isinstance(x, tuple) else (x, True) for x in items]
        if len(pairs) == 1 or len({b.symbol for b, _ in pairs}) < len(pairs):  # one bar, or a catch-up: in turn
            for bar, act in pairs:
                self._bar(bar, act)
            return
        self._held = [] if self._held is None else self._held  # the log lines wait for the last order
        try:
            self._batch(pairs)
        finally:
            self._release_log()

    def _batch(self, pairs: list) -> None:
        got = []
        for bar, act in pairs:
            sym = self._guarded(lambda b=bar: self._ingest(b))
            if sym is not None:
                got.append((sym, act, self._labelled))
        decided = self._decide_all([sym for sym, _, _ in got])
        decided[("batch",)] = True  # never empty: baskets decided in it are marked in it
        # symbols with something to do act first (arrival order kept within each group): their orders
        # go out without waiting for the flat-and-staying-flat ones, which take no capacity of any limit
        got.sort(key=lambda g: self._idle_symbol(g[0], decided))
        for sym, act, _ in got:  # one symbol's failure is that symbol's alone, as one bar's was
            self._guarded(lambda s=sym, a=act: self._decide_symbol(s, self._hist[s], a, decided))
        for sym, _, labelled in got:
            if labelled:
                self._guarded(lambda s=sym: self._redecide_waiting(s))

    def _idle_symbol(self, sym: str, decided: dict) -> bool:
        """Every sleeve of ``sym`` was decided in the batch, is flat in its path and wants nothing, and
        none of its strategies holds the symbol: acting on it only writes its decision lines."""
        for sl in self._watch.get(sym, ()):
            d = decided.get(id(sl))
            if d is None or d.target or d.position or any(self.store.position(s, sym).qty for s in sl.names):
                return False
        return True

    def _guarded(self, fn):
        """``fn()``; an exception is logged as the worker logs a failed event, and the batch goes on."""
        try:
            return fn()
        except Exception as exc:
            log.exception("runner: a bar of a batch failed")
            self.errors.append(f"bar: {type(exc).__name__}: {exc}")
            self._write({"event": "error", "kind": "bar", "error": f"{type(exc).__name__}: {exc}"})
            return None

    def _decide_all(self, symbols: list[str]) -> dict:
        """id(sleeve) -> its decision at its symbol's last bar, for every single-leg sleeve of ``symbols``,
        in one ``decide_many`` call ({} when it fails: then each sleeve decides on its own, as ever)."""
        sls = [(sl, sym) for sym in symbols for sl in self._watch.get(sym, ()) if sl.legs is None]
        items = [Item(sl, self._hist[sym].arrays, self.regimes_of(sl.benchmark), self._hist[sym].bars, self._halt_marks)
                 for sl, sym in sls]
        try:
            return {id(sl): d for (sl, _), d in zip(sls, decide_many(items, self.config.timeframe, self.trade_from_us))}
        except Exception as exc:  # one sleeve's bad input must not stop the others: decided one by one
            log.warning("runner: batched decisions failed (%s: %s); deciding one by one", type(exc).__name__, exc)
            return {}

    def _bar(self, bar: object, act: bool = True) -> None:
        sym = self._ingest(bar)
        if sym is None:
            return
        labelled = self._labelled
        self._decide_symbol(sym, self._hist[sym], act)
        if labelled:
            self._redecide_waiting(sym)

    def _ingest(self, bar: object) -> str | None:
        """A bar into its symbol's history (refused bars alerted); its symbol, or None when not kept."""
        self._labelled = False
        sym = bar.symbol
        ts = utc_us(bar.ts)
        hist = self._hist.get(sym)
        if hist is None:
            hist = self._hist[sym] = History({}, self.config.timeframe)
        values = tuple(float(getattr(bar, c)) for c in COLUMNS[1:])
        if hist.last_ts is not None and ts <= hist.last_ts:
            return  # a bar seen already (stream and poll overlap)
        problem = bar_problem(float(hist.arrays["close"][-1]) if len(hist) else None, *values, self.config.max_bar_jump)
        if problem:  # never decided on: the history keeps the last good bar
            self._alert("bad_bar", sym, problem, bar_time=pd.Timestamp(ts, unit="us", tz="UTC"))
            return
        try:
            hist.append(ts, *values)
        except ValueError as exc:  # not on an NYSE session
            self._alert("bad_bar", sym, str(exc), bar_time=pd.Timestamp(ts, unit="us", tz="UTC"))
            return
        self.history[sym] = hist.arrays
        if sym in self._crossing:  # a zero-sum plan of the last bar crosses at this bar's open
            self._cross_pending(sym, values[0], ts)
        missing = hist.missing_before_last()
        if missing > self.config.max_missing_bars:
            self._gapped.add(sym)
            self._alert("data_gap", sym, f"{missing} bars missing before this one (max_missing_bars="
                        f"{self.config.max_missing_bars}): no new entry on it", bar_time=pd.Timestamp(ts, unit="us", tz="UTC"))
        else:
            self._gapped.discard(sym)
        self._labelled = self._benchmark_bar(sym, hist)  # a benchmark's bar first: it labels the next session
        return sym
