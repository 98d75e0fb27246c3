"""Derived tables: immutable files behind the manifest, DuckDB views, no partial write on failure."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from data_lake import BarMeta, Feed, Lake, LakeError, connect
from data_lake.manifest import MANIFEST, Manifest
from data_lake.tables import read_table, table_dir, write_table
from tests.kit import minute_bars, tree_digest


def frame(bench: str, values: list[float]) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"benchmark": [bench] * n,
                         "session": pd.date_range("2024-03-04", periods=n, freq="D").date,
                         "label": ["up_low"] * n, "rv": values})


def test_write_then_read_round_trips(lake: Lake):
    rel = write_table(lake, "regimes", "SPY", frame("SPY", [0.1, 0.2]))
    got = read_table(lake, "regimes", "SPY")
    assert got["rv"].tolist() == [0.1, 0.2] and got["label"].tolist() == ["up_low", "up_low"]
    assert rel.startswith("tables/regimes/SPY/part-") and (lake.root / rel).exists()
    assert lake.manifest().tables == {"regimes": {"SPY": rel}}


def test_replace_retires_old_file_and_later_write_collects_it(tmp_path):
    lake = Lake(tmp_path / "lake", grace_seconds=0)
    first = write_table(lake, "regimes", "SPY", frame("SPY", [1.0]))
    second = write_table(lake, "regimes", "SPY", frame("SPY", [2.0]))
    assert read_table(lake, "regimes", "SPY")["rv"].tolist() == [2.0]
    m = lake.manifest()
    assert m.tables["regimes"]["SPY"] == second and first in m.retired
    assert (lake.root / first).exists()  # kept for snapshots taken before the swap
    write_table(lake, "regimes", "QQQ", frame("QQQ", [3.0]))  # any later write collects it
    assert not (lake.root / first).exists() and first not in lake.manifest().retired


def test_duckdb_view_is_the_union_of_keys_next_to_bars(lake: Lake):
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-04"]), BarMeta("test", Feed.CSV))
    write_table(lake, "regimes", "SPY", frame("SPY", [0.1, 0.2]))
    extra = frame("QQQ", [0.3]).assign(note="new column")  # keys may differ in columns
    write_table(lake, "regimes", "QQQ", extra)
    con = connect(lake)
    got = con.execute("SELECT benchmark, count(*) n, count(note) notes FROM regimes GROUP BY 1 ORDER BY 1").fetchall()
    assert got == [("QQQ", 1, 1), ("SPY", 2, 0)]
    assert con.execute("SELECT typeof(session) FROM regimes LIMIT 1").fetchone() == ("DATE",)
    assert con.execute("SELECT count(*) FROM bars").fetchone() == (390,)
    assert read_table(lake, "regimes")["benchmark"].tolist() == ["QQQ", "SPY", "SPY"]


def test_bar_writes_keep_tables(lake: Lake):
    rel = write_table(lake, "regimes", "SPY", frame("SPY", [0.1]))
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-04"]), BarMeta("test", Feed.CSV))
    lake.drop("XYZ", "1Min")
    assert lake.manifest().tables == {"regimes": {"SPY": rel}}
    assert connect(lake).execute("SELECT count(*) FROM regimes").fetchone() == (1,)


def test_failed_file_write_leaves_lake_untouched(lake: Lake, monkeypatch):
    write_table(lake, "regimes", "SPY", frame("SPY", [1.0]))
    before = tree_digest(lake.root)

    def dies_midway(table, fh, **kw):
        fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr("data_lake.atomic.pq.write_table", dies_midway)
    with pytest.raises(OSError, match="disk full"):
        write_table(lake, "regimes", "SPY", frame("SPY", [2.0]))
    assert tree_digest(lake.root) == before  # no temp file, no new file, same manifest
    assert read_table(lake, "regimes", "SPY")["rv"].tolist() == [1.0]


def test_write_killed_before_commit_is_invisible_and_cleaned(lake: Lake, monkeypatch):
    first = write_table(lake, "regimes", "SPY", frame("SPY", [1.0]))
    with monkeypatch.context() as mp:
        mp.setattr(Manifest, "save", lambda self, root: (_ for _ in ()).throw(OSError("killed")))
        with pytest.raises(OSError, match="killed"):
            write_table(lake, "regimes", "SPY", frame("SPY", [2.0]))
    folder = table_dir(lake, "regimes", "SPY")
    assert len(list(folder.iterdir())) == 2  # the uncommitted file is there ...
    assert read_table(lake, "regimes", "SPY")["rv"].tolist() == [1.0]  # ... but nobody sees it
    assert connect(lake).execute("SELECT rv FROM regimes").fetchall() == [(1.0,)]
    third = write_table(lake, "regimes", "SPY", frame("SPY", [3.0]))
    assert sorted(p.name for p in folder.iterdir()) == sorted([first.rsplit("/", 1)[1], third.rsplit("/", 1)[1]])


def test_manifest_without_tables_section_still_loads(lake: Lake):
    lake.write_bars("XYZ", "1Min", minute_bars(["2024-03-04"]), BarMeta("test", Feed.CSV))
    body = json.loads((lake.root / MANIFEST).read_text())
    assert "tables" not in body  # a lake without tables writes the manifest as before
    assert lake.manifest().tables == {}
    write_table(lake, "regimes", "SPY", frame("SPY", [1.0]))
    body = json.loads((lake.root / MANIFEST).read_text())
    assert body["format"] == 1 and list(body["tables"]) == ["regimes"]


@pytest.mark.parametrize("name,key", [("bars", "SPY"), ("Regimes", "SPY"), ("my table", "SPY"),
                                      ("regimes", "../x"), ("regimes", "a/b"), ("regimes", "k=v")])
def test_bad_names_and_keys_refused(lake: Lake, name, key):
    with pytest.raises(LakeError, match="invalid table"):
        write_table(lake, name, key, frame("SPY", [1.0]))
    assert not (lake.root / "tables").exists()


def test_reading_a_missing_table_is_a_clear_error(lake: Lake):
    with pytest.raises(LakeError, match="no table 'regimes'"):
        read_table(lake, "regimes")
    write_table(lake, "regimes", "SPY", frame("SPY", [1.0]))
    with pytest.raises(LakeError, match="key 'QQQ'"):
        read_table(lake, "regimes", "QQQ")


def test_file_is_plain_parquet(lake: Lake):
    rel = write_table(lake, "regimes", "SPY", frame("SPY", [1.0, 2.0]))
    assert pq.read_table(lake.root / rel).num_rows == 2
