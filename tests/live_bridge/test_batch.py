"""``decide_many`` decides exactly what ``decide`` decides, sleeve by sleeve, field by field.

Random sleeves on synthetic bars: several strategies, per-regime entries with a regimes table, mixed
sleeves, params epochs, halts, ``trade_from``, every exit rule, daily and intraday bars; and the
prefix property (deciding on the first t bars is the full path at bar t - 1).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from data_lake.sources.synthetic import synthetic_arrays
from live_bridge.batch import Item, decide_many
from live_bridge.history import History
from live_bridge.sleeves import Sleeve, decide, sleeve_path
from research import baskets
from research.bars import bars_from_arrays
from research.exits import ExitRules
from research.regimes import RegimeParams, labels, regimes_from_daily
from research.signals import get

DAILY = ("sma_cross", "rsi_reversion", "breakout", "sma_convergence")
INTRADAY = ("sma_cross", "rsi_reversion", "vwap_reversion", "gap")


def random_params(rng, name):
    strat = get(name)
    names = {f.name for f in dataclasses.fields(strat.params)}
    while True:
        values = {k: v[rng.integers(len(v))] for k, v in strat.grid.items()}
        if "short" in names:
            values["short"] = bool(rng.integers(2))
        if name == "sma_cross":
            values["kind"] = ("sma", "ema")[rng.integers(2)]
        if name in ("sma_cross", "rsi_reversion", "breakout") and "n" in values:
            values["n"] = min(values["n"], 30)
        try:
            return strat.params(**values)
        except ValueError:
            continue


def random_rules(rng, intraday):
    return ExitRules(stop_loss=float(rng.choice([0.0, 0.01, 0.03])), take_profit=float(rng.choice([0.0, 0.02, 0.05])),
                     trailing_stop=float(rng.choice([0.0, 0.02])), time_stop=int(rng.choice([0, 3, 10])),
                     flat_at_close=bool(intraday and rng.integers(2)), allow_short=rng.random() < 0.7)


def random_sleeve(rng, symbol, strategies, regime_labels, intraday, ts):
    """A plain, per-regime, mixed or reloaded (epochs) sleeve of random entries."""
    shape = rng.choice(["plain", "regime", "mixed", "epochs"])
    if shape == "plain":
        labs = ("all",)
    else:
        odd = ["warmup", "unknown", "nope"]  # labels a table may give a bar, or never gives
        pool = [*regime_labels, *(odd if rng.random() < 0.3 else [])]
        labs = tuple(rng.choice(pool, size=min(len(pool), rng.integers(1, 4)), replace=False).tolist())
    names = tuple(rng.choice(strategies) for _ in labs) if shape in ("mixed", "epochs") else \
        (rng.choice(strategies),) * len(labs)
    epoch_of, epoch_from = (), ()
    if shape == "epochs":
        froms = sorted(rng.choice(ts[1:], size=2, replace=False).tolist())
        epoch_from = (int(ts[0]) - 1, *map(int, froms))
        labs = labs + labs  # every label in two files
        names = names + tuple(rng.choice(strategies) for _ in names)
        epoch_of = tuple(int(rng.integers(3)) for _ in labs)
    entries = tuple((random_params(rng, n), random_rules(rng, intraday)) for n in names)
    mixed = len(set(names)) > 1
    return Sleeve("+".join(sorted(set(names))), symbol, labs, entries, "BENCH", None, epoch_of, epoch_from,
                  names if mixed else ())


def random_halts(rng, sleeves, ts):
    if rng.random() < 0.4:
        return ()
    scopes = ["*", *{n for sl in sleeves for n in sl.names}, "other"]
    marks = [(int(ts[0]) - 10**9, "*")]  # before every bar: changes nothing
    for _ in range(rng.integers(1, 4)):
        marks.append((int(rng.choice(ts[len(ts) // 2:])) + int(rng.integers(2)), str(rng.choice(scopes))))
    return tuple(marks)


def world(seed, timeframe):
    """Symbols' histories, their random sleeves, a regimes table, halts and trade_from."""
    rng = np.random.default_rng(seed)
    intraday = timeframe != "1Day"
    bench = synthetic_arrays("BENCH", 700, seed, timeframe="1Day")
    scheme = ("trend", "vol", "trend_vol")[seed % 3]
    regimes = regimes_from_daily(bench["ts"], bench["open"], bench["high"], bench["low"], bench["close"],
                                 RegimeParams(scheme=scheme, trend_window=20, vol_history=60))
    items = []
    for j in range(6):
        a = synthetic_arrays(f"S{j}", 12 if intraday else 600, seed * 10 + j, timeframe=timeframe)
        a = {c: a[c] for c in ("ts", "open", "high", "low", "close", "volume")}
        h = History(a, timeframe)
        sls = [random_sleeve(rng, f"S{j}", INTRADAY if intraday else DAILY, labels(scheme), intraday, a["ts"])
               for _ in range(rng.integers(1, 4))]
        halts = random_halts(rng, sls, a["ts"])
        for sl in sls:
            shared = rng.random() < 0.7  # the runner's History views, or bars built from the arrays
            items.append(Item(sl, h.arrays if shared else dict(a), regimes if rng.random() < 0.9 else None,
                              h.bars if shared else None, halts))
    ts = items[0].arrays["ts"]
    trade_from = (None, int(ts[len(ts) // 3]), int(ts[-1]) + 1)[seed % 3]
    return items, trade_from


def same(a, b):
    """Equal field by field, with the same types (an np.float64 for a float would be a drift)."""
    fa, fb = dataclasses.astuple(a), dataclasses.astuple(b)
    return fa == fb and [type(x) for x in fa] == [type(x) for x in fb]


def reference(items, timeframe, trade_from):
    return [decide(it.sleeve, it.arrays, timeframe, it.regimes, trade_from, it.bars, it.halts)[0] for it in items]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("timeframe", ["1Day", "15Min"])
def test_decide_many_is_decide_for_every_sleeve(seed, timeframe):
    items, trade_from = world(seed, timeframe)

    got = decide_many(items, timeframe, trade_from)

    want = reference(items, timeframe, trade_from)
    assert len(got) == len(want)
    for g, w, it in zip(got, want, items):
        assert same(g, w), (it.sleeve, g, w)


def test_the_worlds_cover_positions_stops_entries_and_every_kind_of_sleeve():
    """The random worlds exercise what they claim (decided at each of the last 40 bars, all equal)."""
    decisions, kinds = [], set()
    for seed in (0, 1, 3, 4):  # not 2 or 5: their trade_from is after the last bar
        items, trade_from = world(seed, "1Day")
        kinds |= {("epochs" if it.sleeve.epoch_from else "mixed" if it.sleeve.strategies else
                   "regime" if it.sleeve.by_regime else "plain") for it in items}
        n = len(items[0].arrays["ts"])
        for t in range(n - 40, n):
            cut = [it._replace(arrays={c: v[:t] for c, v in it.arrays.items()}, bars=None) for it in items]
            got = decide_many(cut, "1Day", trade_from)
            assert all(same(g, w) for g, w in zip(got, reference(cut, "1Day", trade_from)))
            decisions += got
    assert kinds == {"plain", "regime", "mixed", "epochs"}
    assert any(d.stop is not None for d in decisions) and any(d.take_profit is not None for d in decisions)
    assert any(d.reason.startswith("enter") for d in decisions) and any(d.target < 0 for d in decisions)
    assert any(d.reason.startswith("exit") for d in decisions)


@pytest.mark.parametrize("timeframe", ["1Day", "15Min"])
def test_prefix_property(timeframe):
    """Deciding on the first t bars (batched) is decide's answer there, and the full path at t - 1
    (with the halts that tripped by then: a later one lands on the last bar a runner has)."""
    items, trade_from = world(7, timeframe)
    ts = items[0].arrays["ts"]
    n = len(ts)
    for t in (n // 2, n // 2 + 1, n - 7, n):
        items = [it._replace(halts=tuple(h for h in it.halts if t == n or h[0] < ts[t])) for it in items]
        cut = [Item(it.sleeve, {c: v[:t] for c, v in it.arrays.items()}, it.regimes, None, it.halts) for it in items]

        got = decide_many(cut, timeframe, trade_from)

        assert all(same(g, w) for g, w in zip(got, reference(cut, timeframe, trade_from)))
        for g, it in zip(got, items):
            bars = bars_from_arrays(dict(it.arrays), timeframe)
            full = sleeve_path(it.sleeve, it.arrays, bars, timeframe, it.regimes, trade_from, it.halts).path
            assert (g.target, g.position) == (int(full.target[t - 1]), int(full.position[t - 1]))


def test_the_same_sleeves_bar_after_bar_reuse_their_plan():
    items, trade_from = world(3, "1Day")
    h = {it.sleeve.symbol: History({c: v[:-5] for c, v in it.arrays.items()}, "1Day") for it in items}
    for k in range(5, 0, -1):  # bars arrive one at a time, as the runner appends them
        for sym, hist in h.items():
            a = next(it.arrays for it in items if it.sleeve.symbol == sym)
            hist.append(*(a[c][-k].item() for c in ("ts", "open", "high", "low", "close", "volume")))
        now = [Item(it.sleeve, h[it.sleeve.symbol].arrays, it.regimes, h[it.sleeve.symbol].bars, it.halts)
               for it in items]
        assert all(same(g, w) for g, w in zip(decide_many(now, "1Day", trade_from),
                                               reference(now, "1Day", trade_from)))


def test_nothing_to_decide_and_multi_leg_sleeves():
    assert decide_many([], "1Day") == []
    a = synthetic_arrays("KO", 50, 1, timeframe="1Day")
    pair = Sleeve("pairs", "KO/PEP", ("all",), ((get("pairs").params(), ExitRules()),), "KO",
                  baskets.legs("pairs", "KO/PEP"))
    with pytest.raises(ValueError, match="decide_basket"):
        decide_many([Item(pair, a)], "1Day")
