"""CSV / Parquet import: column names people use, time zones, and whole-file refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_lake import DataQualityError, Lake, LakeError
from data_lake.schema import Adjustment
from data_lake.sources.files import file_bars, file_meta
from tests.kit import minute_bars, tree_digest

YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
2024-03-04,100.0,101.0,99.0,100.5,50.25,1000
2024-03-05,100.5,102.0,100.0,101.0,50.5,2000
2024-03-06,101.0,101.5,100.2,100.8,50.4,1500
"""


def _write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_yahoo_style_columns_any_case(tmp_path: Path):
    text = YAHOO.replace("Date,Open", "DATE,open").replace("Adj Close", "adj_close")
    bars = file_bars(_write(tmp_path, text), "1Day")
    assert list(bars["close"]) == [100.5, 101.0, 100.8]
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-03-04 05:00", tz="UTC")  # 00:00 New York


def test_adj_close_scales_prices_and_volume(tmp_path: Path):
    bars = file_bars(_write(tmp_path, YAHOO), "1Day", adjustment=Adjustment.ALL)
    assert bars["close"].tolist() == pytest.approx([50.25, 50.5, 50.4])
    assert bars["open"].iloc[0] == pytest.approx(50.0) and bars["volume"].iloc[0] == pytest.approx(2000)


def test_one_bad_row_refuses_whole_file_and_lake_unchanged(tmp_path: Path):
    lake = Lake(tmp_path / "lake")
    lake.write_bars("ABC", "1Day", file_bars(_write(tmp_path, YAHOO, "good.csv"), "1Day"), file_meta("good.csv"))
    before = tree_digest(lake.root)
    bad = YAHOO.replace("2024-03-05,100.5,102.0,100.0", "2024-03-05,100.5,99.0,100.0") + "2024-03-07,1,1,1,1,1,1\n"
    path = _write(tmp_path, bad, "bad.csv")
    with pytest.raises(DataQualityError) as exc:
        lake.write_bars("ABC", "1Day", file_bars(path, "1Day"), file_meta(path), what="bad.csv")
    assert "bad.csv: refused, 1 of 4 rows are bad (first: row 2: high < low" in str(exc.value)
    assert tree_digest(lake.root) == before


def test_unparseable_values_are_named_by_row(tmp_path: Path):
    text = YAHOO.replace("2024-03-06,101.0", "2024-03-06,abc").replace("2024-03-05", "not a date")
    got = __import__("data_lake").check_bars(file_bars(_write(tmp_path, text), "1Day"), "1Day").reasons_by_row()
    assert "open is NaN or infinite" in got[3] and "missing timestamp" in got[2]


def test_naive_intraday_needs_tz(tmp_path: Path):
    text = "Datetime,Open,High,Low,Close,Volume\n2024-03-04 09:30:00,1,2,0.5,1.5,10\n"
    with pytest.raises(LakeError, match="--tz"):
        file_bars(_write(tmp_path, text), "1Min")
    bars = file_bars(_write(tmp_path, text), "1Min", tz="America/New_York")
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-03-04 14:30", tz="UTC")


def test_missing_column_is_named(tmp_path: Path):
    with pytest.raises(LakeError, match="no column for volume"):
        file_bars(_write(tmp_path, "Date,Open,High,Low,Close\n2024-03-04,1,1,1,1\n"), "1Day")


def test_parquet_input_round_trips(tmp_path: Path):
    bars = minute_bars(["2024-03-04"])
    src = bars.rename(columns=str.title).rename(columns={"Ts": "Timestamp"})
    path = tmp_path / "m.parquet"
    src.to_parquet(path)
    got = file_bars(path, "1Min")
    assert np.array_equal(got["close"], bars["close"]) and got["ts"].equals(bars["ts"].dt.as_unit("us"))


def test_a_named_pipe_or_a_folder_is_refused_not_read(tmp_path: Path):
    import os

    from data_lake.schema import LakeError
    from data_lake.sources.files import file_bars

    pipe = tmp_path / "bars.csv"
    os.mkfifo(pipe)  # reading it would block forever
    for path in (pipe, tmp_path):
        with pytest.raises(LakeError, match="not a regular file"):
            file_bars(path, "1Day")
