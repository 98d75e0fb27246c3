"""Walk-forward: specs, hand-counted splits on a weekday calendar, choice, stitching, properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research.walkforward import Span, choose, parse_spec, splits, stitch, stitched_metrics

NY = "America/New_York"


def weekday_stamps(first: str, last: str, times: tuple[str, ...] = ("00:00",)) -> np.ndarray:
    """int64 UTC us of every weekday in [first, last] at the given New York wall times."""
    days = pd.bdate_range(first, last)
    local = [d + pd.Timedelta(t + ":00") for d in days for t in times]
    return pd.DatetimeIndex(local).tz_localize(NY).tz_convert("UTC").as_unit("us").asi8


# Weekdays 2019-01-01 (Tue) .. 2021-12-31 (Fri), counted by hand:
#   2019: 365 days = 52 weeks + 1 day (Tue)              -> 260 + 1 = 261
#   2019 H1: 181 days = 25 weeks + 6 days (Tue..Sun: 4)  -> 125 + 4 = 129
#   2020: 366 days = 52 weeks + 2 days (Wed, Thu)        -> 262;  H1: 182 days = 26 weeks -> 130
#   2021: 365 days = 52 weeks + 1 day (Fri)              -> 261;  H1: 181 = 25w + 6d (Fri..Wed: 4) -> 129
# Row where each half-year starts: 2019-07-01 129, 2020-01-01 261, 2020-07-01 391,
#   2021-01-01 523, 2021-07-01 652, end 784.
TS = weekday_stamps("2019-01-01", "2021-12-31")
HALF_STARTS = [0, 129, 261, 391, 523, 652, 784]


# --- parse_spec --------------------------------------------------------------------------------

def test_parse_spec_units() -> None:
    assert parse_spec("2y:6m") == (Span(2, "y"), Span(6, "m"))
    assert parse_spec("252b:63b") == (Span(252, "b"), Span(63, "b"))
    assert parse_spec(" 8W : 10d ") == (Span(8, "w"), Span(10, "d"))


@pytest.mark.parametrize("spec, message", [
    ("2y", "TRAIN:TEST"),
    ("2y:6m:1m", "TRAIN:TEST"),
    (":6m", "not <count><unit>"),
    ("y:6m", "not <count><unit>"),
    ("2.5y:6m", "not <count><unit>"),
    ("2y:6x", "unknown unit 'x'"),
    ("2y:6min", "unknown unit 'min'"),
    ("0y:6m", "must be positive"),
    ("252b:6m", "mixes bar counts and calendar"),
    (None, "TRAIN:TEST"),
])
def test_parse_spec_bad(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)  # type: ignore[arg-type]


# --- splits: calendar --------------------------------------------------------------------------

def test_rolling_1y_6m_hand_counted() -> None:
    out = splits(TS, "1y:6m")

    h = HALF_STARTS
    assert [(s.index, s.train, s.test) for s in out] == [
        (0, (h[0], h[2]), (h[2], h[3])),  # train 2019,         test 2020 H1
        (1, (h[1], h[3]), (h[3], h[4])),  # train 2019H2-2020H1, test 2020 H2
        (2, (h[2], h[4]), (h[4], h[5])),  # train 2020,         test 2021 H1
        (3, (h[3], h[5]), (h[5], h[6])),  # train 2020H2-2021H1, test 2021 H2 (ends 2022-01-01, a Sat)
    ]


def test_anchored_starts_at_zero_with_the_same_tests() -> None:
    rolling, anchored = splits(TS, "1y:6m"), splits(TS, "1y:6m", anchored=True)

    assert [s.train for s in anchored] == [(0, h) for h in HALF_STARTS[2:6]]
    assert [s.test for s in anchored] == [s.test for s in rolling]


def test_tests_follow_train_and_tile_without_overlap() -> None:
    out = splits(TS, "6m:1m")

    assert all(s.train[1] == s.test[0] for s in out)
    assert all(a.test[1] == b.test[0] for a, b in zip(out, out[1:]))
    assert out[0].test[0] == HALF_STARTS[1] and out[-1].test[1] == len(TS)


def test_last_partial_test_window_is_dropped() -> None:
    # data ends Thu 2021-12-30; the next NYSE session is Fri 12-31, before the window end 2022-01-01
    short = weekday_stamps("2019-01-01", "2021-12-30")

    out = splits(short, "1y:6m")

    assert [s.test for s in out] == [s.test for s in splits(TS, "1y:6m")][:3]


def test_window_ending_after_a_holiday_is_complete() -> None:
    # data ends Fri 2022-12-30; Mon 2023-01-02 is an NYSE holiday, so the next session is Tue 01-03
    # and a window ending then is whole. From Tue 2022-10-04, 1w + 4 x 3w = 91 days -> 2023-01-03.
    ts = weekday_stamps("2022-10-04", "2022-12-30")

    out = splits(ts, "1w:3w")

    assert len(out) == 4 and out[-1].test[1] == len(ts)


def test_step_longer_than_test_leaves_gaps() -> None:
    out = splits(TS, "1y:3m", step="6m")

    assert [s.test[0] for s in out] == HALF_STARTS[2:6]
    assert all(s.test[1] - s.test[0] < 70 for s in out)  # about one quarter of weekdays


def test_session_dates_and_intraday_stamps_split_on_the_same_days() -> None:
    dates = pd.bdate_range("2019-01-01", "2021-12-31")
    intraday = weekday_stamps("2019-01-01", "2021-12-31", ("09:30", "12:00", "15:59"))

    by_date = splits(dates.values.astype("datetime64[D]"), "1y:6m")
    by_bar = splits(intraday, "1y:6m")

    assert by_date == splits(TS, "1y:6m")
    assert [s.test for s in by_bar] == [(3 * s.test[0], 3 * s.test[1]) for s in by_date]


def test_too_short_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="too short for one 3y:6m split"):
        splits(TS, "3y:6m")
    with pytest.raises(ValueError, match="too short"):
        splits(TS[:0], "1y:6m")
    with pytest.raises(ValueError, match="shorter than test"):
        splits(TS, "1y:6m", step="3m")
    with pytest.raises(ValueError, match="all be bars or all"):
        splits(TS, "1y:6m", step="100b")
    with pytest.raises(ValueError, match="sorted"):
        splits(TS[::-1], "1y:6m")


# --- splits: bar counts ------------------------------------------------------------------------

def test_bar_count_splits() -> None:
    rolling = splits(TS, "252b:126b")
    anchored = splits(TS, "252b:126b", anchored=True)

    # 784 bars: tests start at 252, 378, 504, 630; the next would end at 882 > 784
    assert [(s.train, s.test) for s in rolling] == [
        ((0, 252), (252, 378)), ((126, 378), (378, 504)),
        ((252, 504), (504, 630)), ((378, 630), (630, 756))]
    assert [s.train for s in anchored] == [(0, 252), (0, 378), (0, 504), (0, 630)]
    with pytest.raises(ValueError, match="784 bars"):
        splits(TS, "700b:100b")


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 400), train=st.integers(1, 120), test=st.integers(1, 60),
       extra=st.integers(0, 30), anchored=st.booleans())
def test_bar_splits_properties(n: int, train: int, test: int, extra: int, anchored: bool) -> None:
    step = test + extra
    spec = f"{train}b:{test}b"
    if n < train + test:
        with pytest.raises(ValueError, match="too short"):
            splits(np.arange(n), spec, step=f"{step}b", anchored=anchored)
        return

    out = splits(np.arange(n), spec, step=f"{step}b", anchored=anchored)

    assert len(out) == (n - train - test) // step + 1
    for i, s in enumerate(out):
        (a, b), (c, d) = s.train, s.test
        assert s.index == i and b == c and d - c == test and d <= n
        assert a == 0 if anchored else b - a == train
    assert all(x.test[1] + extra == y.test[0] for x, y in zip(out, out[1:]))


@settings(max_examples=40, deadline=None)
@given(start=st.dates(pd.Timestamp("2000-01-01").date(), pd.Timestamp("2020-01-01").date()),
       years=st.integers(1, 4), train=st.sampled_from(["1y", "6m", "9m", "8w"]),
       test=st.sampled_from(["1m", "3m", "2w", "1y"]), anchored=st.booleans())
def test_calendar_splits_properties(start, years, train, test, anchored) -> None:  # noqa: ANN001
    days = pd.bdate_range(start, periods=261 * years)
    try:
        out = splits(days, f"{train}:{test}", anchored=anchored)
    except ValueError as e:
        assert "too short" in str(e)
        return

    for i, s in enumerate(out):
        (a, b), (c, d) = s.train, s.test
        assert s.index == i and 0 <= a < b == c < d <= len(days)
        assert a == 0 or not anchored
    # weekday data has no gap that could empty a window, so the tests tile exactly
    assert all(x.test[1] == y.test[0] for x, y in zip(out, out[1:]))


# --- choose ------------------------------------------------------------------------------------

def test_choose_best_eligible_lowest_index_on_ties() -> None:
    metrics = {"sharpe": np.array([0.5, 2.0, np.nan, 1.5, 1.5]),
               "trades": np.array([50, 3, 50, 50, 50])}

    assert choose(metrics, "sharpe", min_trades=10) == 3  # 1 has too few trades, 2 is NaN
    assert choose(metrics, "sharpe", min_trades=0) == 1
    assert choose(metrics, "sharpe", min_trades=100) is None
    assert choose(pd.DataFrame(metrics), "sharpe", min_trades=10) == 3


def test_choose_all_objectives_and_errors() -> None:
    cols = {k: np.array([1.0, 3.0, 2.0]) for k in ("sortino", "calmar", "total_return", "expectancy")}
    metrics = {**cols, "trades": np.array([5, 5, 5])}

    assert all(choose(metrics, k, 1) == 1 for k in cols)
    assert choose({"sharpe": [-np.inf, -np.inf], "trades": [9, 9]}, "sharpe", 1) == 0
    with pytest.raises(ValueError, match="did you mean 'sharpe'"):
        choose(metrics, "sharp", 1)
    with pytest.raises(ValueError, match="no 'sharpe' column"):
        choose(metrics, "sharpe", 1)


# --- stitch ------------------------------------------------------------------------------------

def test_stitch_and_metrics_by_hand() -> None:
    parts = [np.array([0.10, -0.05]), np.array([]), np.array([0.02])]

    r = stitch(parts)
    m = stitched_metrics(parts, periods_per_year=252)

    np.testing.assert_array_equal(r, [0.10, -0.05, 0.02])
    assert m.n_obs == 3
    assert m.total_return == pytest.approx(1.10 * 0.95 * 1.02 - 1)  # 0.0659
    assert m.max_drawdown == pytest.approx(1.045 / 1.10 - 1)  # peak 1.10, trough 1.045: -5 %
    assert m.sharpe == pytest.approx(np.mean(r) / np.std(r, ddof=1) * np.sqrt(252))
    assert m.sortino == pytest.approx(np.mean(r) / np.sqrt(0.05 ** 2 / 3) * np.sqrt(252))
    assert m.cagr == pytest.approx((1 + m.total_return) ** (252 / 3) - 1)
    assert m.calmar == pytest.approx(m.cagr / 0.05)
    assert len(stitch([])) == 0 and np.isnan(stitched_metrics([]).sharpe)
    with pytest.raises(ValueError, match="1-D"):
        stitch([np.zeros((2, 2))])
