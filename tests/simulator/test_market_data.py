"""The simulator's bars routes (/v2/stocks/bars, /v2/stocks/{symbol}/bars) read by alpaca-py and raw HTTP."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from simulator import market_data_app, serve

KEY, SECRET = "sim-test-key", "sim-test-secret"
AUTH = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
OPEN_US = {"2024-01-02": 1704205800_000_000, "2024-01-03": 1704292200_000_000}  # 09:30 ET in UTC us


def session_minutes(day: str, seed: int, n: int = 390) -> pd.DataFrame:
    """``n`` deterministic 1Min bars from the 09:30 ET open of ``day``; valid OHLC."""
    rng = np.random.default_rng(seed)
    close = 50 + np.cumsum(rng.normal(0, 0.02, n))
    open_ = np.r_[50.0, close[:-1]]
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(OPEN_US[day] + np.arange(n) * 60_000_000, unit="us", utc=True),
            "open": open_, "high": np.maximum(open_, close) + 0.01, "low": np.minimum(open_, close) - 0.01,
            "close": close, "volume": rng.integers(1, 500, n).astype(float), "vwap": close,
            "trade_count": rng.integers(1, 9, n),
        }
    )


@pytest.fixture(scope="module")
def frames() -> dict:
    def both(seed: int) -> pd.DataFrame:
        return pd.concat([session_minutes("2024-01-02", seed), session_minutes("2024-01-03", seed + 1)])

    return {("AAPL", "1Min"): both(1), ("MSFT", "1Min"): both(3)}


@pytest.fixture
def sim(frames):
    with serve(market_data_app(frames, api_key=KEY, secret_key=SECRET, max_page_size=250)) as s:
        yield s


def get(sim, **params) -> requests.Response:
    return requests.get(f"{sim.url}/v2/stocks/bars", params=params, headers=AUTH, timeout=5)


def bars(sim, symbol: str, timeframe: str, start: str, end: str) -> list[dict]:
    return get(sim, symbols=symbol, timeframe=timeframe, start=start, end=end).json()["bars"][symbol]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_alpaca_py_reads_every_page_of_two_symbols(sim, frames):
    client = StockHistoricalDataClient(KEY, SECRET, url_override=sim.url)
    barset = client.get_stock_bars(
        StockBarsRequest(symbol_or_symbols=["MSFT", "AAPL"], timeframe=TimeFrame.Minute,
                         start=utc("2024-01-02T00:00:00"), end=utc("2024-01-04T00:00:00"), feed=DataFeed.IEX)
    )
    df = barset.df
    assert df.groupby(level="symbol").size().to_dict() == {"AAPL": 780, "MSFT": 780}
    aapl = df.loc["AAPL"]
    np.testing.assert_allclose(aapl["close"].to_numpy(), frames[("AAPL", "1Min")]["close"].to_numpy())
    assert aapl.index[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")
    log = sim.state.requests.all("/v2/stocks/bars")
    assert len(log) == -(-1560 // 250)  # max_page_size caps alpaca-py's limit=10000
    assert log[0].params["limit"] == "10000" and "page_token" in log[1].params


def test_pages_split_inside_and_across_symbols_exactly(sim, frames):
    pages, token = [], None
    while True:
        params = dict(symbols="MSFT,AAPL", timeframe="1Min", start="2024-01-02", end="2024-01-02", limit=7)
        body = get(sim, **params, **({"page_token": token} if token else {})).json()
        pages.append(body["bars"])
        token = body["next_page_token"]
        if token is None:
            break
    assert len(pages) == -(-780 // 7) and all(sum(map(len, p.values())) == 7 for p in pages[:-1])
    assert [p for p in pages if len(p) == 2] == [pages[390 // 7]]  # the one page holding the boundary
    for sym in ("AAPL", "MSFT"):
        got = [b for p in pages for b in p.get(sym, [])]
        want = frames[(sym, "1Min")].iloc[:390]
        assert [b["t"] for b in got] == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in want["ts"]]
        assert [b["c"] for b in got] == want["close"].tolist()
        assert [b["n"] for b in got] == want["trade_count"].tolist()


def test_wire_shape_inclusive_window_and_absent_symbols(sim):
    window = {"start": "2024-01-02T14:30:00Z", "end": "2024-01-02T14:32:00Z"}
    body = get(sim, symbols="AAPL,ZZZZ", timeframe="1Min", **window).json()
    assert body["next_page_token"] is None and list(body["bars"]) == ["AAPL"]
    bars = body["bars"]["AAPL"]
    assert [b["t"] for b in bars] == ["2024-01-02T14:30:00Z", "2024-01-02T14:31:00Z", "2024-01-02T14:32:00Z"]
    assert set(bars[0]) == {"t", "o", "h", "l", "c", "v", "n", "vw"} and isinstance(bars[0]["v"], int)


def test_coarser_bars_are_clock_aligned_and_spellings_agree(sim, frames):
    hourly = bars(sim, "AAPL", "1H", "2024-01-02", "2024-01-02")
    assert hourly[0]["t"] == "2024-01-02T14:00:00Z" and len(hourly) == 7  # 09:00 ET bar holds 09:30-09:59
    src = frames[("AAPL", "1Min")].iloc[:30]
    assert hourly[0]["o"] == src["open"].iloc[0] and hourly[0]["c"] == src["close"].iloc[-1]
    assert hourly[0]["v"] == src["volume"].sum() and hourly[0]["h"] == src["high"].max()
    five = [bars(sim, "AAPL", tf, "2024-01-02", "2024-01-02") for tf in ("5Min", "5T")]
    assert five[0] == five[1] and len(five[0]) == 78
    daily = bars(sim, "AAPL", "1Day", "2024-01-01", "2024-01-05")
    assert [b["t"] for b in daily] == ["2024-01-02T05:00:00Z", "2024-01-03T05:00:00Z"]  # 00:00 New York


@pytest.mark.parametrize(
    "params, message",
    [
        ({"timeframe": "7Fortnight"}, "invalid timeframe: 7Fortnight"),
        ({"limit": "10001"}, "invalid limit: must be between 1 and 10000"),
        ({"feed": "nasdaq"}, "invalid feed: nasdaq"),
        ({"page_token": "not-a-token"}, "invalid page_token"),
        ({"start": "2024-01-03", "end": "2024-01-02"}, "end should not be before start"),
    ],
)
def test_bad_parameters_are_alpaca_style_400s(sim, params, message):
    r = get(sim, **{"symbols": "AAPL", "timeframe": "1Min", "start": "2024-01-02", **params})
    assert (r.status_code, r.json()) == (400, {"message": message})


@pytest.mark.parametrize("path", ["/v2/stocks/bars", "/v2/stocks/AAPL/bars"])
def test_wrong_keys_get_alpacas_401_body_with_its_code(sim, path):
    r = requests.get(f"{sim.url}{path}", params={"symbols": "AAPL", "timeframe": "1Min"},
                     headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": "nope"}, timeout=5)
    assert (r.status_code, r.json()) == (401, {"code": 40110000, "message": "request is not authorized"})
    client = StockHistoricalDataClient("bad", "keys", url_override=sim.url)
    with pytest.raises(APIError) as err:
        client.get_stock_bars(StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute))
    assert (err.value.status_code, err.value.code) == (401, 40110000)


# ------------------------------------------------------------------------------------ wire types
def lake_like(frame: pd.DataFrame, volume_scale: float = 1.0) -> pd.DataFrame:
    """What `tradelab sim` serves: no vwap, no trade count, and a split-adjusted (fractional) volume."""
    out = frame[["ts", "open", "high", "low", "close", "volume"]].copy()
    out["volume"] = out["volume"] * volume_scale
    return out


def test_v_and_n_are_ints_and_vw_a_number_even_without_vwap_trade_count_or_whole_volumes(frames):
    minutes = lake_like(frames[("AAPL", "1Min")], volume_scale=1 / 3)  # a 1:3 reverse split
    with serve(market_data_app({("AAPL", "1Min"): minutes}, api_key=KEY, secret_key=SECRET)) as s:
        got = bars(s, "AAPL", "1Min", "2024-01-02", "2024-01-02")
        hourly = bars(s, "AAPL", "1Hour", "2024-01-02", "2024-01-02")[0]
    src = minutes.iloc[:390]
    assert all(type(b["v"]) is int and type(b["n"]) is int and type(b["vw"]) is float for b in got + [hourly])
    assert [b["v"] for b in got] == np.rint(src["volume"]).astype(int).tolist()  # half to even
    assert {b["n"] for b in got} == {0}  # unknown trade count
    np.testing.assert_allclose([b["vw"] for b in got], (src["high"] + src["low"] + src["close"]) / 3)
    first = minutes.iloc[:30]  # the 09:00 hour holds 09:30-09:59: summed first, rounded once
    assert hourly["v"] == round(first["volume"].sum())
    typical = (first["high"].max() + first["low"].min() + first["close"].iloc[-1]) / 3
    assert hourly["vw"] == pytest.approx(typical)


def test_the_lakes_vwap_and_trade_count_pass_through(sim, frames):
    got = bars(sim, "AAPL", "1Min", "2024-01-02", "2024-01-02")[:5]
    src = frames[("AAPL", "1Min")].iloc[:5]
    assert [b["vw"] for b in got] == src["vwap"].tolist()
    assert [b["n"] for b in got] == src["trade_count"].tolist()


@pytest.mark.parametrize("timeframe", ["1Week", "1W", "1Month", "3M", "12Month"])
def test_weeks_and_months_are_refused_as_unsupported_by_the_simulator(sim, timeframe):
    r = get(sim, symbols="AAPL", timeframe=timeframe, start="2024-01-02")
    assert (r.status_code, r.json()) == (
        400, {"message": f"timeframe {timeframe} is not supported by the simulator (Min, Hour, 1Day)"})


# ------------------------------------------------------------------------------------ one symbol
def single(sim, symbol: str, **params) -> requests.Response:
    return requests.get(f"{sim.url}/v2/stocks/{symbol}/bars", params=params, headers=AUTH, timeout=5)


def test_the_single_symbol_route_pages_like_the_multi_symbol_one(sim, frames):
    window = {"timeframe": "1Min", "start": "2024-01-02", "end": "2024-01-03", "limit": 100}
    pages, token = [], None
    while True:
        body = single(sim, "aapl", **window, **({"page_token": token} if token else {})).json()
        pages.append(body)
        token = body["next_page_token"]
        if token is None:
            break
    assert {tuple(sorted(p)) for p in pages} == {("bars", "next_page_token", "symbol")}
    assert {p["symbol"] for p in pages} == {"AAPL"} and [len(p["bars"]) for p in pages] == [100] * 7 + [80]
    multi = get(sim, symbols="AAPL", **window).json()
    assert multi["bars"]["AAPL"] == pages[0]["bars"]
    assert multi["next_page_token"] == pages[0]["next_page_token"]
    assert [b["c"] for p in pages for b in p["bars"]] == frames[("AAPL", "1Min")]["close"].tolist()


def test_the_single_symbol_route_refuses_answers_empty_and_obeys_faults(sim):
    empty = single(sim, "ZZZZ", timeframe="1Min", start="2024-01-02")
    bad = single(sim, "AAPL", timeframe="7Fortnight", start="2024-01-02")
    two = single(sim, "AAPL,MSFT", timeframe="1Min", start="2024-01-02")
    sim.state.faults.add("/v2/stocks/AAPL/bars", status=429)
    faulted = single(sim, "AAPL", timeframe="1Min", start="2024-01-02")
    assert empty.json() == {"bars": [], "symbol": "ZZZZ", "next_page_token": None}
    assert (bad.status_code, bad.json()) == (400, {"message": "invalid timeframe: 7Fortnight"})
    assert (two.status_code, two.json()) == (400, {"message": "invalid symbol: AAPL,MSFT"})
    assert faulted.status_code == 429 and sim.state.requests.all("/v2/stocks/AAPL/bars")[-1].status == 429


def test_the_single_symbol_route_shares_the_quota_and_the_sip_rule(frames):
    now = lambda: pd.Timestamp("2024-01-03 16:00", tz="UTC")  # noqa: E731
    app = market_data_app(frames, api_key=KEY, secret_key=SECRET, requests_per_minute=3, now=now)
    with serve(app) as s:
        recent = single(s, "AAPL", timeframe="1Min", start="2024-01-03T14:30:00Z", feed="sip")
        ok = single(s, "AAPL", timeframe="1Min", start="2024-01-03T14:30:00Z")
        get(s, symbols="AAPL", timeframe="1Min", start="2024-01-03")
        over = single(s, "AAPL", timeframe="1Min", start="2024-01-03")
    assert recent.status_code == 403 and ok.status_code == 200 and len(ok.json()["bars"]) == 91
    assert over.status_code == 429


def test_free_plan_refuses_recent_sip_only(frames):
    now = lambda: pd.Timestamp("2024-01-03 16:00", tz="UTC")  # noqa: E731
    with serve(market_data_app(frames, api_key=KEY, secret_key=SECRET, plan="basic", now=now)) as s:
        q = {"symbols": "AAPL", "timeframe": "1Min", "start": "2024-01-03T14:30:00Z"}
        recent = get(s, **q, end="2024-01-03T15:50:00Z", feed="sip")  # 10 minutes before "now"
        no_end = get(s, **q, feed="sip")
        old = get(s, **q, end="2024-01-03T15:40:00Z", feed="sip")
        iex = get(s, **q, feed="iex")
    assert recent.status_code == no_end.status_code == 403
    assert recent.json() == {"message": "subscription does not permit querying recent SIP data"}
    assert old.status_code == iex.status_code == 200
    assert len(iex.json()["bars"]["AAPL"]) == 91  # end defaults to now (16:00), inclusive


def test_paid_plan_serves_recent_sip(frames):
    now = lambda: pd.Timestamp("2024-01-03 16:00", tz="UTC")  # noqa: E731
    app = market_data_app(frames, api_key=KEY, secret_key=SECRET, plan="algo_trader_plus", now=now)
    with serve(app) as s:
        r = get(s, symbols="AAPL", timeframe="1Min", start="2024-01-03T14:30:00Z", feed="sip")
    assert r.status_code == 200


def test_faults_are_consumed_in_order_and_recorded(sim):
    sim.state.faults.add("/v2/stocks/bars", status=500, times=1, body={"message": "boom"})
    sim.state.faults.add("/v2/stocks/bars", status=429, times=1)
    sim.state.faults.add("/v2/other", status=418)
    statuses = [get(sim, symbols="AAPL", timeframe="1Day", start="2024-01-02").status_code for _ in range(3)]
    assert statuses == [500, 429, 200] and sim.state.faults.pending() == 1
    assert [(r.status, r.params["timeframe"]) for r in sim.state.requests.all("/v2/stocks/bars")] == [
        (500, "1Day"), (429, "1Day"), (200, "1Day")
    ]


def test_the_rate_limit_answers_429_without_retry_after(frames):
    with serve(market_data_app(frames, api_key=KEY, secret_key=SECRET, requests_per_minute=3)) as s:
        rs = [get(s, symbols="AAPL", timeframe="1Day", start="2024-01-02") for _ in range(4)]
    assert [r.status_code for r in rs] == [200, 200, 200, 429]
    assert "retry-after" not in rs[-1].headers and rs[-1].json() == {"message": "too many requests."}
    assert [r.headers["x-ratelimit-remaining"] for r in rs] == ["2", "1", "0", "0"]


def test_serve_picks_a_free_port_and_stops_cleanly(frames):
    app = market_data_app(frames, api_key=KEY, secret_key=SECRET)
    with serve(app) as a, serve(app) as b:
        assert a.port != b.port and a.url.startswith("http://127.0.0.1:")
        assert get(a, symbols="AAPL", timeframe="1Day", start="2024-01-02").status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(a.url, timeout=2)
