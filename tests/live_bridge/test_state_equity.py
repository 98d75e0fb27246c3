"""The state store's equity marks: one per minute of the broker's clock (the latest read wins), a v4 file
migrated in place with its rows kept, an older file read as it is by a reader, bad values refused."""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from live_bridge.state import SCHEMA_VERSION, StateError, StateStore
from live_bridge.state_equity import minute_us

T0 = datetime(2024, 1, 2, 14, 31, 17, 250_000, tzinfo=UTC)
T0_MIN = int(datetime(2024, 1, 2, 14, 31, tzinfo=UTC).timestamp()) * 1_000_000


def test_marks_are_kept_per_minute_of_the_brokers_clock_latest_read_winning(tmp_path):
    with StateStore(tmp_path / "s.db") as s:
        assert s.mark_equity(T0, 100_000.0, 100_000.0) == T0_MIN
        assert s.mark_equity(T0 + timedelta(seconds=30), 100_012.5, 91_000.0) == T0_MIN  # same minute: replaced
        s.mark_equity(T0 + timedelta(minutes=1), 99_990.0, 91_000.0)
        assert s.equity_marks() == [(T0_MIN, 100_012.5, 91_000.0), (T0_MIN + 60_000_000, 99_990.0, 91_000.0)]
        assert s.equity_marks(since_us=T0_MIN + 1) == [(T0_MIN + 60_000_000, 99_990.0, 91_000.0)]
        with pytest.raises(ValueError, match="not a number"):
            s.mark_equity(T0, math.nan, 1.0)
        with pytest.raises(ValueError, match="naive"):
            s.mark_equity(T0.replace(tzinfo=None), 1.0, 1.0)
        assert s.equity_marks()[0] == (T0_MIN, 100_012.5, 91_000.0)  # the refused writes changed nothing
        assert s.integrity_check().ok
    with StateStore(tmp_path / "s.db", read_only=True) as r:
        assert len(r.equity_marks()) == 2
        with pytest.raises(StateError, match="read-only"):
            r.mark_equity(T0, 1.0, 1.0)
    assert minute_us(datetime(1970, 1, 1, 0, 1, 59, tzinfo=UTC)) == 60_000_000


def _as_version_4(path):
    """A store as schema 4 shipped it: no equity_marks table, version '4'."""
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE equity_marks; UPDATE meta SET value = '4' WHERE key = 'schema_version';")
    db.close()


def test_a_version_4_store_is_migrated_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "s.db"
    with StateStore(path) as s:
        s.record_halt(T0.date(), "account", "day loss", at=T0)
        s.peak_equity(123_456.0)
    _as_version_4(path)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'equity_marks'").fetchone() is None
    raw.close()

    with StateStore(path, read_only=True) as r:  # a reader reads it as it is: no marks, nothing created
        assert r.equity_marks() == [] and r.peak_equity() == 123_456.0
    assert sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("4",)

    with StateStore(path) as s:  # the writer migrates it: the table is there, the old rows kept
        assert s.halts(T0.date()) == {"account": "day loss"} and s.peak_equity() == 123_456.0
        s.mark_equity(T0, 99_000.0, 50_000.0)
        assert s.equity_marks() == [(T0_MIN, 99_000.0, 50_000.0)]
        assert s.integrity_check().ok
    assert SCHEMA_VERSION == 5
    assert sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("5",)
