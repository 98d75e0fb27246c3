"""Soak, minute bars: one `tradelab live` process trades 5 sessions of SYNTHETIC minute bars.

The minute variant of tests/soak/test_daily_loop.py: the runner gets its minute bars from the
market-data websocket (AlpacaBarFeed) and labels the regimes itself from the benchmark's minute
bars, aggregated into each session's daily bar at its last minute (as the lake resamples): the
per-regime entries switch from ``up_normal`` to ``range_normal`` in the middle of the week. One
restart (SIGTERM, then a new process on the same state) in the middle of a session. The broker's
fills must equal the backtest of the params in force from the runner's anchor, fill for fill.
The bars come from data_lake.sources.synthetic (seeded, labelled synthetic).
"""

from __future__ import annotations

import json
import secrets

import numpy as np
import pandas as pd
import pytest

from data_lake import Lake
from data_lake.sources.synthetic import synthetic_bars, synthetic_meta
from live_bridge.parity import check
from live_bridge.replay import ReplayResult
from pipeline.params_store import install
from research.params import DataWindow, ExitRulesModel, load
from research.regimes import regimes_from_daily
from tests.kit import entry, params_file
from tests.soak.kit import Live, Lockstep, arrays, hermetic_env, simulator, stored

pytestmark = pytest.mark.timeout(1200)
END, DAYS, WARM = "2024-03-15", 320, 5  # the benchmark's synthetic history; the runner's warm-up sessions
SESSIONS = 5  # replayed: 2024-03-11 .. 2024-03-15
SEEDS = {"AAA": 5, "BBB": 1, "BEN": 11}  # BEN (the benchmark): up_normal, then range_normal, in the replay
RESTART = (3, 200)  # session, minute: a SIGTERM restart in the middle of a session
LABELS = ("up_normal", "range_normal")


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    work = tmp_path_factory.mktemp("soak-minute")
    minutes = {s: synthetic_bars(s, DAYS if s == "BEN" else WARM + SESSIONS, seed, end=END)
               for s, seed in SEEDS.items()}
    daily = synthetic_bars("BEN", DAYS, SEEDS["BEN"], end=END, timeframe="1Day")  # the same minutes, per session
    sessions = pd.DatetimeIndex(daily["ts"]).tz_convert("America/New_York").normalize()
    first = sessions[-SESSIONS].tz_convert("UTC")  # 00:00 New York of the first replayed session
    lake = Lake(work / "lake")  # the user's lake: what is there before the first replayed session
    for s, f in minutes.items():
        f = f[f["ts"] >= sessions[-SESSIONS - WARM].tz_convert("UTC")].reset_index(drop=True)
        minutes[s] = f
        lake.write_bars(s, "1Min", f[f["ts"] < first].reset_index(drop=True), synthetic_meta())
    lake.write_bars("BEN", "1Day", daily[daily["ts"] < first].reset_index(drop=True), synthetic_meta())
    rules = (ExitRulesModel(stop_loss=0.01, flat_at_close=True, allow_short=False),
             ExitRulesModel(stop_loss=0.015, trailing_stop=0.01, flat_at_close=True, allow_short=False))
    grids = ({"fast": 10, "slow": 30, "short": False}, {"fast": 5, "slow": 20, "short": False})
    pf = params_file([entry(symbol=s, regime=lab, params=p, exit_rules=r) for s in ("AAA", "BBB")
                      for lab, p, r in zip(LABELS, grids, rules)],
                     data=DataWindow(timeframe="1Min", start="2024-03-04", end="2024-03-08", symbols=["AAA", "BBB"],
                                     bars_hash={"AAA": "synthetic", "BBB": "synthetic"}, benchmark="BEN"))
    install(pf, work / "params")

    frames = {s: f[f["ts"] >= first][["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
              for s, f in minutes.items()}
    key, secret = "soakm-" + secrets.token_hex(4), secrets.token_hex(16)
    served, clock, sim_broker = simulator(frames, "1Min", key, secret)
    with served as sim:
        # --entry-cutoff 0: the backtest's flat_at_close takes no entry in the last two bars, the
        # live default (15 minutes) more: a named difference the replays turn off the same way
        live = Live(work, sim.url, hermetic_env(key, secret), "--poll", "0.02", "--entry-cutoff", "0")
        live.start()
        step = Lockstep(clock, sim_broker, live)
        equity, per_session = {}, 390
        for k in range(SESSIONS * per_session):
            bars = step.step()
            equity[pd.Timestamp(max(b.ts_us for b in bars.values()), unit="us", tz="UTC")] = \
                float(sim_broker.account_json()["equity"])
            if (k // per_session + 1, k % per_session + 1) == RESTART:
                live.stop()
                live.start()
        live.stop()
        fills = step.fills()
    epochs, anchor, halts = stored(live.state)
    a = arrays(daily)
    result = ReplayResult(load(work / "params" / "current.json"), frames["AAA"]["ts"].iloc[0],
                          frames["AAA"]["ts"].iloc[-1], 100_000.0, {s: frames[s] for s in ("AAA", "BBB")},
                          {s: arrays(minutes[s]) for s in ("AAA", "BBB")}, fills, pd.Series(equity, name="equity"),
                          [], [], {"BEN": regimes_from_daily(a["ts"], a["open"], a["high"], a["low"], a["close"])},
                          live.state / "decisions.jsonl", epochs=epochs, trade_from=anchor, halts=halts)
    return {"result": result, "live": live, "work": work}


def test_minute_bars_live_equal_the_backtest_over_five_sessions_with_a_restart(soak):
    result = soak["result"]

    parity = check(result)

    print("\n" + parity.trades.to_string(index=False))
    assert parity.ok, parity.first_divergence
    assert len(result.fills) >= 6, "a soak without trades proves nothing"
    assert soak["live"].starts == 2
    days = result.fills["bar"].dt.tz_convert("America/New_York").dt.date
    assert days.nunique() >= 3, "trades on several sessions"


def test_the_regime_labels_are_made_online_from_the_benchmarks_minutes(soak):
    lines = [json.loads(x) for x in (soak["live"].state / "decisions.jsonl").read_text().splitlines()]
    final = {}
    for d in lines:
        if d.get("event") == "decision":
            final[(d["strategy"], d["symbol"], d["bar_time"])] = d
    labels = {d["regime_next"] for d in final.values()}
    assert "unknown" not in labels and set(LABELS) <= labels, labels
    entries = [f for f in soak["result"].fills.itertuples() if "-entry-" in f.client_order_id]
    by_label = {final[("sma_cross", f.symbol, (f.bar - pd.Timedelta(minutes=1)).isoformat())]["regime_next"]
                for f in entries if ("sma_cross", f.symbol, (f.bar - pd.Timedelta(minutes=1)).isoformat()) in final}
    assert by_label, "entries decided under known regimes"
    assert np.isfinite(soak["result"].equity).all()
