"""Gaps against the NYSE calendar."""

from __future__ import annotations

from datetime import date

from data_lake import BarMeta, Feed, Lake
from data_lake.gaps import find_gaps
from tests.kit import minute_bars


def test_complete_sample_has_no_gaps(sample_lake: Lake):
    assert find_gaps(sample_lake).empty


def test_missing_session_and_missing_minutes(lake: Lake):
    bars = minute_bars(["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"])
    keep = ~bars["ts"].dt.date.eq(date(2024, 3, 5))
    keep[1000:1010] = False  # ten minutes of 2024-03-06
    lake.write_bars("XYZ", "1Min", bars[keep].reset_index(drop=True), BarMeta("t", Feed.CSV))
    gaps = find_gaps(lake)
    assert gaps[["session", "found", "missing"]].values.tolist() == [[date(2024, 3, 5), 0, 390], [date(2024, 3, 6), 380, 10]]
