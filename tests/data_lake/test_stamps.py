"""Dates never shift: UTC-midnight daily stamps, day-first files, and bars from the future (issue 14, 1-3)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data_lake import DataQualityError, Lake, LakeError
from data_lake.schema import Adjustment
from data_lake.sources.files import file_bars, file_meta
from data_lake.sources.sample import sample_bars, sample_meta
from tests.kit import minute_bars

NY_MIDNIGHT = pd.Timestamp("2010-01-05", tz="America/New_York").tz_convert("UTC")
ROWS = [("2010-01-05", 30.49, 30.64, 30.34, 30.63), ("2010-01-06", 30.66, 30.75, 30.11, 30.14),
        ("2010-01-07", 30.25, 30.29, 29.86, 30.08), ("2010-01-08", 30.04, 30.29, 29.87, 30.28)]


def _csv(tmp_path: Path, stamps: list[str], name: str = "bars.csv") -> Path:
    lines = ["Date,Open,High,Low,Close,Volume"]
    lines += [f"{s},{o},{h},{lo},{c},1000" for s, (_, o, h, lo, c) in zip(stamps, ROWS)]
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def _sessions(bars: pd.DataFrame) -> list[str]:
    return [str(d.date()) for d in bars["ts"].dt.tz_convert("America/New_York")]


@pytest.mark.parametrize("suffix", ["T00:00:00Z", "T00:00:00+00:00", " 00:00:00 UTC", "T00:00:00+09:00",
                                    "T00:00:00-05:00", "", "T05:00:00Z", "T16:00:00-05:00", "T21:00:00Z",
                                    "T12:00:00-05:00", "T09:30:00-05:00"])
def test_a_daily_stamp_names_its_session_by_one_rule(tmp_path: Path, suffix: str):
    path = _csv(tmp_path, [d + suffix for d, *_ in ROWS])
    assert _sessions(file_bars(path, "1Day")) == [d for d, *_ in ROWS]


@pytest.mark.parametrize("stamp", ["2010-01-05T22:00:00Z", "2010-01-05T02:00:00Z", "2010-01-05T09:00:00-05:00",
                                   "2010-01-05T23:00:00+09:00", "2010-01-05 17:00"])
def test_a_daily_stamp_that_could_mean_two_days_is_refused(tmp_path: Path, stamp: str):
    path = _csv(tmp_path, ["2010-01-04", stamp, "2010-01-06", "2010-01-07"])
    with pytest.raises(LakeError, match=r"name no session \(first: row 2: " + stamp[:10]):
        file_bars(path, "1Day")


def test_a_naive_daily_time_is_read_in_the_given_zone(tmp_path: Path):
    path = _csv(tmp_path, [d + " 22:00" for d, *_ in ROWS])  # 22:00 in Berlin is 16:00 in New York
    assert _sessions(file_bars(path, "1Day", tz="Europe/Berlin")) == [d for d, *_ in ROWS]
    with pytest.raises(LakeError, match="name no session"):
        file_bars(path, "1Day")  # 22:00 New York: after the close


def test_parquet_datetimes_follow_the_same_rule(tmp_path: Path):
    for stamps in (pd.to_datetime([d for d, *_ in ROWS]).tz_localize("UTC"),  # UTC midnight
                   pd.to_datetime([d for d, *_ in ROWS]).tz_localize("America/New_York").tz_convert("UTC")):
        frame = pd.DataFrame({"ts": stamps, "open": [r[1] for r in ROWS], "high": [r[2] for r in ROWS],
                              "low": [r[3] for r in ROWS], "close": [r[4] for r in ROWS], "volume": 1000.0})
        frame.to_parquet(tmp_path / "bars.parquet")
        assert _sessions(file_bars(tmp_path / "bars.parquet", "1Day")) == [d for d, *_ in ROWS]


def test_utc_midnight_update_replaces_the_same_sessions_not_the_next(tmp_path: Path):
    """The reported failure: an update file stamped 00:00 UTC replaced 4 bars with the next days' values."""
    lake = Lake(tmp_path / "lake")
    aapl = sample_bars("AAPL")
    lake.write_bars("AAPL", "1Day", aapl, sample_meta())
    update = aapl[(aapl["ts"] >= NY_MIDNIGHT) & (aapl["ts"] < NY_MIDNIGHT + pd.Timedelta(days=4))]
    lines = ["timestamp,open,high,low,close,volume"] + [
        f"{t.tz_convert('America/New_York'):%Y-%m-%d}T00:00:00Z,{o},{h},{lo},{c},{v}"
        for t, o, h, lo, c, v in update[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False)]
    (tmp_path / "update.csv").write_text("\n".join(lines) + "\n")
    lake.write_bars("AAPL", "1Day", file_bars(tmp_path / "update.csv", "1Day"),
                    file_meta("update.csv", Adjustment.ALL))  # the sample is adjusted: the update says so too
    after = lake.read_bars("AAPL", "1Day")
    both = after.merge(aapl, on="ts", suffixes=("", "_before"))
    assert len(after) == len(aapl) and (both["close"] == both["close_before"]).all()


DAY_FIRST = ["04/01/2010", "05/01/2010", "06/01/2010", "13/01/2010"]


def test_day_first_is_detected_from_the_whole_column(tmp_path: Path):
    """04/01/2010 is 4 January in a file where 13/01/2010 exists, even though it parses as 1 April."""
    path = _csv(tmp_path, DAY_FIRST)
    assert _sessions(file_bars(path, "1Day")) == ["2010-01-04", "2010-01-05", "2010-01-06", "2010-01-13"]
    month_first = _csv(tmp_path, ["01/04/2010", "01/05/2010", "01/06/2010", "01/13/2010"], "us.csv")
    assert _sessions(file_bars(month_first, "1Day")) == ["2010-01-04", "2010-01-05", "2010-01-06", "2010-01-13"]


def test_a_file_readable_both_ways_needs_a_date_format(tmp_path: Path):
    path = _csv(tmp_path, ["04/01/2010", "05/01/2010", "06/01/2010", "07/01/2010"])
    with pytest.raises(LakeError, match=r"04/01/2010 \(row 1\) read as different days.*--date-format"):
        file_bars(path, "1Day")
    assert _sessions(file_bars(path, "1Day", date_format="%d/%m/%Y")) == [
        "2010-01-04", "2010-01-05", "2010-01-06", "2010-01-07"]
    assert _sessions(file_bars(path, "1Day", date_format="%m/%d/%Y"))[0] == "2010-04-01"


def test_a_file_mixing_both_orders_is_refused(tmp_path: Path):
    path = _csv(tmp_path, ["13/01/2010", "01/14/2010", "01/15/2010", "01/19/2010"])
    with pytest.raises(LakeError, match="mix day-first and month-first: row 1 .* row 2"):
        file_bars(path, "1Day")


def test_intraday_day_first_stamps(tmp_path: Path):
    text = "Datetime,Open,High,Low,Close,Volume\n04/01/2010 09:30,1,1,1,1,1\n13/01/2010 09:31,1,1,1,1,1\n"
    (tmp_path / "m.csv").write_text(text)
    got = file_bars(tmp_path / "m.csv", "1Min", tz="America/New_York")["ts"].dt.tz_convert("America/New_York")
    assert [str(t) for t in got] == ["2010-01-04 09:30:00-05:00", "2010-01-13 09:31:00-05:00"]


def test_cli_day_first_refusal_and_date_format(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from tradelab.cli import app

    path = _csv(tmp_path, ["04/01/2010", "05/01/2010", "06/01/2010", "07/01/2010"])
    args = ["ingest", "csv", str(path), "--symbol", "ABC", "--timeframe", "1Day", "--lake", str(tmp_path / "lake")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--date-format" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "lake" / "_manifest.json").exists()
    bad = CliRunner().invoke(app, [*args, "--date-format", "%Q"])
    assert bad.exit_code == 2 and "--date-format '%Q' is not a usable strptime format" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "lake" / "_manifest.json").exists()
    ok = CliRunner().invoke(app, [*args, "--date-format", "%d/%m/%Y"])
    assert ok.exit_code == 0, ok.output
    assert _sessions(Lake(tmp_path / "lake").read_bars("ABC", "1Day"))[0] == "2010-01-04"


# --- bars from the future ------------------------------------------------------------------------------
def test_future_daily_bars_are_refused_whole_or_quarantined(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TRADELAB_NOW", "2010-01-06T15:00:00Z")  # 10:00 New York on 6 January: in session
    path = _csv(tmp_path, [d for d, *_ in ROWS])
    lake = Lake(tmp_path / "lake")
    with pytest.raises(DataQualityError, match=r"2 of 4 rows .*row 3: after the current session \(2010-01-06\)"):
        lake.write_bars("ABC", "1Day", file_bars(path, "1Day"), file_meta(path))
    assert lake.files() == []
    result = lake.write_bars("ABC", "1Day", file_bars(path, "1Day"), file_meta(path), quarantine=True)
    assert result.rows_quarantined == 2
    assert _sessions(lake.read_bars("ABC", "1Day")) == ["2010-01-05", "2010-01-06"]  # today's partial bar is allowed


def test_future_minute_bars_are_refused(tmp_path: Path, monkeypatch):
    bars = minute_bars(["2024-03-04", "2024-03-05"])
    lake = Lake(tmp_path / "lake")
    monkeypatch.setenv("TRADELAB_NOW", "2024-03-05T08:00:00-05:00")  # before the 5th opens
    with pytest.raises(DataQualityError, match=r"390 of 780 rows .*after the close of the current session \(2024-03-04\)"):
        lake.write_bars("ABC", "1Min", bars, file_meta("x.csv"))
    monkeypatch.setenv("TRADELAB_NOW", "2024-03-05T16:00:00-05:00")
    assert lake.write_bars("ABC", "1Min", bars, file_meta("x.csv")).rows_written == 780


def test_a_bad_test_clock_is_a_clear_error(monkeypatch):
    from data_lake.calendar import now

    monkeypatch.setenv("TRADELAB_NOW", "tomorrow-ish")
    with pytest.raises(LakeError, match="TRADELAB_NOW='tomorrow-ish' is not a timestamp"):
        now()


def test_without_a_test_clock_a_2027_file_is_refused_today(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TRADELAB_NOW", raising=False)
    path = _csv(tmp_path, ["2030-01-07", "2030-01-08", "2030-01-09", "2030-01-10"])
    with pytest.raises(DataQualityError, match="a bar from the future"):
        Lake(tmp_path / "lake").write_bars("ABC", "1Day", file_bars(path, "1Day"), file_meta(path))


# --- history older than 1990 (issue 15, item 1) -------------------------------------------------------
MSFT_1986 = Path(__file__).parent / "fixtures" / "msft_1986.csv"


def test_real_1986_history_imports_whole(tmp_path: Path):
    from typer.testing import CliRunner

    from tradelab.cli import app

    r = CliRunner().invoke(app, ["ingest", "csv", str(MSFT_1986), "--symbol", "MSFT", "--timeframe", "1Day",
                                 "--lake", str(tmp_path / "lake")])
    assert r.exit_code == 0, r.output
    bars = Lake(tmp_path / "lake").read_bars("MSFT", "1Day")
    assert len(bars) == 204 and _sessions(bars)[0] == "1986-03-13" and _sessions(bars)[-1] == "1986-12-31"
    assert bars["close"].iloc[0] == 0.07533


def test_a_date_before_the_calendar_says_so(tmp_path: Path):
    path = tmp_path / "old.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n1962-06-29,1,1,1,1,1\n1962-07-02,1,1,1,1,1\n1962-07-04,1,1,1,1,1\n")
    with pytest.raises(DataQualityError) as err:
        Lake(tmp_path / "lake").write_bars("OLD", "1Day", file_bars(path, "1Day"), file_meta(path))
    assert err.value.report.reasons_by_row() == {
        1: "before the NYSE calendar's first session, 1962-07-02",
        3: "not an NYSE session date (1Day bars are stamped 00:00 New York)"}  # Independence Day


def test_the_calendar_loads_once_and_fast():
    import time

    from data_lake.calendar import nyse

    nyse.cache_clear()
    t0 = time.perf_counter()
    s = nyse()
    assert time.perf_counter() - t0 < 5.0 and nyse() is s
    assert str(s.dates[0].date()) == "1962-07-02" and len(s) > 17_000


def test_holidays_before_1970_are_not_sessions():
    """exchange-calendars (through pandas' holiday calendar) left them in before 1970."""
    from data_lake.calendar import nyse

    dates = set(nyse().dates)
    for holiday in ("1962-07-04", "1962-11-22", "1962-12-25", "1963-01-01", "1965-04-16", "1969-12-25",
                    "1986-07-04", "1986-11-27", "1986-12-25"):
        assert pd.Timestamp(holiday) not in dates, holiday
    for session in ("1962-07-05", "1962-12-24", "1962-12-26", "1969-12-24", "1986-12-24"):
        assert pd.Timestamp(session) in dates, session
    per_year = pd.Series(sorted(dates)).dt.year.value_counts()
    assert per_year.loc[1963:1989].between(230, 256).all(), per_year.loc[1963:1989].to_dict()
