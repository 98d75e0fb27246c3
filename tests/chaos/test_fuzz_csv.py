"""Fuzzing the CSV import (issue 7, bad input): `tradelab ingest csv` refuses bad files cleanly.

Each example is a valid bar file (5 NYSE sessions of 1Day bars, or 5 minutes of 1Min bars with
naive stamps and ``--tz``, or stamps carrying their UTC offset) broken in one to four ways:
headers dropped, renamed, repeated or swapped; cells made non-numeric, NaN, inf, negative, huge
or non-ASCII; timestamps made unparseable, off-calendar, or given other offsets; rows repeated,
swapped or cut; the bytes truncated, made binary, or not UTF-8. The command runs in-process on a
fresh copy of a lake that already holds bars of the same symbol. It must either accept the file
(then everything now in the lake passes the quality gate) or end with exit code 2 and an
``error: ...`` line, the lake's files unchanged byte for byte. Never a traceback.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from data_lake import Lake, check_bars
from data_lake.calendar import nyse
from data_lake.sources.files import file_meta
from tests.chaos.test_fuzz_cli import assert_user_error, invoke
from tests.kit import minute_bars, tree_digest

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SESSIONS = ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"]
HEADER = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume", "VWAP", "Trades"]
BAD_NUMBERS = ["", " ", "nan", "NaN", "inf", "-inf", "Infinity", "-1", "0", "-0.0", "1e309", "-1e309", "9" * 400,
               "1e308", "abc", "１０", "٣", "1,5", "0x10", "None", "null", "true", "1e-320", "10.5.1", "+-1", "€12"]
BAD_STAMPS = ["", "yesterday", "2024-02-30", "2024-03-09", "2024-13-01", "0000-01-01", "9999-12-31", "1677-09-21",
              "2262-04-12", "99999-03-04", "1709510400", "2024-03-04T00:00:00+01:00", "2024-03-05 00:00:00-05:00",
              "2024-03-04T09:30:00Z", "2024-03-04T09:30:00-04:00", "2024-03-04 09:30:00 UTC", "2024-03-04 25:00",
              "2024-03-04T09:30:00.5", "04/03/2024", "March 4 2024", "2024-03-04T09:30:00+14:00", "\u0662\u0660\u0662\u0664"]


def _row(i: int, stamp: str) -> list[str]:
    o = 100.0 + i
    return [stamp, f"{o}", f"{o + 1}", f"{o - 1}", f"{o + 0.5}", f"{(o + 0.5) / 2}", f"{1000 + i}", f"{o + 0.2}",
            f"{10 + i}"]


def _stamps(kind: str) -> list[str]:
    if kind == "1Day":
        return SESSIONS
    minutes = pd.date_range("2024-03-04 09:30", periods=5, freq="1min")
    if kind == "1Min naive":
        return [f"{t:%Y-%m-%d %H:%M:%S}" for t in minutes]
    return [f"{t:%Y-%m-%dT%H:%M:%S}-05:00" for t in minutes]  # 1Min with offsets


def _render(header: list[str], rows: list[list[str]], sep: str = ",", eol: str = "\n") -> str:
    return eol.join(sep.join(r) for r in [header, *rows]) + eol


@st.composite
def bad_files(draw) -> tuple[bytes, str, tuple[str, ...]]:
    """(file bytes, timeframe, extra CLI options): a valid file broken in 1-4 ways."""
    kind = draw(st.sampled_from(["1Day", "1Min naive", "1Min offsets"]))
    header = list(HEADER)
    rows = [_row(i, s) for i, s in enumerate(_stamps(kind))]
    byte_ops = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop column", "rename column", "repeat column", "swap columns", "cell",
                                   "stamp", "repeat row", "swap rows", "drop rows", "ragged", "bytes"]))
        col = draw(st.integers(0, len(header) - 1)) if header else 0
        if op == "drop column" and header:
            del header[col]
            rows = [r[:col] + r[col + 1:] for r in rows]
        elif op == "rename column" and header:
            header[col] = draw(st.sampled_from(["", "open", "OPEN ", "Öpen", "Date.1", "ts", "t", "vol", "Close"])
                               | st.text(max_size=8))
        elif op == "repeat column" and header:
            header.append(header[col])
            rows = [r + [r[col] if col < len(r) else ""] for r in rows]
        elif op == "swap columns" and len(header) > 1:
            other = draw(st.integers(0, len(header) - 1))
            header[col], header[other] = header[other], header[col]
        elif op in ("cell", "stamp") and rows:
            i = draw(st.integers(0, len(rows) - 1))
            j = 0 if op == "stamp" else draw(st.integers(0, max(len(rows[i]) - 1, 0)))
            pool = BAD_STAMPS if op == "stamp" else BAD_NUMBERS
            value = draw(st.sampled_from(pool) | st.floats().map(repr) | st.integers().map(str) | st.text(max_size=6))
            if j < len(rows[i]):
                rows[i][j] = value
        elif op == "repeat row" and rows:
            rows.insert(draw(st.integers(0, len(rows))), list(rows[draw(st.integers(0, len(rows) - 1))]))
        elif op == "swap rows" and len(rows) > 1:
            i, k = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(rows) - 1))
            rows[i], rows[k] = rows[k], rows[i]
        elif op == "drop rows":
            rows = rows[draw(st.integers(0, len(rows))):]
        elif op == "ragged" and rows:
            i = draw(st.integers(0, len(rows) - 1))
            rows[i] = rows[i][:draw(st.integers(0, len(rows[i])))] + draw(st.lists(st.sampled_from(["1", ""]), max_size=2))
        elif op == "bytes":
            byte_ops.append(draw(st.sampled_from(["truncate", "binary", "latin-1", "utf-16", "bom", "crlf",
                                                  "semicolons", "empty", "nul", "invalid utf-8"])))
    sep = ";" if "semicolons" in byte_ops else ","
    text = _render(header, rows, sep, "\r\n" if "crlf" in byte_ops else "\n")
    data = text.encode("utf-16" if "utf-16" in byte_ops else "latin-1" if "latin-1" in byte_ops else "utf-8",
                       errors="replace")
    for op in byte_ops:
        if op == "truncate":
            data = data[:draw(st.integers(0, len(data)))]
        elif op == "binary":
            data = draw(st.binary(min_size=1, max_size=200))
        elif op == "bom":
            data = b"\xef\xbb\xbf" + data
        elif op == "empty":
            data = b""
        elif op in ("nul", "invalid utf-8"):
            at = draw(st.integers(0, len(data)))
            data = data[:at] + (b"\x00" if op == "nul" else b"\xff\xfe\xc3") + data[at:]
    timeframe = "1Day" if kind == "1Day" else "1Min"
    opts = ("--tz", "America/New_York") if kind == "1Min naive" else ()
    opts += draw(st.sampled_from([(), ("--quarantine",), ("--adjustment", "all"), ("--adjustment", "all", "--quarantine")]))
    return data, timeframe, opts


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake already holding FZ bars (1Day in Jan-Feb 2024, 1Min on 2024-03-01): a refusal must not touch them."""
    root = tmp_path_factory.mktemp("csv") / "lake"
    sessions = nyse().slice("2024-01-02", "2024-02-29")
    daily = minute_bars(["2024-03-01"]).iloc[: len(sessions)]
    daily = daily.assign(ts=pd.to_datetime(sessions.day_us, unit="us", utc=True))
    Lake(root).write_bars("FZ", "1Day", daily, file_meta("seed.csv"))
    Lake(root).write_bars("FZ", "1Min", minute_bars(["2024-03-01"]), file_meta("seed.csv"))
    return root


def _ingest(template: Path, data: bytes, timeframe: str, opts: tuple[str, ...], chaos) -> None:
    chaos["inputs_fuzzed"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        shutil.copytree(template, root)
        path = Path(tmp) / "bars.csv"
        path.write_bytes(data)
        before = tree_digest(root)

        r = invoke("ingest", "csv", str(path), "--symbol", "FZ", "--timeframe", timeframe, *opts, "--lake", str(root))
        event(f"exit {r.exit_code}")  # --hypothesis-show-statistics: how many were accepted

        if r.exit_code == 0:  # accepted: whatever reached the lake passes the gate
            lake = Lake(root)
            for tf in ("1Day", "1Min"):
                bars = lake.read_bars("FZ", tf)
                assert check_bars(bars, tf).ok, (tf, check_bars(bars, tf).summary())
                assert (bars["trade_count"].dropna() >= 0).all()
        else:
            assert_user_error(r)
            assert tree_digest(root) == before, "a refused file changed the lake"


@pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy's overflow warnings on stderr are noise, not names
@settings(FUZZ, max_examples=250)
@given(bad_files())
# regressions: each crashed or wrote garbage before the fix
@example((_render(["Date", "Open", "High", "Low", "Close", "Volume"], [  # mixed offsets: crashed (pandas ValueError)
    ["2024-03-04T00:00:00-05:00", "10", "11", "9", "10", "100"], ["2024-03-05T00:00:00+01:00", "10", "11", "9", "10", "100"]]
).encode(), "1Day", ()))
@example((_render(["Datetime", "Open", "High", "Low", "Close", "Volume"], [  # a DST change inside the file: crashed
    ["2024-03-08T15:59:00-05:00", "10", "11", "9", "10", "100"], ["2024-03-11T09:30:00-04:00", "10", "11", "9", "10", "100"]]
).encode(), "1Min", ()))
@example((_render(["Datetime", "Open", "High", "Low", "Close", "Volume"], [  # offsets and none mixed: crashed
    ["2024-03-04T09:30:00-05:00", "10", "11", "9", "10", "100"], ["2024-03-04 09:31:00", "10", "11", "9", "10", "100"]]
).encode(), "1Min", ("--tz", "America/New_York")))
@example((b"Date,Open,High,Low,Close,Volume,Trades\n2024-03-04,10,11,9,10,100,1e30\n", "1Day", ()))  # int64 garbage
@example((b"Date,Open,High,Low,Close,Volume,Trades\n2024-03-04,10,11,9,10,100,inf\n", "1Day", ()))  # int64 garbage
@example((b"Date,Open,Open,High,Low,Close,Volume\n2024-03-04,10,99,11,9,10,100\n", "1Day", ()))  # second Open ignored
@example((_render(HEADER, [_row(1, "2024-03-05"), _row(0, "2024-03-04"), _row(0, "2024-03-04"), _row(1, "2024-03-05"),
                          _row(2, "2024-03-06")]).encode(), "1Day", ("--quarantine",)))  # wrote 03-05 twice
@example((_render(HEADER, [_row(0, "2024-03-04"), _row(0, "2024-03-04"), _row(1, "2024-03-05")]).encode(), "1Day",
          ("--adjustment", "all", "--quarantine")))  # quarantined rows, then refused the batch (raw lake)
def test_bad_csv_is_refused_cleanly_and_the_lake_is_unchanged(template: Path, chaos, case):
    data, timeframe, opts = case
    _ingest(template, data, timeframe, opts, chaos)


def test_bytes_timestamps_in_parquet_are_refused(template: Path, tmp_path: Path, chaos):
    """A Parquet file whose date column holds non-UTF-8 bytes crashed (UnicodeDecodeError)."""
    path = tmp_path / "bars.parquet"
    pd.DataFrame({"Date": [b"\xff", b"\x00"], "Open": [10.0, 10], "High": [11.0, 11], "Low": [9.0, 9],
                  "Close": [10.0, 10], "Volume": [100.0, 100]}).to_parquet(path)
    root = tmp_path / "lake"
    shutil.copytree(template, root)
    before = tree_digest(root)
    chaos["inputs_fuzzed"] += 1

    r = invoke("ingest", "csv", str(path), "--symbol", "FZ", "--timeframe", "1Day", "--lake", str(root))

    assert_user_error(r, "timestamp column 'Date' holds bytes that are not text")
    assert tree_digest(root) == before


@pytest.mark.parametrize("text, tf, opts, message", [
    ("Datetime,Open,High,Low,Close,Volume\n2024-03-04T09:30:00-05:00,10,11,9,10,100\n2024-03-04 09:31:00,10,11,9,10,100\n",
     "1Min", ("--tz", "America/New_York"), "timestamps mix UTC offsets and none (row 1 has one, row 2 has none)"),
    ("Date,Open,Open,High,Low,Close,Volume\n2024-03-04,10,99,11,9,10,100\n", "1Day", (),
     "ambiguous columns for open: Open, Open.1"),
    ("Date,Open,High,Low,Close,Volume,Trades\n2024-03-04,10,11,9,10,100,inf\n", "1Day", (),
     "row 1: trade_count is infinite or too large"),
    ("Date,Open,High,Low,Close,Volume\n2024-03-04,10,11,9,10,100\u00e9\n", "1Day", (),  # written as Latin-1
     "cannot read bars.csv: not UTF-8 text (byte 0xe9); save it as UTF-8"),
])
def test_the_fixed_inputs_name_their_problem(tmp_path: Path, chaos, text, tf, opts, message):
    chaos["inputs_fuzzed"] += 1
    path = tmp_path / "bars.csv"
    path.write_bytes(text.encode("latin-1"))

    r = invoke("ingest", "csv", str(path), "--symbol", "FZ", "--timeframe", tf, *opts, "--lake", str(tmp_path / "lake"))

    assert_user_error(r, message)
    assert not (tmp_path / "lake").exists()


def test_quarantine_keeps_no_duplicate_after_dropping_bad_rows(tmp_path: Path, chaos):
    """[03-05, 03-04, 03-05, 03-06]: row 3 is checked against row 1, not only row 2 (it was written twice)."""
    chaos["inputs_fuzzed"] += 1
    path = tmp_path / "bars.csv"
    path.write_text(_render(HEADER, [_row(1, "2024-03-05"), _row(0, "2024-03-04"), _row(1, "2024-03-05"),
                                     _row(2, "2024-03-06")]))

    r = invoke("ingest", "csv", str(path), "--symbol", "FZ", "--timeframe", "1Day", "--quarantine",
               "--lake", str(tmp_path / "lake"))

    assert r.exit_code == 0, r.output
    assert "row 2: timestamp out of order" in r.stdout and "row 3: duplicate timestamp" in r.stdout
    got = Lake(tmp_path / "lake").read_bars("FZ", "1Day")["ts"].dt.strftime("%Y-%m-%d").tolist()
    assert got == ["2024-03-05", "2024-03-06"]


def test_offsets_across_a_dst_change_are_read_as_utc(tmp_path: Path, chaos):
    chaos["inputs_fuzzed"] += 1
    path = tmp_path / "bars.csv"
    path.write_text(_render(["Datetime", "Open", "High", "Low", "Close", "Volume"], [
        ["2024-03-08T15:59:00-05:00", "10", "11", "9", "10", "100"], ["2024-03-11T09:30:00-04:00", "10", "11", "9", "10", "100"]]))

    r = invoke("ingest", "csv", str(path), "--symbol", "FZ", "--timeframe", "1Min", "--lake", str(tmp_path / "lake"))

    assert r.exit_code == 0, r.output
    got = Lake(tmp_path / "lake").read_bars("FZ", "1Min")["ts"].tolist()
    assert got == [pd.Timestamp("2024-03-08 20:59", tz="UTC"), pd.Timestamp("2024-03-11 13:30", tz="UTC")]


# --- dates are never shifted (issue 14, items 1-3) ----------------------------------------------------
GOOD_STYLES = {  # each names the session it is given for, by the rule in data_lake/sources/stamps.py
    "iso": lambda d: f"{d:%Y-%m-%d}",
    "utc midnight": lambda d: f"{d:%Y-%m-%d}T00:00:00Z",
    "utc midnight +00:00": lambda d: f"{d:%Y-%m-%d} 00:00:00+00:00",
    "tokyo midnight": lambda d: f"{d:%Y-%m-%d}T00:00:00+09:00",
    "new york midnight in utc": lambda d: f"{d.tz_localize('America/New_York').tz_convert('UTC'):%Y-%m-%dT%H:%M:%SZ}",
    "new york close": lambda d: (d + pd.Timedelta(hours=16)).tz_localize("America/New_York").isoformat(),
    "new york close in utc": lambda d: f"{(d + pd.Timedelta(hours=16)).tz_localize('America/New_York').tz_convert('UTC'):%Y-%m-%dT%H:%M:%SZ}",
    "day first": lambda d: f"{d:%d/%m/%Y}",
    "month first": lambda d: f"{d:%m/%d/%Y}",
}
BAD_STYLES = {  # times that could mean two days
    "utc 02:00": lambda d: f"{d:%Y-%m-%d}T02:00:00Z",
    "new york 18:00": lambda d: (d + pd.Timedelta(hours=18)).tz_localize("America/New_York").isoformat(),
    "new york 08:00": lambda d: f"{d:%Y-%m-%d} 08:00",
}
FORMATS = {"day first": "%d/%m/%Y", "month first": "%m/%d/%Y"}


@st.composite
def dated_files(draw) -> tuple[bytes, tuple[str, ...], list[pd.Timestamp], bool]:
    """(file, options, the session each row is given for, whether a row must be refused)."""
    pool = nyse().slice("2009-01-02", "2012-12-31").dates
    picks = sorted(set(draw(st.lists(st.integers(0, len(pool) - 1), min_size=2, max_size=8))))
    dates = [pool[i] for i in picks]
    future = draw(st.booleans()) and draw(st.booleans())
    if future:  # sessions that have not happened yet (the calendar carries them)
        dates.append(nyse().slice("2029-01-02", "2029-12-31").dates[draw(st.integers(0, 200))])
    style = draw(st.sampled_from(sorted(GOOD_STYLES)))
    rows = [[GOOD_STYLES[style](d), *_row(i, "")[1:]] for i, d in enumerate(dates)]
    bad = False
    if draw(st.integers(0, 4)) == 0:
        i = draw(st.integers(0, len(rows) - 1))
        rows[i][0] = BAD_STYLES[draw(st.sampled_from(sorted(BAD_STYLES)))](dates[i])
        bad = True
    opts = ("--date-format", FORMATS[style]) if style in FORMATS and draw(st.booleans()) else ()
    opts += draw(st.sampled_from([(), ("--quarantine",)]))
    return _render(HEADER, rows).encode(), opts, dates, bad or future


@settings(FUZZ, max_examples=120)
@given(dated_files())
def test_a_bar_lands_on_the_session_it_is_given_for_or_is_refused(tmp_path: Path, chaos, case):
    data, opts, dates, must_refuse = case
    chaos["inputs_fuzzed"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path, root = Path(tmp) / "bars.csv", Path(tmp) / "lake"
        path.write_bytes(data)
        r = invoke("ingest", "csv", str(path), "--symbol", "FZ", "--timeframe", "1Day", *opts, "--lake", str(root))
        if r.exit_code != 0:
            assert_user_error(r)
            assert not (root / "_manifest.json").exists(), "a refused file changed the lake"
            return
        stored = Lake(root).read_bars("FZ", "1Day")
        given_for = {100.5 + i: d for i, d in enumerate(dates)}  # each row's close is unique
        for ts, close in zip(stored["ts"], stored["close"]):
            assert ts.tz_convert("America/New_York").tz_localize(None) == given_for[close], (data, ts, close)
        assert len(stored) < len(dates) if must_refuse else len(stored) == len(dates)
