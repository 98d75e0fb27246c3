"""What the runner trades, and under which regime: the params files in force and the online labels.

A mixin of ``Runner`` (live_bridge/runner.py), split out for size.

* **Params epochs.** The runner trades a list of params files, each from the bar after the last bar
  it had decided when the file came in (``sleeves.sleeves_over``): a file installed while it runs is
  picked up between bars (``reload``, on the worker thread), a position keeps the entry it was
  opened under until it exits, and entries the new file dropped take no new position. Every epoch
  is stored (``StateStore.record_epoch``), so a restarted runner rebuilds the same decision path.
  A file that fails the runner's checks is refused with an alert, and the one in force stays.
* **Online regimes.** The labels come from the benchmark bars the runner receives
  (``regimes_live.OnlineRegimes``). A flat per-regime sleeve decided before its benchmark's bar of
  the same time arrived saw the next session as ``unknown``; it is decided again when that bar
  comes (order ids are per bar: never twice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from research.params import ParamsFile, dumps

from .history import History
from .regimes_live import OnlineRegimes, regime_params_of, session_day_us
from .runner_book import netted_groups
from .sleeves import Sleeve, sleeves_over

log = logging.getLogger("live_bridge.runner")


def check_sleeves(sls: Sequence[Sleeve], benchmarks: Mapping[str, object]) -> None:
    """The runner's refusals of a set of sleeves (ValueError naming what and why)."""
    shared = _shared(sls)
    if shared:  # single-leg strategies net into one position; a basket's legs do not (yet)
        raise ValueError("one account holds one position per symbol, and these symbols are traded by a "
                         "multi-leg strategy and another strategy in the same regime: "
                         + "; ".join(f"{k} by {v}" for k, v in sorted(shared.items()))
                         + " (single-leg strategies on one symbol are netted; a pair's or a rotation's legs "
                           "are not netted with them)")
    netted = [s for s in sls if s.legs is None and sum(x.symbol == s.symbol and x.legs is None for x in sls) > 1]
    oco = sorted({f"{s.strategy} {s.symbol}" for s in netted for _, r in s.entries if r.take_profit > 0})
    if oco:  # a take-profit rides with its stop as one OCO; several of them on one netted symbol: not built
        raise ValueError("a symbol traded by several strategies at once is netted, and its strategies' "
                         "protective stops are plain stops: these netted entries have a take_profit: " + ", ".join(oco))
    bare = [f"{s.strategy_at(k)} {s.symbol} {lab}" for s in sls for k, lab in enumerate(s.labels)
            if (r := s.entries[k][1]).take_profit > 0 and not (r.stop_loss > 0 or r.trailing_stop > 0)]
    if bare:  # the target goes out as one OCO with the stop: every position has a stop (risk policy)
        raise ValueError("a take-profit is traded live together with its stop (one OCO order), and these "
                         "entries have a take_profit but no stop_loss or trailing_stop: " + ", ".join(bare))
    missing = sorted({s.benchmark for s in sls if s.by_regime and s.benchmark not in benchmarks})
    if missing:
        raise ValueError(f"no daily bars of the regime benchmark {', '.join(missing)}: the params trade per "
                         "regime (ingest its 1Day bars)")


def _shared(sls: Sequence[Sleeve]) -> dict[str, str]:
    """symbol -> "a, b (regime r)" for each symbol two strategies could hold at once: two sleeves trade
    it (one sleeve per symbol, unless multi-leg), or a mixed sleeve's entries of two strategies share a
    regime ("all" shares every one) in one params file (entries of different epochs never overlap:
    a position keeps its entry, and only then can the next file's enter)."""
    by_symbol: dict[str, list[Sleeve]] = {}
    for s in sls:
        for sym in s.traded:
            by_symbol.setdefault(sym, []).append(s)
    out = {}
    for sym, group in by_symbol.items():
        names = {n for s in group for n in s.names}
        if len(names) < 2:
            continue
        if len(group) > 1 and all(s.legs is None and not s.strategies for s in group):
            continue  # one sleeve per strategy: netted into the one broker position (runner_book.py)
        if len(group) > 1:
            labels = sorted({x for s in group for x in s.labels})
            out[sym] = f"{', '.join(sorted(names))} (regime {', '.join(labels)})"
            continue
        s = group[0]
        cells: dict[tuple[int, str], set[str]] = {}
        for k, lab in enumerate(s.labels):
            cells.setdefault((s.epoch_of[k] if s.epoch_of else 0, lab), set()).add(s.strategy_at(k))
        clash: dict[str, set[str]] = {}
        for (epoch, lab), who in cells.items():
            rivals = who | (cells.get((epoch, "all"), set()) if lab != "all" else
                            {n for (e, x), w in cells.items() if e == epoch for n in w})
            if len(rivals) > 1:
                clash[lab] = rivals
        if clash:
            out[sym] = (f"{', '.join(sorted(set().union(*clash.values())))} "
                        f"(regime {', '.join(sorted(clash))})")
    return out


class ParamsDesk:
    """Params epochs, reloads and the online regime labels (mixed into Runner)."""

    def _use(self, epochs: list[tuple[int, ParamsFile]], candidates: bool = False) -> None:
        """Trade these epochs from now on (checked first: nothing changes when they are refused)."""
        regime_params_of(epochs)  # one regime definition for every file traded (the books' labels)
        sls = sleeves_over(epochs, candidates)
        check_sleeves(sls, self.books)
        self.epochs, self.params, self.sleeves = epochs, epochs[-1][1], sls
        self.shas = [pf.sha256() for _, pf in epochs]  # computed once: status() reads them every poll
        self.names = sorted({n for s in sls for n in s.names})  # real strategies (a mixed sleeve has several)
        self._netted = netted_groups(sls)  # symbol -> its strategies' sleeves, netted (runner_book.py)
        self._watch = {}  # symbol -> the sleeves deciding on its bars
        for s in sls:
            for sym in s.data:
                self._watch.setdefault(sym, []).append(s)

    def regimes_of(self, benchmark: str):
        """The regimes table of a benchmark as the runner knows it now (None: not a benchmark)."""
        book = self.books.get(benchmark)
        return None if book is None else book.table()

    @property
    def regimes(self) -> dict:
        return {b: book.table() for b, book in self.books.items()}

    def reload(self, params: ParamsFile, history: Mapping[str, Mapping[str, np.ndarray]] | None = None,
               daily: Mapping[str, Mapping[str, np.ndarray]] | None = None, source: str = "") -> None:
        """Queue a params file to trade from the next bar (any thread); the worker applies it between
        events. ``history`` / ``daily``: warm-up bars of symbols / benchmarks the runner lacks."""
        from .runner_orders import Work

        self._q.put(Work("reload", (params, dict(history or {}), dict(daily or {}), source)))

    def _reload(self, params: ParamsFile, history: dict, daily: dict, source: str) -> None:
        sha = params.sha256()
        if sha == self.shas[-1]:
            return
        last = max((h.last_ts for h in self._hist.values() if h.last_ts is not None), default=0)
        start = max(last + 1, self.epochs[-1][0] + 1)
        added_books = {b: OnlineRegimes(b, a, params.regime_params())
                       for b, a in daily.items() if b not in self.books}
        before = (self.epochs, self.params, self.sleeves, self.names, self._watch, self.shas)
        self.books.update(added_books)
        try:
            self._use([*self.epochs, (start, params)], self.candidates)
        except ValueError as exc:
            for b in added_books:
                del self.books[b]
            self.epochs, self.params, self.sleeves, self.names, self._watch, self.shas = before
            self._alert("reload_failed", "", f"params {source or sha[:12]} refused, the file in force stays "
                        f"({self.params.sha256()[:12]}): {exc}", sha256=sha)
            return
        for sym, arrays in history.items():
            if sym not in self._hist or not len(self._hist[sym]):
                self._hist[sym] = History(arrays, self.config.timeframe)
                self.history[sym] = self._hist[sym].arrays
        if added_books:
            self._seed_books()
        self.store.record_epoch(start, sha, dumps(params).decode(), source)
        line = {"event": "reload", "sha256": sha, "source": source, "from_bar_us": start,
                "promoted": params.verdict.promoted, "active": sum(e.status == "active" for e in params.entries),
                "sleeves": [f"{s.strategy} {s.symbol}" for s in self.sleeves]}
        log.info("runner: params %s (%s) trade from the next bar", sha[:12], source)
        self._write(line)
        self._warm_up()

    # --- online regimes ------------------------------------------------------------------------------
    def _seed_books(self) -> None:
        """Give each benchmark's labels the bars its history holds after its last daily bar: a runner
        restarted during a session (or before the evening's ingest) labels from the bars it caught up,
        as it did before the restart (intraday: whole sessions only, aggregated as the lake does)."""
        for sym, book in self.books.items():
            hist = self._hist.get(sym)
            if hist is None or not len(hist):
                continue
            a, facts, last = hist.arrays, hist.bars, book.last_day_us or -1
            for i in range(len(hist)):
                ts = int(a["ts"][i])
                values = (float(a["open"][i]), float(a["high"][i]), float(a["low"][i]), float(a["close"][i]))
                if self.config.timeframe == "1Day":
                    if ts > last:
                        book.add_daily(ts, *values)
                elif session_day_us(ts) > last:
                    book.add_intraday(session_day_us(ts), *values, first_of_session=int(facts.bar_in_session[i]) == 0,
                                      last_of_session=int(facts.bars_left[i]) <= 1)

    def _benchmark_bar(self, sym: str, hist: History) -> bool:
        """A benchmark's bar: its daily bar (or its session's, at the session's last intraday bar) goes
        into the labels. True when a new session got its label source."""
        book = self.books.get(sym)
        if book is None:
            return False
        a, i = hist.arrays, len(hist) - 1
        values = (float(a["open"][i]), float(a["high"][i]), float(a["low"][i]), float(a["close"][i]))
        ts = int(a["ts"][i])
        if self.config.timeframe == "1Day":
            return book.add_daily(ts, *values)
        facts = hist.bars
        return book.add_intraday(session_day_us(ts), *values, first_of_session=int(facts.bar_in_session[i]) == 0,
                                 last_of_session=int(facts.bars_left[i]) <= 1)

    def _redecide_waiting(self, benchmark: str) -> None:
        """Decide again the flat per-regime sleeves that saw an ``unknown`` next session for want of
        this benchmark's bar (only while their bar is still their latest)."""
        waiting: dict[tuple[str, int], set[str]] = {}
        for (strategy, symbol), ts in list(self._awaiting.get(benchmark, {}).items()):
            del self._awaiting[benchmark][(strategy, symbol)]
            hist = self._hist.get(symbol)
            if hist is None or hist.last_ts != ts:
                continue
            if symbol in self._netted:  # the waiting sleeves' entries: the bar's second plan (runner_book.py)
                waiting.setdefault((symbol, ts), set()).add(strategy)
                continue
            for sleeve in self._watch.get(symbol, ()):
                if strategy in (sleeve.strategy, *sleeve.names) and sleeve.legs is None:  # a reload may mix it
                    self._decide_sleeve(sleeve, symbol, ts, hist)
        for (symbol, ts), strategies in waiting.items():
            self._decide_book(symbol, ts, only=frozenset(strategies))

    # --- what the running process trades (the daemon's status.json) ----------------------------------
    def idle(self) -> bool:
        """Nothing queued, nothing sent and unanswered, no decision waiting for the broker."""
        return self._q.unfinished_tasks == 0 and (self._sender is None or self._sender.pending == 0) and not self._inflight \
            and not self._pending_acts

    def status(self) -> dict:
        """The params files in force and since which bar, the last bar per symbol, the labels, counts."""
        def when(us):
            return None if us is None else pd.Timestamp(int(us), unit="us", tz="UTC").isoformat()

        labels = {}
        for b, book in self.books.items():
            t = book.table()
            labels[b] = {"last_daily_bar": when(book.last_day_us),
                         "next_session": None if t.empty else str(pd.Timestamp(t["session"].iloc[-1]).date()),
                         "next_label": None if t.empty else str(t["label"].iloc[-1])}
        return {"params": {"sha256": self.shas[-1], "created_at": self.params.created_at.isoformat(),
                           "promoted": self.params.verdict.promoted,
                           "active": sum(e.status == "active" for e in self.params.entries)},
                "epochs": [{"from_bar": when(f) if f else None, "sha256": sha} for (f, _), sha in zip(self.epochs, self.shas)],
                "trade_from": when(self.trade_from_us),
                "sleeves": [f"{s.strategy} {s.symbol}" for s in self.sleeves],
                "last_bar": {s: when(h.last_ts) for s, h in sorted(self._hist.items())},
                "regimes": labels, "fills_seen": self.fills_seen, "errors": len(self.errors),
                "alerts": self.alerts[-5:], "idle": self.idle()}
