"""The day-loss halt, live: a gap through the stop loses > 2% of equity in a day; the runner records
the halt, flattens, refuses entries for the rest of that session (rule daily_loss), trades again the
next session. Through the real alpaca-py clients against the simulator (a replay)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from data_lake import Lake
from data_lake.calendar import nyse
from data_lake.sources.synthetic import synthetic_meta
from live_bridge.replay import replay
from live_bridge.risk import RiskLimits
from research.params import DataWindow, ExitRulesModel
from tests.kit import entry, params_file


def crash_bars() -> pd.DataFrame:
    """Daily bars (synthetic, by hand): a dip then a rise (a fresh sma crossing: an entry at the end of
    February), a 40% gap down on 2024-03-01 through the stop, then a choppy recovery (later entries)."""
    days = nyse().dates
    days = days[(days >= pd.Timestamp("2023-06-01")) & (days < pd.Timestamp("2024-04-01"))]
    step = np.full(len(days), 0.0)
    step[(days >= pd.Timestamp("2024-02-12")) & (days < pd.Timestamp("2024-02-20"))] = -0.01
    step[(days >= pd.Timestamp("2024-02-20")) & (days < pd.Timestamp("2024-03-01"))] = 0.01
    after = days >= pd.Timestamp("2024-03-04")
    step[after] = 0.02 * np.sin(np.arange(after.sum()) / 1.5)
    close = 100 * np.exp(np.cumsum(step))
    crash = int(days.searchsorted(pd.Timestamp("2024-03-01")))
    close[crash:] *= 0.6
    open_ = np.r_[close[0], close[:-1]]
    open_[crash] = close[crash] * 0.999
    ts = pd.DatetimeIndex(days).tz_localize("America/New_York").tz_convert("UTC")
    return pd.DataFrame({"ts": ts, "open": open_, "high": np.maximum(open_, close) * 1.002,
                         "low": np.minimum(open_, close) * 0.998, "close": close, "volume": 1e6})


def test_a_two_percent_day_loss_flattens_and_halts_until_the_next_session(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write_bars("CRSH", "1Day", crash_bars(), synthetic_meta())
    pf = params_file([entry(symbol="CRSH", params={"fast": 2, "slow": 5, "short": False},
                            exit_rules=ExitRulesModel(stop_loss=0.05, allow_short=False))],
                     data=DataWindow(timeframe="1Day", start="2023-06-01", end="2024-03-28", symbols=["CRSH"],
                                     bars_hash={"CRSH": "synthetic"}))
    # 10% of equity per position and 0.25% risked to a 5% stop: 5% of equity in CRSH; a 40% gap -> -2%
    limits = RiskLimits(queue_for_next_open=True, risk_per_trade=0.01, max_position_pct=0.10)

    result = replay(lake, pf, "2024-01-02", "2024-04-01", work_dir=tmp_path / "run", limits=limits)

    lines = [json.loads(x) for x in (tmp_path / "run" / "decisions.jsonl").read_text().splitlines()]
    halts = [x for x in lines if x["event"] == "halt"]
    assert [h["rule"] for h in halts] == ["daily_loss", "strategy_loss"], halts  # its one strategy lost > 1% too
    assert halts[0]["scope"] == "*" and "flatten_orders" in halts[0]
    # (no parity here: the runner refuses the -40% bar as bad data, the backtest cannot; the soak
    # proves a halt in parity, tests/soak)
    assert result.halts and {s for _, s in result.halts} == {"*", "sma_cross"}
    day = pd.Timestamp("2024-03-01")
    refused = [x for x in lines if x["event"] == "decision" and pd.Timestamp(x["bar_time"]).tz_convert(
        "America/New_York").normalize().tz_localize(None) == day for a in x["actions"] if a.get("rule") == "daily_loss"]
    later = result.fills[result.fills["ts"] > pd.Timestamp("2024-03-05", tz="UTC")]
    assert len(later) > 0, "trading resumes in a later session"
    assert result.errors == []
    assert refused or not any(x["event"] == "decision" and x["target"] == 1 and x["position"] == 0 and
                              pd.Timestamp(x["bar_time"]).tz_convert("America/New_York").normalize().tz_localize(None) == day
                              for x in lines)


def test_a_strategys_day_pnl_counts_from_the_start_of_the_session_not_from_the_entry(tmp_path):
    """A position bought at 100 two sessions ago, 90 at yesterday's close and 91 now made +1/share
    today (not -9: that loss is yesterday's); one opened today at 95, now at 94, made -1/share; a
    sale today counts its cash against yesterday's mark."""
    from types import SimpleNamespace

    from live_bridge.ports import Fill
    from live_bridge.runner_halts import HaltDesk
    from live_bridge.state import StateStore

    days = [pd.Timestamp(d).tz_localize("America/New_York") for d in ("2024-03-04", "2024-03-05", "2024-03-06")]
    ts = np.array([d.tz_convert("UTC").value // 1000 for d in days], dtype=np.int64)
    history = {"OLD": {"ts": ts, "close": np.array([100.0, 90.0, 91.0])},
               "NEW": {"ts": ts, "close": np.array([96.0, 96.0, 94.0])},
               "SOLD": {"ts": ts, "close": np.array([50.0, 40.0, 45.0])}}
    with StateStore(tmp_path / "s.db") as store:
        def buy(cid, sym, qty, px, day, side="buy"):
            store.record_fill(Fill(f"{cid}-x", f"{cid}-id", cid, sym, side, qty, px,
                                   (day + pd.Timedelta(hours=10)).to_pydatetime()), "sma_cross")
        buy("a", "OLD", 10, 100.0, days[0])
        buy("b", "NEW", 5, 95.0, days[2])
        buy("c", "SOLD", 4, 50.0, days[0])
        buy("d", "SOLD", 4, 44.0, days[2], side="sell")
        runner = SimpleNamespace(store=store, history=history, config=SimpleNamespace(timeframe="1Day"))

        pnl = HaltDesk._strategy_day_pnl(runner, days[2].date())

    # OLD +1 x 10, NEW -1 x 5, SOLD: sold at 44 against yesterday's 40: +4 x 4
    assert pnl == {"sma_cross": pytest.approx(10.0 - 5.0 + 16.0)}


def test_the_halt_file_is_never_ignored_whatever_it_holds(tmp_path):
    from datetime import UTC, datetime, timedelta

    from live_bridge.runner_halts import CLI_WAIT_MAX, read_halt, write_halt

    assert read_halt(tmp_path) is None
    at = datetime(2024, 3, 1, 21, 0, tzinfo=UTC)
    write_halt(tmp_path, {"halted_at": at.isoformat(), "by": "tradelab live halt", "flatten": "done"})
    h = read_halt(tmp_path)
    assert (h.halted_at, h.by, h.done) == (at, "tradelab live halt", True)
    assert h.refusal(tmp_path) == f"halted at 2024-03-01T21:00:00+00:00 (HALT in {tmp_path}, flatten done by " \
                                  "tradelab live halt): remove it to resume"

    path = tmp_path / "HALT"
    path.write_text("halted at 2024-03-01T21:00:00+00:00\n")  # written before issue 14
    h = read_halt(tmp_path)
    assert (h.halted_at, h.flatten) == (at, "pending")
    for junk in (b"", b"\xff\x00{garbage", b"[1, 2]", b'{"flatten": "DONE", "halted_at": 7}'):
        path.write_bytes(junk)
        h = read_halt(tmp_path)
        assert h.flatten == "pending" and h.halted_at == datetime.fromtimestamp(path.stat().st_mtime, UTC), junk
    path.unlink()
    path.mkdir()  # not even a file: still a halt
    assert read_halt(tmp_path).flatten == "pending"
    path.rmdir()
    os.mkfifo(path)  # a pipe nobody writes to: still a halt, and no hang
    assert read_halt(tmp_path).flatten == "pending"

    path.unlink()
    write_halt(tmp_path, {"halted_at": at.isoformat(), "flatten": "pending",
                          "cli_until": (at + timedelta(days=9)).isoformat()})  # a bad clock: capped
    h = read_halt(tmp_path)
    assert h.cli_wait(at) == CLI_WAIT_MAX and h.cli_wait(at + timedelta(days=1)) == 0.0


def test_a_symbol_flattened_by_hand_closes_that_symbols_path_and_stops_its_entries_for_the_session():
    from data_lake.sources.synthetic import synthetic_arrays
    from live_bridge.sleeves import Sleeve, halt_masks
    from research.bars import bars_from_arrays
    from research.exits import ExitRules

    a = synthetic_arrays("AAPL", 30, 1, timeframe="15Min")
    bars = bars_from_arrays(a, "15Min")
    at = int(a["ts"][5]) + 60_000_000  # in the 6th bar: the runner flattened then
    aapl, msft = (Sleeve("sma_cross", s, ("all",), ((None, ExitRules()),), s) for s in ("AAPL", "MSFT"))

    no_entry, flatten = halt_masks(aapl, a["ts"], bars, [(at, "symbol:AAPL")])
    other = halt_masks(msft, a["ts"], bars, [(at, "symbol:AAPL")])

    session = bars.session == bars.session[5]
    assert flatten.nonzero()[0].tolist() == [5]
    assert (no_entry == (session & (np.arange(len(a["ts"])) >= 5))).all() and no_entry[5:].any()
    assert not other[0].any() and not other[1].any()  # another symbol's path is untouched
