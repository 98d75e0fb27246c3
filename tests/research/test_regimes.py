"""Regimes: hand-checked labels on a built series, causality (prefix, lookahead), reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_lake.calendar import nyse
from data_lake.sources.sample import sample_bars
from research.bars import bars_from_arrays
from research.regimes import RegimeParams, label_bars, measures_at_close, params_hash, regimes_from_daily
from research.kernels.indicators import rolling_mean_nb
from research.kernels.regimes import (
    efficiency_ratio_nb, realized_vol_nb, relative_slope_nb, trailing_percentile_nb, vol_codes_nb,
)
from tests.kit import minute_bars

SMALL = RegimeParams(trend_window=5, slope_bars=2, slope_min=0.002, er_window=5, er_min=0.5,
                     vol_window=5, vol_history=10)


def daily_ts(first: str, n: int) -> np.ndarray:
    """1Day stamps of n consecutive NYSE sessions from ``first``."""
    cal = nyse()
    i = int(cal.dates.searchsorted(pd.Timestamp(first)))
    return cal.day_us[i:i + n].copy()


def three_phases() -> np.ndarray:
    """Closes: 40 bars of calm uptrend, 40 of chop, 20 of a volatile crash.

    Each phase's log returns are c + (-1)^t * a * q^t, so the deviations of the window ending at
    t+1 are -q times those of the window ending at t: rv shrinks (q < 1) or grows (q > 1) exactly
    by q per bar, which makes every percentile rank below countable by hand.
    """
    t = np.arange(100, dtype=float)
    sign = (-1.0) ** t
    r = np.zeros(100)
    r[1:40] = 0.01 + sign[1:40] * 0.004 * 0.9 ** t[1:40]  # +0.6..1.4 %/day: every move up, rv falling
    r[40:80] = sign[40:80] * 0.02 * 0.97 ** (t[40:80] - 40)  # +-2 % chop, shrinking
    r[80:] = -0.06 + sign[80:] * 0.02 * 1.05 ** (t[80:] - 80)  # -4..-8 %/day, every move down, rv growing
    return 100.0 * np.exp(np.cumsum(r))


def regimes_of(close: np.ndarray, p: RegimeParams = SMALL, first: str = "2024-01-02") -> pd.DataFrame:
    ts = daily_ts(first, len(close))
    return regimes_from_daily(ts, close, close, close, close, p)


@pytest.fixture(scope="module")
def ibm() -> dict[str, np.ndarray]:
    b = sample_bars("IBM")
    arrays = {c: b[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")}
    arrays["ts"] = b["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)
    return arrays


def ibm_regimes(a: dict[str, np.ndarray], stop: int | None = None,
                p: RegimeParams = RegimeParams()) -> pd.DataFrame:
    s = slice(None, stop)
    return regimes_from_daily(a["ts"][s], a["open"][s], a["high"][s], a["low"][s], a["close"][s], p)


# ------------------------------------------------------------------ kernels by hand
def test_kernels_match_hand_values():
    close = np.array([10.0, 11.0, 10.0, 11.0, 12.0])
    assert efficiency_ratio_nb(close, 4)[4] == pytest.approx(2 / 4)  # net 2, path 1+1+1+1
    assert np.isnan(efficiency_ratio_nb(close, 4)[3])
    assert efficiency_ratio_nb(np.full(5, 7.0), 4)[4] == 0.0  # no movement: no trend
    slope = relative_slope_nb(rolling_mean_nb(close, 3), 2)  # SMA3: nan, nan, 31/3, 32/3, 11
    assert slope[4] == pytest.approx((11 / (31 / 3) - 1) / 2) == pytest.approx(1 / 31)
    rv = realized_vol_nb(close, 3, 252.0)
    expected = np.std(np.diff(np.log(close[:4])), ddof=1) * np.sqrt(252)
    assert np.isnan(rv[2]) and rv[3] == pytest.approx(expected)
    x = np.array([1.0, 2.0, 3.0, 4.0, 2.5, 2.5])
    pct = trailing_percentile_nb(x, 4)
    assert np.isnan(pct[3]) and pct[4] == 2 / 4 and pct[5] == (1 + 0.5) / 4  # [2,3,4,2.5]: one below, one tie
    codes = vol_codes_nb(np.array([np.nan, 0.0, 0.2499, 0.25, 0.7499, 0.75, 0.95, 1.0]), 0.25, 0.75, 0.95)
    assert codes.tolist() == [-1, 0, 0, 1, 1, 2, 3, 3]


# ------------------------------------------------------------------ labels by hand
def test_three_phases_labels_by_hand():
    frame = regimes_of(three_phases())
    label = frame["label"].tolist()
    assert len(frame) == 101  # 100 sessions with bars + the next one
    # warm-up: rv_pct needs vol_window + vol_history + 1 = 16 bars
    assert SMALL.warmup_bars == 16 and label[:16] == ["warmup"] * 16
    assert frame["trend"][7] == "up" and frame["vol"][7] == "warmup"  # trend is ready first
    # calm uptrend: every move up (ER 1), SMA rising ~1 %/day, rv below all of its history (pct 0)
    assert label[16:41] == ["up_low"] * 25
    # row 41 sees the first chop bar, +2 %: still all moves up, rv above its whole history
    assert label[41] == "up_extreme"
    # row 42: then -1.94 %: ER = 3.06/6.94 < 0.5, rv higher again
    assert frame["er"][42] == pytest.approx(0.434, abs=1e-3) and label[42] == "range_extreme"
    # row 46: the first all-chop window is rv_44 * 0.97, below rv_44 only: rank 9/10
    assert frame["rv_pct"][46] == pytest.approx(0.9) and label[46] == "range_high"
    # chop with its history all chop: ER ~ 0.2, rv below every one of its 10 predecessors
    assert label[55:81] == ["range_low"] * 26
    # the crash session itself is labelled from the bars before it: no lookahead
    assert frame["session"][80] == pd.Timestamp("2024-04-26") and label[80] == "range_low"
    # deep in the crash: every move down, rv above all of its (pure-crash) history
    assert label[95:] == ["down_extreme"] * 6
    assert (frame["slope"][95:] < -0.05).all() and (frame["er"][95:] == 1.0).all()


def test_next_session_row_uses_every_bar():
    close = three_phases()
    frame = regimes_of(close)
    last = frame.iloc[-1]
    assert last["session"] == pd.Timestamp("2024-05-24")  # session after the last bar, 2024-05-23
    m = measures_at_close(close, SMALL)
    assert last["rv"] == m["rv"][-1] and last["er"] == m["er"][-1] and last["label"] == "down_extreme"


def test_next_session_skips_weekend_and_holiday():
    frame = regimes_of(np.linspace(100, 110, 20), first="2023-12-01")  # 20 sessions end on Fri 2023-12-29
    assert frame["session"].iloc[-2] == pd.Timestamp("2023-12-29")
    assert frame["session"].iloc[-1] == pd.Timestamp("2024-01-02")  # weekend, then New Year's Day


def test_gap_session_gets_label_of_last_bar_before_it():
    close = three_phases()
    ts = daily_ts("2024-01-02", 100)
    keep = np.ones(100, bool)
    keep[50] = False  # the benchmark misses one session
    frame = regimes_from_daily(ts[keep], close[keep], close[keep], close[keep], close[keep], SMALL)
    assert len(frame) == 101
    row = frame.iloc[51]  # session after the missing one: same source bar (49) as the missing one
    assert row["rv"] == frame.iloc[50]["rv"]


# ------------------------------------------------------------------ causality on real data
@pytest.mark.parametrize("stop", [100, 400, 1500, 3269])
def test_prefix_invariance_on_ibm(ibm, stop):
    full = ibm_regimes(ibm)
    cut = ibm_regimes(ibm, stop)
    # bars up to stop-1 label sessions up to the one of bar `stop` (no gap in the sample)
    pd.testing.assert_frame_equal(cut, full.iloc[: stop + 1], check_exact=True)


def test_changing_a_bar_changes_only_later_sessions(ibm):
    full = ibm_regimes(ibm)
    k = 2000
    shocked = {c: v.copy() for c, v in ibm.items()}
    shocked["close"][k] *= 0.5
    after = ibm_regimes(shocked)
    pd.testing.assert_frame_equal(after.iloc[: k + 1], full.iloc[: k + 1], check_exact=True)
    assert after["rv"][k + 1] != full["rv"][k + 1]


def test_ibm_labels_with_defaults(ibm):
    frame = ibm_regimes(ibm)
    assert len(frame) == len(ibm["ts"]) + 1
    assert (frame["label"][:273] == "warmup").all() and (frame["label"][273:] != "warmup").all()
    assert frame["label"].iloc[-1] == "range_normal" and frame["session"].iloc[-1] == pd.Timestamp("2013-03-04")
    assert set(frame["label"]) == {*(f"{t}_{v}" for t in ("up", "down", "range")
                                     for v in ("low", "normal", "high", "extreme")), "warmup"}


# ------------------------------------------------------------------ reproducibility, params
def test_same_bars_same_params_identical_labels(ibm):
    pd.testing.assert_frame_equal(ibm_regimes(ibm), ibm_regimes(ibm), check_exact=True)


def test_params_hash_is_stable_and_tracks_params():
    assert params_hash(RegimeParams()) == "9bcaa4e7d6263ed3"  # pinned: a change means new labels
    assert params_hash(RegimeParams(er_min=0.25)) == params_hash(RegimeParams())
    assert params_hash(RegimeParams(er_min=0.3)) != params_hash(RegimeParams())


@pytest.mark.parametrize("bad", [dict(vol_window=1), dict(low_pct=0.8), dict(er_min=1.5), dict(trend_window=0),
                                 dict(slope_min=float("nan")), dict(er_min=float("nan")),
                                 dict(trend_window=10**20)])
def test_bad_params_refused(bad):
    with pytest.raises(ValueError, match="regime"):
        RegimeParams(**bad)


def test_intraday_stamps_refused():
    ts = daily_ts("2024-01-02", 3) + 15 * 3_600_000_000  # 15:00 UTC, not a 1Day stamp
    with pytest.raises(ValueError, match="1Day"):
        regimes_from_daily(ts, *([np.ones(3)] * 4))


# ------------------------------------------------------------------ intraday mapping
def test_label_bars_maps_each_intraday_bar_to_its_session():
    frame = regimes_of(three_phases())  # sessions 2024-01-02 .. 2024-05-24
    mins = minute_bars(["2024-02-29", "2024-03-01", "2024-05-28"])  # the last lies past the regimes
    arrays = {"ts": mins["ts"].to_numpy(dtype="datetime64[us]").view(np.int64),
              **{c: mins[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}}
    bars = bars_from_arrays(arrays, "1Min")
    labels = label_bars(bars.session, frame)
    assert labels.shape == (len(bars),)
    assert set(labels[:390]) == {"up_low"} and set(labels[390:780]) == {"up_extreme"}
    assert set(labels[780:]) == {"unknown"}
