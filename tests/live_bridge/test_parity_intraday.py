"""Intraday parity: on synthetic minute bars, the live runner, fed by the market-data websocket
(AlpacaBarFeed) and the trade_updates websocket against the simulator in lockstep, makes exactly
the backtest's fills for the intraday strategies, stops and flat-at-close included."""

from __future__ import annotations

import pandas as pd
import pytest

from live_bridge.parity import check
from live_bridge.replay import replay
from live_bridge.risk import RiskLimits
from research.params import DataWindow, ExitRulesModel
from tests.kit import entry, params_file

# SYNTHETIC bars (data_lake.sources.synthetic): 8 sessions up to 2024-03-08, the last 2 replayed,
# the 5 before them the runner's warm-up. Seeds chosen so that every case trades in the replay, is
# stopped out at least once and holds a position into a session's last bars (flat_at_close).
SEEDS = {"AAA": 5, "BBB": 1}
START, END = "2024-03-07", "2024-03-09"
CASES = {
    "vwap_reversion": {"window": 20, "entry_z": 2.0, "exit_z": 0.5, "vol_k": 0.5, "warmup_bars": 20},
    "gap": {"mode": "go", "min_gap": 0.002, "exit_minute": 390},  # no time stop: out at the session end
    "sma_cross": {"fast": 10, "slow": 30},
}
RULES = ExitRulesModel(stop_loss=0.01, flat_at_close=True, allow_short=False)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from data_lake import Lake
    from data_lake.sources.synthetic import synthetic_bars, synthetic_meta

    lk = Lake(tmp_path_factory.mktemp("parity-intraday") / "lake")
    for sym, seed in SEEDS.items():
        lk.write_bars(sym, "1Min", synthetic_bars(sym, 8, seed, end="2024-03-08"), synthetic_meta())
    return lk


def minute_file(strategy: str, symbols=("AAA", "BBB")):
    entries = [entry(symbol=s, strategy=strategy, params=CASES[strategy], exit_rules=RULES) for s in symbols]
    data = DataWindow(timeframe="1Min", start="2024-02-28", end="2024-03-08", symbols=list(symbols),
                      bars_hash={s: "synthetic" for s in symbols})
    return params_file(entries, data=data)


@pytest.fixture(scope="module")
def replays(lake, tmp_path_factory):
    return {s: replay(lake, minute_file(s), START, END, work_dir=tmp_path_factory.mktemp(s)) for s in CASES}


def session_ends(result) -> dict[str, pd.Series]:
    """Per symbol, the stamp of each replayed session's last bar."""
    out = {}
    for sym, f in result.bars.items():
        day = f["ts"].dt.tz_convert("America/New_York").dt.date
        out[sym] = f.groupby(day)["ts"].max()
    return out


@pytest.mark.parametrize("strategy", sorted(CASES))
def test_minute_replay_matches_the_backtest_fill_for_fill(replays, strategy):
    result = replays[strategy]

    parity = check(result)

    assert result.errors == []
    assert parity.ok, parity.first_divergence
    assert len(result.fills) >= 2, "a replay without trades proves nothing"
    assert len(parity.equity) == 2 * 390  # every minute of the two sessions
    stream = result.bar_feed
    assert stream.from_stream == 2 * 2 * 390 and stream.from_poll == 0  # every bar came by websocket


@pytest.mark.parametrize("strategy", sorted(CASES))
def test_positions_are_flat_at_every_session_close(replays, strategy):
    result = replays[strategy]
    f = result.fills
    signed = f["qty"].where(f["side"] == "buy", -f["qty"])

    ends = session_ends(result)
    for sym, last in ends.items():
        for t in last:
            assert signed[(f["symbol"] == sym) & (f["bar"] <= t)].sum() == 0, f"{sym} held at {t}"
    at_end = sum(((f["symbol"] == s) & f["bar"].isin(last) & (f["side"] == "sell")).sum() for s, last in ends.items())
    assert at_end >= 1, "no position was held into a session's last bar: flat_at_close untested"


def test_stops_fill_inside_their_bar(replays):
    """A stop hit inside bar t is bar t's fill, though the broker stamps it at t's close, which is
    bar t+1's open: the replay records the bar of every fill, and parity reads that."""
    stops = pd.concat([r.fills[r.fills["client_order_id"].str.contains("-stop-")] for r in replays.values()])

    after_open = stops["ts"] - stops["bar"]  # 0: the bar opened through the stop; > 0: hit inside it
    assert ((after_open >= pd.Timedelta(0)) & (after_open <= pd.Timedelta(minutes=1))).all()
    assert (after_open > pd.Timedelta(0)).any()


def test_the_live_entry_cutoff_is_a_named_divergence(lake, tmp_path):
    """The backtest enters up to the session's last two bars; the live risk manager refuses entries in
    the last 15 minutes. With the live limits the replay must diverge there, and say why."""
    result = replay(lake, minute_file("sma_cross", ("AAA",)), "2024-03-08", END, work_dir=tmp_path,
                    limits=RiskLimits())

    parity = check(result)

    assert not parity.ok and "entry_cutoff" in parity.first_divergence
