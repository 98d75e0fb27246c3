"""ingest_alpaca against the loopback simulator, through the real alpaca-py client (no mocks)."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from data_lake import Lake, LakeError
from data_lake.calendar import US_PER_MIN, nyse, session_index
from data_lake.sources.alpaca import TokenBucket, ingest_alpaca, missing_runs, plan_requests
from simulator import market_data_app, serve

KEY, SECRET = "test-key-id", "test-secret-key"
BARS = "/v2/stocks/bars"


def alpaca_minutes(first: str, last: str, seed: int, pre: int = 30, post: int = 20) -> pd.DataFrame:
    """Deterministic 1Min bars for every NYSE session in [first, last], with ``pre`` pre-market
    and ``post`` after-hours minutes per session (Alpaca sends those too); valid OHLC."""
    s = nyse().slice(first, last)
    first_us, end_us = s.open_us - pre * US_PER_MIN, s.close_us + post * US_PER_MIN
    ts = np.concatenate([np.arange(a, b, US_PER_MIN) for a, b in zip(first_us, end_us)])
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.05, len(ts)))
    open_ = np.r_[100.0, close[:-1]]
    wick = rng.uniform(0.0, 0.05, (2, len(ts)))
    high, low = np.maximum(open_, close) + wick[0], np.minimum(open_, close) - wick[1]
    return pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(ts.astype("datetime64[us]"), tz="UTC"),
            "open": open_.round(4), "high": high.round(4), "low": low.round(4), "close": close.round(4),
            "volume": rng.integers(100, 1000, len(ts)).astype(float),
            "vwap": ((high + low + close) / 3).round(4),
            "trade_count": rng.integers(1, 50, len(ts)),
        }
    )


def regular(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` inside the regular session (what the lake should hold)."""
    ts = frame["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    return frame.loc[session_index(ts) >= 0].reset_index(drop=True)


@contextmanager
def simulator(frames: dict, **options):
    app = market_data_app(frames, api_key=KEY, secret_key=SECRET, **options)
    with serve(app) as sim:
        yield sim


def ingest(lake: Lake, sim, symbols, timeframe, start, end, **kw):
    kw.setdefault("retry_wait_seconds", 0.01)
    kw.setdefault("requests_per_minute", 6000)
    return ingest_alpaca(
        lake, symbols, timeframe, start, end, api_key=KEY, secret_key=SECRET, url=sim.url, **kw
    )


@pytest.fixture(scope="module")
def two_symbols() -> dict:
    return {
        ("AAPL", "1Min"): alpaca_minutes("2024-01-02", "2024-01-05", 1),
        ("MSFT", "1Min"): alpaca_minutes("2024-01-02", "2024-01-05", 2),
    }


def test_two_symbols_over_many_pages_land_complete_and_exact(tmp_path, two_symbols):
    lake, seen = Lake(tmp_path), Counter()
    with simulator(two_symbols, max_page_size=500) as sim:
        result = ingest(lake, sim, ["AAPL", "MSFT"], "1Min", "2024-01-02", "2024-01-04",
                        progress=lambda sym, n: seen.update({sym: n}))
        log = sim.state.requests.all(BARS)

    assert len(log) > 2 and all(r.status == 200 for r in log)  # pages, not one call per symbol
    assert log[0].params["symbols"] == "AAPL,MSFT"
    assert result.requests == len(log)
    assert seen == {"AAPL": 3 * 390, "MSFT": 3 * 390}
    # the window runs from the first open to the last close, so Alpaca sends the 20 after-hours
    # and 30 pre-market minutes between sessions: two nights for each symbol
    assert result.rows_outside_session == 2 * 2 * 50
    for sym in ("AAPL", "MSFT"):
        got = lake.read_bars(sym, "1Min")
        want = regular(two_symbols[(sym, "1Min")]).iloc[: 3 * 390]
        assert len(got) == 3 * 390 and not got["ts"].duplicated().any()
        us = "datetime64[us]"
        np.testing.assert_array_equal(got["ts"].to_numpy(dtype=us), want["ts"].to_numpy(dtype=us))
        for c in ("open", "high", "low", "close", "volume", "vwap", "trade_count"):
            np.testing.assert_array_equal(got[c].to_numpy(dtype=float), want[c].to_numpy(dtype=float))
        assert {c: set(got[c]) for c in ("source", "feed", "adjustment")} == {
            "source": {"alpaca"}, "feed": {"iex"}, "adjustment": {"raw"}
        }


def test_page_boundary_inside_a_symbol_and_across_symbols_is_exact(tmp_path, two_symbols):
    # 97 does not divide 390: pages end mid-symbol, and one page holds the end of AAPL and the
    # start of MSFT.
    lake = Lake(tmp_path)
    with simulator(two_symbols, max_page_size=97) as sim:
        ingest(lake, sim, ["MSFT", "AAPL"], "1Min", "2024-01-02", "2024-01-02")
        n_pages = len(sim.state.requests.all(BARS))
    assert n_pages == -(-2 * 390 // 97)
    for sym in ("AAPL", "MSFT"):
        got = lake.read_bars(sym, "1Min")
        want = regular(two_symbols[(sym, "1Min")]).iloc[:390]
        np.testing.assert_array_equal(got["close"].to_numpy(), want["close"].to_numpy())


def test_a_429_is_retried_and_the_data_is_complete(tmp_path, two_symbols):
    lake = Lake(tmp_path)
    with simulator(two_symbols, max_page_size=400) as sim:
        sim.state.faults.add(BARS, status=429, times=2)
        ingest(lake, sim, ["AAPL"], "1Min", "2024-01-02", "2024-01-03")
        statuses = [r.status for r in sim.state.requests.all(BARS)]
    assert statuses[:3] == [429, 429, 200] and set(statuses[3:]) == {200}
    assert len(lake.read_bars("AAPL", "1Min")) == 2 * 390


def test_a_429_that_never_ends_is_one_clear_error(tmp_path, two_symbols):
    lake = Lake(tmp_path)
    with simulator(two_symbols) as sim:
        sim.state.faults.add(BARS, status=429, times=10)
        with pytest.raises(LakeError, match=r"429 \(rate limit\)"):
            ingest(lake, sim, ["AAPL"], "1Min", "2024-01-02", "2024-01-02")
        assert len(sim.state.requests.all(BARS)) == 4  # alpaca-py: one try and 3 retries
    assert lake.files() == []


def test_the_simulators_own_rate_limit_is_survived_by_retrying(tmp_path, two_symbols):
    lake = Lake(tmp_path)
    with simulator(two_symbols, max_page_size=150, requests_per_minute=2) as sim:
        with pytest.raises(LakeError, match="429"):
            ingest(lake, sim, ["AAPL"], "1Min", "2024-01-02", "2024-01-02")
        assert [r.status for r in sim.state.requests.all(BARS)] == [200, 200, 429, 429, 429, 429]


def test_recent_sip_on_the_free_plan_is_a_clear_error_and_writes_nothing(tmp_path, two_symbols):
    lake = Lake(tmp_path)
    pinned = lambda: pd.Timestamp("2024-01-04 15:00", tz="UTC")  # noqa: E731 - the server's clock
    with simulator(two_symbols, plan="basic", now=pinned) as sim:
        with pytest.raises(LakeError) as err:
            ingest(lake, sim, ["AAPL", "MSFT"], "1Min", "2024-01-02", "2024-01-04", feed="sip")
    assert str(err.value).startswith(
        "Alpaca refused the request (403): subscription does not permit querying recent SIP data;"
        " use --feed iex"
    )
    assert lake.files() == []


def test_bad_keys_are_a_clear_error_that_does_not_quote_them(tmp_path, two_symbols):
    lake = Lake(tmp_path)
    with simulator(two_symbols) as sim:
        with pytest.raises(LakeError, match=r"^Alpaca rejected the API keys \(401\)") as err:
            ingest_alpaca(lake, ["AAPL"], "1Min", "2024-01-02", "2024-01-02", api_key="wrong-id",
                          secret_key="wrong-secret", url=sim.url)
    assert "wrong-id" not in str(err.value) and "wrong-secret" not in str(err.value)
    assert lake.files() == []


def test_other_api_errors_carry_the_servers_message(tmp_path, two_symbols):
    lake = Lake(tmp_path)
    with simulator(two_symbols) as sim:
        sim.state.faults.add(BARS, status=422, body={"message": "invalid symbol: AAPL"})
        with pytest.raises(LakeError, match=r"^Alpaca error \(422\): invalid symbol: AAPL$"):
            ingest(lake, sim, ["AAPL"], "1Min", "2024-01-02", "2024-01-02")


def test_incremental_fetches_only_the_missing_sessions(tmp_path, two_symbols):
    lake = Lake(tmp_path)
    with simulator(two_symbols) as sim:
        ingest(lake, sim, ["AAPL", "MSFT"], "1Min", "2024-01-02", "2024-01-03")
        sim.state.requests.clear()
        second = ingest(lake, sim, ["AAPL", "MSFT"], "1Min", "2024-01-02", "2024-01-05")
        asked = sim.state.requests.all(BARS)
        sim.state.requests.clear()
        third = ingest(lake, sim, ["AAPL", "MSFT"], "1Min", "2024-01-02", "2024-01-05")
        assert sim.state.requests.all(BARS) == [] and third.requests == 0

    assert {(r.params["start"], r.params["end"]) for r in asked} == {
        ("2024-01-04T14:30:00+00:00", "2024-01-05T20:59:59+00:00")  # open of session 3, close of session 4
    }
    assert second.sessions_requested == 2 * 2 and third.sessions_requested == 0
    for sym in ("AAPL", "MSFT"):
        assert len(lake.read_bars(sym, "1Min")) == 4 * 390


def test_hourly_bars_are_built_on_the_session_grid_including_a_half_day(tmp_path):
    # 2024-11-27 is a full day; 2024-11-28 Thanksgiving; 2024-11-29 closes at 13:00 ET.
    src = alpaca_minutes("2024-11-27", "2024-11-29", 7, pre=60, post=60)
    lake = Lake(tmp_path)
    with simulator({("SPY", "1Min"): src}) as sim:  # the server rolls 1Min into clock-aligned 30Min
        ingest(lake, sim, ["SPY"], "1Hour", "2024-11-27", "2024-11-29")
        assert {r.params["timeframe"] for r in sim.state.requests.all(BARS)} == {"30Min"}

    got = lake.read_bars("SPY", "1Hour")
    stamps = got["ts"].dt.tz_convert("America/New_York").dt.strftime("%m-%d %H:%M").tolist()
    assert stamps == [f"11-27 {h:02d}:30" for h in range(9, 16)] + [f"11-29 {h:02d}:30" for h in range(9, 13)]
    reg = regular(src)
    ts = reg["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    opens = nyse().open_us[np.searchsorted(nyse().open_us, ts, side="right") - 1]
    key = opens + (ts - opens) // (60 * US_PER_MIN) * (60 * US_PER_MIN)
    g = reg.assign(key=key, pv=reg["vwap"] * reg["volume"]).groupby("key")
    want = pd.DataFrame({
        "open": g["open"].first(), "high": g["high"].max(), "low": g["low"].min(), "close": g["close"].last(),
        "volume": g["volume"].sum(), "trade_count": g["trade_count"].sum(),
        "vwap": g["pv"].sum() / g["volume"].sum(),
    })
    assert len(want) == len(got) == 11
    for c in ("open", "high", "low", "close", "volume", "trade_count"):
        np.testing.assert_array_equal(got[c].to_numpy(dtype=float), want[c].to_numpy(dtype=float))
    np.testing.assert_allclose(got["vwap"].to_numpy(dtype=float), want["vwap"].to_numpy(), rtol=1e-12)
    assert got["volume"].iloc[-1] == reg["volume"].iloc[-30:].sum()  # 12:30-13:00 holds 30 minutes


def test_daily_bars_are_stamped_at_new_york_midnight(tmp_path, two_symbols):
    lake = Lake(tmp_path)
    with simulator(two_symbols) as sim:  # the server rolls minutes into 00:00 New York daily bars
        ingest(lake, sim, ["AAPL"], "1Day", "2024-01-01", "2024-01-05", feed="sip", adjustment="split")
    got = lake.read_bars("AAPL", "1Day")
    assert got["ts"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        f"2024-01-0{d} 00:00" for d in (2, 3, 4, 5)
    ]
    assert set(got["feed"]) == {"sip"} and set(got["adjustment"]) == {"split"}


def test_missing_runs_and_request_plan():
    assert missing_runs(np.arange(10, 20), np.array([9, 12, 13, 17])) == [(10, 11), (14, 16), (18, 19)]
    assert missing_runs(np.arange(3), np.arange(5)) == []
    plan = plan_requests({"A": [(0, 9)], "B": [(0, 9)], "C": [(5, 9)]}, per_session=10, budget=250)
    assert plan == [(["A", "B"], 0, 9), (["C"], 5, 9)]
    long_run = plan_requests({"A": [(0, 9)]}, per_session=10, budget=40)
    assert long_run == [(["A"], 0, 3), (["A"], 4, 7), (["A"], 8, 9)]


def test_token_bucket_paces_to_the_rate_after_its_burst():
    t, waits = [0.0], []
    bucket = TokenBucket(60, burst=2, clock=lambda: t[0], sleep=waits.append)
    assert [bucket.take() for _ in range(4)] == [0.0, 0.0, 1.0, 2.0]
    t[0] = 10.0
    assert bucket.take() == 0.0
