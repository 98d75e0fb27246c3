"""Soak: one `tradelab live` process trades 22 daily sessions against the simulator, unattended.

The production path, nothing handed in: the runner is the real ``tradelab live`` command in its own
process (sender process, status.json, params file watch), trading the simulator through alpaca-py.
The simulator replays the real sample bars (AAPL, MSFT, IBM, GOOG, FB) session by session; the
test steps its clock in lockstep with the runner's own status.json (fills handled, bar decided,
orders acknowledged). Every simulated evening does what the evening job does to the data: an
incremental ``ingest alpaca`` from the simulator into the user's lake, then the regimes. The runner
labels sessions itself from the benchmark (IBM) bars it polls; nobody hands it a regimes table.

Along the way: a new params file installed as the nightly installs it (adding FB) after session 9,
picked up without a restart; one restart (SIGTERM, then a new process on the same state) with a
position open. At the end, the broker's fills must equal the backtest of the params in force
(``live_bridge.parity.check`` over the stored epochs from the stored anchor), session by session:
bar, side and price; per-regime entries must have traded, and no decision after the warm-up may
have seen an ``unknown`` regime.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_lake import Lake
from data_lake.sources.sample import sample_bars, sample_meta
from live_bridge.parity import check
from live_bridge.replay import ReplayResult
from pipeline.params_store import install
from research.params import DataWindow, ExitRulesModel, load
from research.regimes import RegimeParams, regimes_from_daily, save_regimes
from tests.kit import entry, params_file
from tests.soak.kit import Live, Lockstep, arrays, hermetic_env, simulator, stored

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(1800)  # 22 sessions, each with its evening job (a real nightly)
SYMBOLS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")
START, SESSIONS = "2012-10-15", 22
RELOAD_AFTER, RESTART_FROM = 9, 14  # sessions
SHOCK = ("IBM", "2012-11-06")  # a 38% gap down through the held position's stop: a day-loss halt that day


def _shocked(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars with one made-up day (the halted day): the open gaps 38% below the previous close
    (within the runner's bad-bar limit) and closes there; the next day is real again."""
    bars = bars.copy()
    i = int(np.flatnonzero(pd.DatetimeIndex(bars["ts"]).tz_convert("America/New_York").strftime("%Y-%m-%d")
                           == SHOCK[1])[0])
    prev = float(bars["close"].iloc[i - 1])
    bars.loc[i, ["open", "high", "low", "close"]] = [0.62 * prev, 0.63 * prev, 0.615 * prev, 0.62 * prev]
    return bars


def _labels_in_window(world: Lake) -> list[str]:
    a = world.load_arrays("IBM", "1Day")
    r = regimes_from_daily(a["ts"], a["open"], a["high"], a["low"], a["close"])
    r = r[(r["session"] >= pd.Timestamp(START))].head(SESSIONS)
    return r["label"].value_counts().index.tolist()


def _params(labels: list[str], fb: bool, previous: str | None):
    """Per-regime sma_cross on AAPL, MSFT and IBM (benchmark IBM; two kinds of params and exits by
    regime), one GOOG entry for every regime; the second file adds FB."""
    fast = (ExitRulesModel(stop_loss=0.03, allow_short=False),
            ExitRulesModel(stop_loss=0.04, trailing_stop=0.05, time_stop=8, allow_short=False))
    entries = [entry(symbol=sym, regime=lab, params=({"fast": 3, "slow": 8, "short": False} if i % 2 == 0
                                                      else {"fast": 2, "slow": 6, "short": False}),
                     exit_rules=fast[i % 2])
               for sym in ("AAPL", "MSFT", "IBM") for i, lab in enumerate(labels)]
    entries.append(entry(symbol="GOOG", regime="all", params={"fast": 3, "slow": 10, "short": False},
                         exit_rules=ExitRulesModel(stop_loss=0.05, allow_short=False)))
    if fb:
        entries.append(entry(symbol="FB", regime="all", params={"fast": 2, "slow": 5, "short": False},
                             exit_rules=ExitRulesModel(stop_loss=0.05, allow_short=False)))
    syms = sorted({e.symbol for e in entries})
    data = DataWindow(timeframe="1Day", start="2010-01-04", end=START, symbols=syms,
                      bars_hash={s: "x" for s in syms}, benchmark="IBM")
    return params_file(entries, data=data, previous=previous,
                       created_at=pd.Timestamp("2012-10-12T22:00:00Z").to_pydatetime() if not fb
                       else pd.Timestamp("2012-10-26T22:00:00Z").to_pydatetime())


NIGHTLY = f'''notebook = "{ROOT / "notebooks" / "nightly_optimize.ipynb"}"
[parameters]
symbols = {{symbols}}
strategies = ["sma_cross"]
grids = {{{{sma_cross = {{{{fast = [3, 5], slow = [10, 20]}}}}}}}}
lookback = "1y"
walk_forward = "3m:1m"
stop_loss = [0.03]
benchmark = "IBM"
min_trades = 1
gate = {{{{min_oos_sharpe = -100.0, min_deflated_sharpe = 0.0, max_pbo = 1.0, min_oos_trades = 0, min_stability = 0.0}}}}
'''


def _evening(work: Path, url: str, day: pd.Timestamp, env: dict, fb: bool) -> dict:
    """``tradelab evening`` at 18:00 New York after ``day``'s session (a relaxed gate: per-regime entries
    get promoted); from the RELOAD_AFTER-th evening on the nightly covers FB as well."""
    symbols = ["AAPL", "MSFT", "IBM"] + (["FB"] if fb else [])
    (work / "nightly.toml").write_text(NIGHTLY.format(symbols=json.dumps(symbols)))
    ny = day.tz_convert("America/New_York").strftime("%Y-%m-%d")
    now = pd.Timestamp(f"{ny} 18:00", tz="America/New_York").isoformat()
    r = subprocess.run([sys.executable, "-m", "tradelab", "evening", "--now", now, "--url", url, "--config",
                        "nightly.toml", "--lake", "lake", "--params", "params/current.json"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)
    [status] = (work / "runs" / ny).glob("evening-*/status.json")
    doc = json.loads(status.read_text())
    assert r.returncode == 0, f"evening {ny}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return doc


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    work = tmp_path_factory.mktemp("soak")
    world = Lake(work / "world")  # what the market will have done: the simulator replays it
    for s in SYMBOLS:
        world.write_bars(s, "1Day", _shocked(sample_bars(s)) if s == SHOCK[0] else sample_bars(s), sample_meta())
    first = pd.Timestamp(START).tz_localize("America/New_York").tz_convert("UTC")
    lake = Lake(work / "lake")  # the user's lake: every bar before the first session, no more
    for s in SYMBOLS:
        bars = sample_bars(s)
        lake.write_bars(s, "1Day", bars[pd.DatetimeIndex(bars["ts"]) < first].reset_index(drop=True), sample_meta())
    a = lake.load_arrays("IBM", "1Day")
    assert pd.Timestamp(int(a["ts"][-1]), unit="us", tz="UTC") < first, "the user's lake must end before the start"
    save_regimes(lake, "IBM", regimes_from_daily(a["ts"], a["open"], a["high"], a["low"], a["close"]), RegimeParams())
    labels = _labels_in_window(world)
    v1 = _params(labels, fb=False, previous=None)
    install(v1, work / "params")

    frames = {s: world.read_bars(s, "1Day", START, None)[["ts", "open", "high", "low", "close", "volume"]]
              for s in SYMBOLS}
    key, secret = "soak-" + secrets.token_hex(4), secrets.token_hex(16)
    served, clock, sim_broker = simulator(frames, "1Day", key, secret)
    with served as sim:
        live = Live(work, sim.url, hermetic_env(key, secret), "--poll", "0.05")
        live.start()
        step = Lockstep(clock, sim_broker, live)
        equity, sessions, restarted, evenings = {}, [], None, []
        for k in range(SESSIONS):
            bars = step.step()
            day = pd.Timestamp(max(b.ts_us for b in bars.values()), unit="us", tz="UTC")
            equity[day] = float(sim_broker.account_json()["equity"])
            sessions.append(day)
            # the evening, as the timer runs it: ingest from the simulator, regimes, the nightly, the report
            evening = _evening(work, sim.url, day, live.env, fb=k + 1 >= RELOAD_AFTER)
            evenings.append(evening)
            if k + 1 == RELOAD_AFTER:  # that evening's nightly covers FB too: the runner must pick it up
                fresh = load(work / "params" / "current.json")
                live.wait(lambda s: s["params"]["sha256"] == fresh.sha256() and s.get("idle"), "the reload")
            if restarted is None and k + 1 >= RESTART_FROM and sim_broker.positions_json():
                restarted = (k + 1, [p["symbol"] for p in sim_broker.positions_json()])
                live.stop()
                live.start()
        live.stop()
        ledger = step.fills()
    epochs, anchor, halts = stored(live.state)
    hist = {s: arrays(world.read_bars(s, "1Day", "2009-01-01", sessions[-1] + pd.Timedelta(days=1))) for s in SYMBOLS}
    a = world.read_bars("IBM", "1Day", None, sessions[-1] + pd.Timedelta(days=1))  # the shock included
    ibm = regimes_from_daily(*(pd.DatetimeIndex(a["ts"]).as_unit("us").asi8, *(a[c].to_numpy(float)
                                                                             for c in ("open", "high", "low", "close"))))
    result = ReplayResult(load(work / "params" / "current.json"), sessions[0], sessions[-1], 100_000.0,
                          {s: f[f["ts"] <= sessions[-1]].reset_index(drop=True) for s, f in frames.items()}, hist,
                          ledger,
                          pd.Series(equity, name="equity"), [], [], {"IBM": ibm}, live.state / "decisions.jsonl",
                          epochs=epochs, trade_from=anchor, halts=halts)
    return {"work": work, "result": result, "restarted": restarted, "epochs": epochs, "labels": ibm,
            "sessions": sessions, "live": live, "evenings": evenings}


def test_live_equals_the_backtest_of_the_params_in_force_session_by_session(soak):
    result = soak["result"]
    parity = check(result)
    table = _by_session(parity.trades, soak["labels"], soak["sessions"])
    print("\n" + table.to_string(index=False))
    assert parity.ok, parity.first_divergence
    assert len(result.fills) >= 6, "a soak without trades proves nothing"
    assert soak["restarted"] is not None, "the restart must happen with a position open"
    assert [(pd.Timestamp(at, unit="us", tz="UTC").tz_convert("America/New_York").strftime("%Y-%m-%d"), scope)
            for at, scope in result.halts][:1] == [(SHOCK[1], "*")], "the shock must halt the account that day"


def test_per_regime_entries_trade_and_no_decision_sees_an_unknown_regime(soak):
    lines = [json.loads(x) for x in (soak["live"].state / "decisions.jsonl").read_text().splitlines()]
    decisions = [x for x in lines if x.get("event") == "decision"]
    final = {}
    for d in decisions:  # a sleeve decided again once its benchmark's bar came: the last word counts
        final[(d["strategy"], d["symbol"], d["bar_time"])] = d
    assert not [d for d in final.values() if d["regime_next"] == "unknown"]
    per_regime = [f for f in soak["result"].fills.itertuples() if f.symbol in ("AAPL", "MSFT", "IBM")]
    assert per_regime, "per-regime entries must trade"
    reloads = [x for x in lines if x.get("event") == "reload"]
    assert reloads and [r["sha256"] for r in reloads] == [pf.sha256() for _, pf in soak["epochs"][1:]]
    assert any(d["symbol"] == "FB" for d in decisions), "the symbol a reloaded file added is decided on"


def test_every_evening_ran_its_steps_and_its_report_found_no_divergence(soak):
    for doc in soak["evenings"]:
        steps = {s["name"]: s for s in doc["steps"]}
        assert doc["ok"] and [s["ok"] for s in doc["steps"]] == [True] * 4, doc
        assert steps["report"]["message"].startswith(f"{doc['date']}: OK"), steps["report"]
    assert any("PROMOTED" in e["steps"][2]["message"] for e in soak["evenings"]), "a relaxed gate promotes"


def _by_session(trades: pd.DataFrame, labels: pd.DataFrame, sessions: list) -> pd.DataFrame:
    """Session by session: the regime, the backtest's fills and the broker's."""
    rows = []
    lab = dict(zip(pd.DatetimeIndex(labels["session"]).strftime("%Y-%m-%d"), labels["label"]))
    for day in sessions:
        d = day.tz_convert("America/New_York").strftime("%Y-%m-%d")
        t = trades[trades["bar"] == d]
        bt = [f"{r.symbol} {r.backtest}" for r in t.itertuples() if r.backtest != "-"]
        lv = [f"{r.symbol} {r.live}" for r in t.itertuples() if r.live != "-"]
        rows.append({"session": d, "regime": lab.get(d, "?"), "backtest": "; ".join(bt) or "-",
                     "live": "; ".join(lv) or "-", "same": bt == lv})
    return pd.DataFrame(rows)


def test_the_evening_live_report_of_every_session_matches_the_shadow_backtest(soak):
    from live_bridge.shadow import run_for_day

    lake = Lake(soak["work"] / "lake")  # the user's lake, fed only by the evenings' ingests
    total = 0
    for day in soak["sessions"]:
        d = day.tz_convert("America/New_York").date()
        report, html, js = run_for_day(lake, soak["live"].state, None, d, soak["work"] / "runs" / str(d))
        doc = json.loads(js.read_text())
        assert report.ok and doc["ok"], report.summary
        assert doc["counts"]["missed"] == doc["counts"]["extra"] == 0
        total += doc["counts"]["match"]
        assert html.exists()
    assert total == len(soak["result"].fills)
