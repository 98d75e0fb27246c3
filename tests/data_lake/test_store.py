"""The bar store: layout, idempotent and atomic writes, range replacement, quarantine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_lake import BarMeta, DataQualityError, Feed, Lake, LakeError
from data_lake.schema import Adjustment
from data_lake.sources.sample import sample_bars, sample_meta
from tests.kit import minute_bars, tree_digest

META = BarMeta(source="test", feed=Feed.CSV)


def test_partitions_one_file_per_symbol_timeframe_year(lake: Lake):
    lake.write_bars("AAPL", "1Day", sample_bars("AAPL"), sample_meta())
    files = lake.files("AAPL", "1Day")
    assert [y for _, _, y, _ in files] == list(range(2000, 2014))
    assert files[0][3].parent == lake.root / "bars/timeframe=1Day/symbol=AAPL/year=2000"
    assert files[0][3].name.startswith("part-") and files[0][3].suffix == ".parquet"


def test_superseded_files_live_out_their_grace_then_go(tmp_path):
    lake = Lake(tmp_path / "lake", grace_seconds=0)
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-04"], seed=1), META)
    first = lake.files()[0][3]
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-04"], seed=2), META)
    second = lake.files()[0][3]
    assert first.exists()  # retired, still readable by snapshots taken before the swap
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-05"], seed=2), META)
    assert not first.exists() and second.exists()
    assert lake.manifest().retired.keys() == {str(second.relative_to(lake.root))}


def test_orphans_of_a_killed_writer_are_removed(lake: Lake):
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-04"]), META)
    folder = lake.files()[0][3].parent
    (folder / "part-99999999-dead.parquet").write_bytes(b"half a file")
    (folder / ".part-x.parquet.tmp-1-abc").write_bytes(b"temp")
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-05"]), META)
    left = {str(p.relative_to(lake.root)) for p in folder.iterdir()}
    assert left == lake.manifest().known()  # the current file and the retired one; no orphans


def test_same_ingest_twice_changes_no_byte(lake: Lake):
    bars = minute_bars(["2024-03-04", "2024-03-05"])
    lake.write_bars("XYZ", "1Min", bars, META)
    before = tree_digest(lake.root)
    again = lake.write_bars("XYZ", "1Min", bars, META)
    assert tree_digest(lake.root) == before
    assert again.rows_written == 0 and again.partitions_written == []


def test_overlapping_range_replaces_and_never_duplicates(lake: Lake):
    days = ["2024-03-04", "2024-03-05", "2024-03-06"]
    lake.write_bars("XYZ", "1Min", minute_bars(days[:2], seed=1), META)
    newer = minute_bars(days[1:], seed=2)
    result = lake.write_bars("XYZ", "1Min", newer, META)
    got = lake.read_bars("XYZ", "1Min")
    assert result.rows_replaced == 390
    assert len(got) == 3 * 390 and got["ts"].is_unique and got["ts"].is_monotonic_increasing
    # the overlapping day now holds the newer values, the older day is kept
    pd.testing.assert_series_equal(got["close"].iloc[390:].reset_index(drop=True), newer["close"], check_names=False)
    assert np.array_equal(got["close"].iloc[:390], minute_bars(days[:2], seed=1)["close"].iloc[:390])


def test_write_spanning_years_splits_partitions(lake: Lake):
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-12-31", "2025-01-02"]), META)
    assert [y for _, _, y, _ in lake.files("XYZ", "1Min")] == [2024, 2025]
    assert len(lake.load_arrays("XYZ", "1Min", "2025-01-01", "2026-01-01")["ts"]) == 390


def test_bad_batch_writes_nothing(lake: Lake):
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-04"]), META)
    before = tree_digest(lake.root)
    bad = minute_bars(["2024-03-05"])
    bad.loc[100, "high"] = bad.loc[100, "low"] - 1
    with pytest.raises(DataQualityError, match="row 101: high < low"):
        lake.write_bars("XYZ", "1Min", bad, META)
    assert tree_digest(lake.root) == before


def test_quarantine_keeps_bad_rows_aside_and_writes_good(lake: Lake):
    bad = minute_bars(["2024-03-05"])
    bad.loc[5, "volume"] = -1
    result = lake.write_bars("XYZ", "1Min", bad, META, quarantine=True)
    assert result.rows_quarantined == 1 and len(lake.read_bars("XYZ", "1Min")) == 389
    from data_lake import query
    q = query(lake, "select row, reason, volume from quarantine")
    assert q.to_dict("records") == [{"row": 6, "reason": "negative volume", "volume": -1.0}]


def test_adjustments_are_not_mixed(lake: Lake):
    lake.write_bars("AAPL", "1Day", sample_bars("AAPL"), sample_meta(Adjustment.ALL))
    with pytest.raises(LakeError, match="adjustment=all"):
        lake.write_bars("AAPL", "1Day", sample_bars("AAPL", Adjustment.RAW), sample_meta(Adjustment.RAW))


def test_no_temp_files_left_and_partition_readable(lake: Lake):
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-04"]), META)
    assert not [p for p in lake.root.rglob("*") if ".tmp-" in p.name]


def test_load_arrays_matches_read_bars(lake: Lake):
    bars = minute_bars(["2024-03-04", "2024-03-05"])
    lake.write_bars("XYZ", "1Min", bars, META)
    arr = lake.load_arrays("XYZ", "1Min", "2024-03-05", "2024-03-06")
    assert len(arr["ts"]) == 390
    assert np.array_equal(arr["close"], bars["close"].to_numpy()[390:])
    assert arr["ts"][0] == pd.Timestamp("2024-03-05 14:30", tz="UTC").value // 1000


def test_invalid_symbol_and_timeframe_are_named(lake: Lake):
    with pytest.raises(LakeError, match="invalid symbol"):
        lake.write_bars("../etc", "1Day", sample_bars("AAPL"), META)
    with pytest.raises(LakeError, match="unknown timeframe '2Day'"):
        lake.read_bars("AAPL", "2Day")


def test_write_many_is_one_commit_and_one_bad_batch_refuses_all(lake: Lake):
    from data_lake import Batch

    good = [Batch(s, "1Min", minute_bars(["2024-03-04"], seed=i), META) for i, s in enumerate(("AAA", "BBB"))]
    bad_frame = minute_bars(["2024-03-04"], seed=9)
    bad_frame.loc[7, "open"] = np.nan
    before = tree_digest(lake.root) if lake.root.exists() else {}
    with pytest.raises(DataQualityError, match="CCC 1Min: refused.*row 8: open is NaN"):
        lake.write_many([*good, Batch("CCC", "1Min", bad_frame, META)])
    assert (tree_digest(lake.root) if lake.root.exists() else {}) == before
    result = lake.write_many(good)
    assert result.rows_written == 780 and lake.manifest().generation == 1
    with pytest.raises(LakeError, match="two batches for AAA 1Min"):
        lake.write_many([good[0], good[0]])
