"""The synthetic bar generator: deterministic, on real sessions, valid, and shaped like a market."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_lake.calendar import US_PER_MIN, nyse, session_index
from data_lake.quality import check_bars
from data_lake.schema import LakeError
from data_lake.sources.synthetic import synthetic_arrays, synthetic_bars, synthetic_meta, synthetic_regimes
from data_lake.store import Lake

END = "2024-12-31"  # the window holds the half days 2024-07-03, 2024-11-29 and 2024-12-24
DAYS = 250
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return synthetic_bars("AAPL", DAYS, 7, end=END)


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    """1000 sessions of daily bars, rolled up from minutes: enough for regime statistics."""
    return synthetic_bars("SPY", 1000, 3, timeframe="1Day")


def _session_dates(ts: pd.Series) -> pd.Series:
    return ts.dt.tz_convert("America/New_York").dt.tz_localize(None).dt.normalize()


def test_same_inputs_give_identical_arrays():
    a, b = synthetic_arrays("AAPL", 20, 1), synthetic_arrays("AAPL", 20, 1)

    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


def test_other_seed_or_symbol_gives_other_bars():
    base = synthetic_arrays("AAPL", 20, 1)

    other_seed, other_symbol = synthetic_arrays("AAPL", 20, 2), synthetic_arrays("MSFT", 20, 1)

    assert not np.array_equal(base["close"], other_seed["close"])
    assert not np.array_equal(base["close"], other_symbol["close"])
    assert np.array_equal(base["ts"], other_symbol["ts"])  # same sessions, other prices


def _digest(arrays: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()


def test_stream_does_not_depend_on_python_hash_seed():
    code = (
        "import hashlib; from data_lake.sources.synthetic import synthetic_arrays as s; a = s('AAPL', 3, 9);"
        "print(hashlib.sha256(b''.join(a[k].tobytes() for k in sorted(a))).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "0" if os.environ.get("PYTHONHASHSEED") != "0" else "1"}

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT
    )

    assert out.stdout.strip() == _digest(synthetic_arrays("AAPL", 3, 9))


def test_bars_lie_on_real_sessions(bars):
    ts = bars["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    sessions = nyse().slice(None, END)

    idx = session_index(ts)
    counts = bars.groupby(_session_dates(bars["ts"])).size()

    assert (idx >= 0).all()
    assert ((ts - sessions.open_us[idx]) % US_PER_MIN == 0).all()
    assert list(counts.index) == list(sessions.dates[-DAYS:])
    assert counts[pd.Timestamp("2024-11-29")] == 210 and counts[pd.Timestamp("2024-12-24")] == 210
    assert counts.drop([pd.Timestamp(d) for d in ("2024-07-03", "2024-11-29", "2024-12-24")]).eq(390).all()


def test_bars_are_valid(bars):
    o, h, low, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    vol, vwap, tc = bars["volume"].to_numpy(), bars["vwap"].to_numpy(), bars["trade_count"].to_numpy()

    assert (low > 0).all() and (low <= np.minimum(o, c)).all() and (h >= np.maximum(o, c)).all()
    assert ((vwap >= low) & (vwap <= h)).all()
    assert (vol > 0).all() and (vol == np.round(vol)).all()
    assert tc.dtype.kind == "i" and (tc > 0).all()
    for p in (o, h, low, c):
        assert np.allclose(p * 100, np.round(p * 100), rtol=0, atol=1e-6)  # cents
    assert check_bars(bars, "1Min").ok


def test_volume_is_u_shaped(bars):
    minute = bars.groupby(_session_dates(bars["ts"])).cumcount()
    regular = bars.groupby(_session_dates(bars["ts"]))["ts"].transform("size").eq(390)
    by_minute = bars.loc[regular, "volume"].groupby(minute[regular]).mean()

    edges = pd.concat([by_minute.iloc[:30], by_minute.iloc[-30:]]).mean()
    midday = by_minute.iloc[150:240].mean()

    assert edges > 1.5 * midday


def test_sessions_open_with_a_gap(bars, daily):
    first = bars.groupby(_session_dates(bars["ts"])).agg(open=("open", "first"), close=("close", "last"))
    gaps = np.log(daily["open"].to_numpy()[1:] / daily["close"].to_numpy()[:-1])

    assert (first["open"].iloc[1:].to_numpy() != first["close"].iloc[:-1].to_numpy()).mean() > 0.9
    assert (np.abs(gaps) > 0.02).sum() >= 5
    assert pd.Series(gaps).kurt() > 1  # fatter tails than a normal


def test_regimes_switch_and_persist(bars):
    reg = synthetic_regimes("AAPL", DAYS, 7, end=END)

    assert list(reg["date"]) == list(_session_dates(bars["ts"]).unique())
    assert set(reg["trend"]) <= {"up", "down", "range"} and set(reg["vol"]) <= {"calm", "volatile"}
    for col in ("trend", "vol"):
        assert reg[col].nunique() > 1
        assert (reg[col] == reg[col].shift()).iloc[1:].mean() > 0.9


def test_regimes_shape_the_prices(daily):
    reg = synthetic_regimes("SPY", 1000, 3)
    ret = np.log(daily["close"] / daily["open"])
    rng = np.log(daily["high"] / daily["low"])

    assert ret[reg["trend"] == "up"].mean() > 0 > ret[reg["trend"] == "down"].mean()
    assert rng[reg["vol"] == "volatile"].mean() > 1.8 * rng[reg["vol"] == "calm"].mean()


@pytest.mark.parametrize("timeframe", ["5Min", "15Min", "1Hour", "1Day"])
def test_other_timeframes_are_rolled_up(timeframe):
    frame = synthetic_bars("IBM", 30, 4, end=END, timeframe=timeframe)
    minutes = synthetic_bars("IBM", 30, 4, end=END)

    assert check_bars(frame, timeframe).ok
    assert frame["volume"].sum() == minutes["volume"].sum()
    assert frame["high"].max() == minutes["high"].max()


def test_start_price_is_the_first_open():
    assert synthetic_arrays("AAPL", 2, 1, start_price=123.45)["open"][0] == 123.45


@pytest.mark.parametrize(
    "kwargs", [{"days": 0}, {"days": 20_000}, {"seed": -1}, {"timeframe": "2Min"}, {"start_price": -5.0}]
)
def test_bad_inputs_raise_lake_error(kwargs):
    args = {"symbol": "AAPL", "days": 5, "seed": 1, **kwargs}

    with pytest.raises(LakeError):
        synthetic_arrays(**args)


def test_bars_write_into_the_lake(tmp_path, bars):
    lake = Lake(tmp_path)

    result = lake.write_bars("AAPL", "1Min", bars, synthetic_meta())
    loaded = lake.load_arrays("AAPL", "1Min")

    assert result.rows_written == len(bars) and result.rows_quarantined == 0
    assert np.array_equal(loaded["ts"], bars["ts"].to_numpy(dtype="datetime64[us]").view(np.int64))
    assert np.array_equal(loaded["close"], bars["close"].to_numpy())
