"""Broker faults (issue 7, item 2): the simulator fails under a real lockstep replay, the runner copes.

A year of daily AAPL and MSFT bars goes through the live runner (alpaca-py REST + the trade_updates
websocket) against the simulator while a seeded schedule breaks something before about one clock
step in three: bursts of 429 (with Retry-After), 500/503/504 answers, requests held past the
client's timeout, orders accepted and then answered 504/500 (alpaca-py sends them again), dropped
sockets, a muted stream (its held updates delivered late, or lost with a drop), duplicated and
reordered trade updates. None of these may change what is traded: the fills must be the
backtest's (``parity.check``), no order may exist twice (by client_order_id or by economic
effect), every risk limit holds, and every fault the client side saw is in the logs.

A second, shorter replay caps fills at a fraction of each bar's volume (partial fills) and has the
broker refuse orders. Parity cannot hold there; the invariants must, and the runner's books must
equal the broker's.

Two seams the replay does not expose are set here: the runner's REST timeout (1 s instead of 10,
so a held request times out quickly) and the fill feed's reconcile poll (every 2 s instead of 60:
a lockstep step waits at most 30 s for a fill the stream holds back or loses).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from fastapi.responses import JSONResponse

import live_bridge.alpaca as alpaca
import live_bridge.alpaca.feeds as feeds
import live_bridge.replay as replay_module
from live_bridge.ids import parse_client_order_id
from live_bridge.parity import check
from live_bridge.replay import replay
from live_bridge.risk import RiskLimits
from simulator import BrokerConfig
from tests.live_bridge.test_parity import lake  # noqa: F401 - the sample lake with IBM regimes, a fixture
from live_bridge.sleeves import decide, sleeves
from live_bridge.state import StateStore
from research.params import DataWindow, ExitRulesModel
from research.regimes import load_regimes
from tests.kit import entry, params_file

SEED = 20240607
REST_PATHS = ("/v2/account", "/v2/clock", "/v2/orders", "/v2/positions", "/v2/stocks/bars")
#: Requests the schedule may hold past the runner's timeout (all are the runner broker's own calls).
SLOW = (("POST", "/v2/orders"), ("DELETE", "/v2/orders/"), ("GET", "/v2/account"), ("GET", "/v2/positions"))
TRADING_TIMEOUT = 1.0  # the runner's REST timeout in these replays
HELD = 1.6  # seconds a held request waits before the simulator handles it (the client gave up at 1.0)
RECONCILE = 2.0  # the fill feed's reconcile poll in these replays
#: Fault kinds and their weights in the seeded schedule.
KINDS = {"429": 4, "504": 3, "500": 2, "503": 2, "slow": 2, "accepted_504": 3, "accepted_500": 2,
         "drop": 2, "mute": 2, "duplicate": 3, "reorder": 2}
LIMITS = RiskLimits(queue_for_next_open=True)  # what replay() uses for daily bars


def busy_file(lake):
    """sma_cross per regime on AAPL and MSFT with short means: many entries, exits and stop moves."""
    labels = load_regimes(lake, "IBM")
    recent = labels[labels["session"] >= pd.Timestamp("2012-03-01")]["label"].value_counts().index[:2]
    params = ({"fast": 3, "slow": 10, "short": False}, {"fast": 5, "slow": 15, "short": False})
    rules = (ExitRulesModel(stop_loss=0.02, allow_short=False),
             ExitRulesModel(stop_loss=0.03, trailing_stop=0.04, time_stop=10, allow_short=False))
    entries = [entry(symbol=sym, regime=reg, strategy="sma_cross", params=p, exit_rules=r)
               for sym in ("AAPL", "MSFT") for reg, p, r in zip(recent, params, rules)]
    data = DataWindow(timeframe="1Day", start="2000-01-03", end="2013-03-01", symbols=["AAPL", "MSFT"],
                      bars_hash={"AAPL": "x", "MSFT": "y"}, benchmark="IBM")
    return params_file(entries, data=data)


# ----------------------------------------------------------------------------------- fault injection
class Wire:
    """The test's own outermost middleware on the simulator: faults aimed at one HTTP method.

    ``hold`` keeps the next matching request ``HELD`` seconds, then lets the simulator handle it, as
    a slow gateway would: a POST /v2/orders whose client gave up still places its order, later.
    ``refuse`` answers the next matching request with a broker refusal (the FaultQueue matches
    paths only, and GET /v2/orders would take a refusal meant for POST /v2/orders).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[tuple[str, str, JSONResponse | None]] = []
        self.held = self.refused = 0

    def hold(self, method: str, prefix: str) -> None:
        with self._lock:
            self._queue.append((method, prefix, None))

    def refuse(self, method: str, prefix: str, status: int, code: int, message: str) -> None:
        with self._lock:
            self._queue.append((method, prefix, JSONResponse({"code": code, "message": message}, status)))

    def _take(self, method: str, path: str) -> tuple[bool, JSONResponse | None]:
        with self._lock:
            for i, (m, prefix, answer) in enumerate(self._queue):
                if m == method and path.startswith(prefix):
                    del self._queue[i]
                    return True, answer
        return False, None

    async def middleware(self, request, call_next):
        matched, answer = self._take(request.method, request.url.path)
        if answer is not None:
            self.refused += 1
            return answer
        if matched:
            self.held += 1
            await request.body()  # read now: the handler gets it even after the client has gone
            await asyncio.sleep(HELD)
        return await call_next(request)


@dataclass
class Schedule:
    """A seeded schedule of mixed faults, injected from the replay's ``on_step`` hook."""

    wire: Wire
    rate: float = 0.3
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    injected: Counter = field(default_factory=Counter)  # per kind: faulted answers / updates / sockets
    rest_queued: int = 0  # REST answers queued on the simulator's FaultQueues
    faults: object = None
    _muted: int | None = None  # the step a mute began
    _lose: bool = False  # end the mute with a drop: the held updates are lost

    def __call__(self, step: int, faults) -> None:
        self.faults = faults
        if self._muted is not None and step > self._muted:
            if self._lose:
                self.injected["drop"] += faults.streams.drop_all()  # while paused: the held updates are gone
            faults.streams.resume()
            self._muted = None
        if step == 0 or self.rng.random() >= self.rate:
            return
        kind = self.rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        n = 1
        if kind in ("429", "504", "500", "503"):
            n = self.rng.randint(1, 3) if kind in ("429", "504") else 1  # alpaca-py makes 4 attempts
            headers = {"Retry-After": "0"} if kind == "429" else None
            faults.rest.add(self.rng.choice(REST_PATHS), status=int(kind), times=n, headers=headers)
            self.rest_queued += n
        elif kind == "slow":
            self.wire.hold(*self.rng.choice(SLOW))
        elif kind.startswith("accepted_"):  # the order is placed, then the answer is an error
            faults.after_accept.add("/v2/orders", status=int(kind.removeprefix("accepted_")))
            self.rest_queued += 1
        elif kind == "drop":
            n = faults.streams.drop_all()
        elif kind == "mute" and self._muted is None:
            faults.streams.pause()
            self._muted, self._lose = step, self.rng.random() < 0.5
        elif kind == "duplicate":
            n = self.rng.randint(1, 3)
            faults.streams.duplicate_next(n)
        elif kind == "reorder":
            faults.streams.reorder_next()
        else:
            return
        self.injected[kind] += n

    def rest_consumed(self) -> int:
        return self.rest_queued - self.faults.rest.pending() - self.faults.after_accept.pending()


@pytest.fixture()
def wire(monkeypatch):
    """replay() with the Wire on its simulator, a 1 s timeout on the runner's REST calls and the fill
    feed's reconcile poll every 2 s (see the module docstring)."""
    w = Wire()
    real_app = replay_module.broker_app

    def broker_app(*args, **kwargs):
        app = real_app(*args, **kwargs)
        app.middleware("http")(w.middleware)
        return app

    class Broker(alpaca.AlpacaBroker):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **{**kwargs, "timeout": TRADING_TIMEOUT})

    class FillFeed(feeds.AlpacaFillFeed):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **{**kwargs, "reconcile_interval": RECONCILE})

    monkeypatch.setattr(replay_module, "broker_app", broker_app)
    monkeypatch.setattr(alpaca, "AlpacaBroker", Broker)
    monkeypatch.setattr(feeds, "AlpacaFillFeed", FillFeed)
    return w


# ----------------------------------------------------------------------------------- evidence
def decision_log(result) -> list[dict]:
    return [json.loads(x) for x in result.decision_log.read_text().splitlines()]


def messages(caplog, logger: str, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(logger) and text in r.getMessage()]


def duplicate_orders(broker) -> list[str]:
    """Orders placed twice: a client_order_id accepted more than once, or two orders with the same
    economic effect (symbol, side, qty, type, decision bar)."""
    twice = [f"{cid} accepted {n} times" for cid, n in broker.accepted.items() if n > 1]
    effects = Counter()
    for o in broker.orders():
        parsed = parse_client_order_id(o.client_order_id)
        bar = parsed.bar_time if parsed is not None else o.client_order_id  # not ours: counted apart
        effects[(o.symbol, o.side, o.qty, o.type, bar)] += 1
    return twice + [f"{k} placed {n} times" for k, n in effects.items() if n > 1]


def held_per_bar(result) -> dict[str, np.ndarray]:
    """Per symbol, the broker's position after each replay bar (its fills, at the bars they belong to)."""
    out = {}
    for sym, frame in result.bars.items():
        ts = pd.DatetimeIndex(frame["ts"])
        f = result.fills[result.fills["symbol"] == sym]
        signed = np.where(f["side"] == "buy", 1.0, -1.0) * f["qty"].to_numpy(float)
        held = np.zeros(len(ts))
        np.add.at(held, ts.searchsorted(pd.DatetimeIndex(f["bar"]), side="right") - 1, signed)
        out[sym] = np.cumsum(held)
    return out


def position_mismatches(result) -> list[str]:
    """Bars where the broker's position (its sign: sizes are the live ones) differs from the backtest's."""
    held = held_per_bar(result)
    first_us = int(min(f["ts"].iloc[0] for f in result.bars.values()).value // 1000)
    bad = []
    for sleeve in sleeves(result.params):
        arrays = result.history[sleeve.symbol]
        _, path = decide(sleeve, arrays, "1Day", result.regimes.get(sleeve.benchmark), first_us)
        backtest = np.asarray(path.position[int(np.searchsorted(arrays["ts"], first_us)):])
        live = held[sleeve.symbol]
        stamps = result.bars[sleeve.symbol]["ts"]
        bad += [f"{sleeve.symbol} {stamps.iloc[i]:%Y-%m-%d}: backtest {backtest[i]}, broker {live[i]:g}"
                for i in np.flatnonzero(backtest != np.sign(np.round(live, 9)))]
    return bad


def risk_breaches(result, limits: RiskLimits) -> list[str]:
    """Positions above max_position_pct of equity once an entry has filled (all its parts), valued at
    the close of the bar that decided it, as the runner sizes; gross exposure above
    max_gross_exposure at any bar close."""
    held = held_per_bar(result)
    equity = result.equity.to_numpy(float)
    bad, gross = [], np.zeros(len(equity))
    for sym, frame in result.bars.items():
        close, ts = frame["close"].to_numpy(float), pd.DatetimeIndex(frame["ts"])
        gross += np.abs(held[sym]) * close
        mine = result.fills[result.fills["symbol"] == sym]
        fills = mine[mine["client_order_id"].str.contains("-entry-")]
        for cid, parts in fills.groupby("client_order_id"):
            decided = int(ts.searchsorted(pd.Timestamp(parse_client_order_id(cid).bar_time)))
            done = int(ts.searchsorted(pd.DatetimeIndex(parts["bar"]).max()))
            value, cap = abs(held[sym][done]) * close[decided], limits.max_position_pct * equity[decided]
            if value > cap * (1 + 1e-9):
                bad.append(f"{cid}: {value:,.2f} > {cap:,.2f} ({limits.max_position_pct:.0%} of equity)")
    bad += [f"gross exposure {gross[i] / equity[i]:.3f} at bar {i}"
            for i in np.flatnonzero(gross / equity > limits.max_gross_exposure + 1e-9)]
    return bad


def books_mismatches(result, broker) -> list[str]:
    """Symbols whose position in the runner's state store differs from the broker's (a lost or double
    fill)."""
    with StateStore(result.decision_log.parent / "state.db") as store:
        mine = store.net_positions()
    theirs = {p["symbol"]: float(p["qty"]) for p in broker.positions_json()}
    return [f"{s}: runner {mine.get(s, 0):g}, broker {theirs.get(s, 0):g}"
            for s in sorted(set(mine) | set(theirs)) if abs(mine.get(s, 0.0) - theirs.get(s, 0.0)) > 1e-9]


# ----------------------------------------------------------------------------------- the tests
def test_a_year_of_mixed_broker_faults_changes_no_fill(lake, tmp_path, wire, chaos, caplog):
    caplog.set_level(logging.INFO, logger="live_bridge")
    schedule = Schedule(wire)

    result = replay(lake, busy_file(lake), "2012-03-01", "2013-03-01", work_dir=tmp_path, on_step=schedule)

    parity, broker = check(result), schedule.faults.broker
    dups, mismatches = duplicate_orders(broker), position_mismatches(result)
    chaos["faults_injected"] += sum(schedule.injected.values())
    chaos["duplicate_orders"] += len(dups)
    chaos["position_mismatches"] += len(mismatches)
    # (a) the backtest's fills, bar for bar and price for price, despite every fault
    assert parity.ok, parity.first_divergence
    assert len(result.fills) >= 30, "a replay with few trades proves little"
    assert set(schedule.injected) == set(KINDS) and min(schedule.injected.values()) >= 2
    # (b) no order twice, though alpaca-py re-POSTed every order answered 504/500 after it was placed
    assert dups == [] and max(broker.accepted.values()) == 1
    assert messages(caplog, "live_bridge.alpaca", "already at the broker")
    # (c) every fault the client side met is logged, and none reached the runner as an error
    answered = len(messages(caplog, "live_bridge.alpaca", "Alpaca answered"))
    consumed = schedule.rest_consumed()
    assert consumed - wire.held <= answered <= consumed  # a held request's client has gone: no answer to log
    assert wire.held >= 2 and len([r for r in caplog.records if "ReadTimeout" in r.getMessage()]) >= wire.held
    assert len(messages(caplog, "alpaca.trading.stream", "restarting")) == schedule.injected["drop"] >= 2
    assert messages(caplog, "live_bridge.alpaca.feeds", "trade stream down")
    assert messages(caplog, "live_bridge.alpaca.feeds", "is no news: ignored")  # duplicated, late, reordered
    assert result.errors == [] and not [x for x in decision_log(result) if x["event"] == "error"]
    assert all(x["status"] in ("new", "accepted") for x in decision_log(result) if x["event"] == "order")
    # (d) risk limits held; (e) positions follow the backtest at every bar, the runner's books the broker's
    assert risk_breaches(result, LIMITS) == []
    assert mismatches == [] and books_mismatches(result, broker) == []


def test_partial_fills_and_refusals_keep_the_books_straight(lake, tmp_path, wire, chaos, caplog):
    """Fills capped at 1e-6 of a bar's volume (an entry fills in part at the open and its protective
    stop cancels the rest, since a sell stop beside an open buy is a wash trade to Alpaca; a stop
    that triggers sells over two bars), three orders refused by the broker, updates duplicated and
    reordered: the runner goes on, logs each refusal, doubles nothing, protects every share it
    holds, and its books equal the broker's."""
    caplog.set_level(logging.INFO, logger="live_bridge")
    refusals = {5: (403, 40310000, "insufficient buying power"),
                30: (422, 42210000, "potential wash trade detected. use complex orders"),
                60: (403, 40310000, "insufficient buying power")}
    seen = {}

    def hook(step, faults):
        seen["broker"] = faults.broker
        if step in refusals:
            wire.refuse("POST", "/v2/orders", *refusals[step])
        if step % 4 == 1:
            faults.streams.duplicate_next(2)
            chaos["faults_injected"] += 2
        elif step % 4 == 3:
            faults.streams.reorder_next()
            chaos["faults_injected"] += 1

    result = replay(lake, busy_file(lake), "2012-03-01", "2012-09-01", work_dir=tmp_path, on_step=hook,
                    broker_config=BrokerConfig(max_volume_fraction=1e-6))

    broker, log = seen["broker"], decision_log(result)
    chaos["faults_injected"] += wire.refused
    dups, books = duplicate_orders(broker), books_mismatches(result, broker)
    chaos["duplicate_orders"] += len(dups)
    chaos["position_mismatches"] += len(books)
    orders = broker.orders()
    fills_per_order = result.fills.groupby("client_order_id").size()
    partial = [o for o in orders if 0 < o.filled_qty < o.qty or fills_per_order.get(o.client_order_id, 0) > 1]
    assert len(partial) >= 3, "the volume cap did not bite"
    assert any("-stop-" in o.client_order_id for o in partial), "no stop filled in parts"
    # the runner goes on after each refusal, and logs it in the broker's own words
    refused = [x for x in log if x["event"] == "order" and x["status"] == "refused by the broker"]
    assert wire.refused == len(refusals) == len(refused)
    assert [x["broker_error"] for x in refused] == [f"BrokerError: {s} {m}" for s, _, m in refusals.values()]
    last = max(i for i, x in enumerate(log) if x in refused)
    after = [x for x in log[last:] if x["event"] == "order" and x["status"] in ("new", "accepted")]
    assert after, "the runner placed nothing after the last refusal"
    assert result.errors == [] and dups == [] and books == []
    # every share bought is protected: the broker holds a stop for all that each entry filled
    entries = [o for o in orders if "-entry-" in o.client_order_id and o.filled_qty]
    for e in entries:
        bar = parse_client_order_id(e.client_order_id).bar_time
        stops = [o for o in orders if "-stop-" in o.client_order_id and o.symbol == e.symbol
                 and parse_client_order_id(o.client_order_id).bar_time == bar]
        assert sum(o.qty for o in stops) == e.filled_qty, (e.client_order_id, e.filled_qty, stops)
    assert len(entries) >= 4 and risk_breaches(result, LIMITS) == []


def test_an_outage_longer_than_the_retries_delays_decisions_and_loses_none(lake, tmp_path, chaos):
    """/v2/account answers 503 ten times in a row (alpaca-py gives up after 3 retries): the runner
    logs broker_unavailable, acts on the same bar's decisions once the broker answers, and the
    replay still matches the backtest fill for fill."""
    outages = []

    def hook(step: int, faults) -> None:
        if step in (40, 120, 200):
            faults.rest.add("/v2/account", status=503, times=10)
            outages.append(step)

    result = replay(lake, busy_file(lake), "2012-03-01", "2013-03-01", work_dir=tmp_path, on_step=hook)

    chaos["faults_injected"] += 10 * len(outages)
    lines = decision_log(result)
    down = [x for x in lines if x["event"] == "broker_unavailable"]
    assert len(outages) == 3 and len(down) >= 3, down
    assert result.errors == []
    parity = check(result)
    assert parity.ok, parity.first_divergence
