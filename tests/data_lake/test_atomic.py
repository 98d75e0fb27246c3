"""Crash safety of the lake: readers never see a mix, a killed writer leaves no partial partition."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from data_lake import BarMeta, Feed, Lake, connect
from tests.kit import minute_bars

META = BarMeta("test", Feed.CSV)
ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from data_lake import BarMeta, Feed, Lake
    from tests.kit import minute_bars
    import pandas as pd
    lake = Lake({lake!r})
    days = [str(d.date()) for d in pd.bdate_range("2021-01-04", "2023-12-29") if d.strftime("%m-%d") not in {holidays!r}]
    from data_lake.calendar import nyse
    s = set(nyse().dates.strftime("%Y-%m-%d"))
    days = [d for d in days if d in s]
    bars = minute_bars(days, seed={seed})
    print("ready", flush=True)
    lake.write_bars("XYZ", "1Min", bars, BarMeta("test", Feed.CSV))
    print("done", flush=True)
""")


def _writer(lake: Path, seed: int) -> subprocess.Popen:
    code = WRITER.format(root=str(ROOT), lake=str(lake), holidays=[], seed=seed)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_reader_sees_old_or_new_never_a_mix(lake: Lake):
    versions = [minute_bars(["2024-03-04", "2024-03-05"], seed=s, price=p) for s, p in ((1, 50.0), (2, 500.0))]
    lake.write_bars("XYZ", "1Min", versions[0], META)
    closes = [v["close"].to_numpy() for v in versions]
    stop = time.monotonic() + 3.0
    pid = os.fork()
    if pid == 0:  # child: flip the partition between the two versions until told to stop
        try:
            i = 1
            while time.monotonic() < stop:
                Lake(lake.root).write_bars("XYZ", "1Min", versions[i % 2], META)
                i += 1
        finally:
            os._exit(0)
    seen = set()
    while time.monotonic() < stop:
        con = connect(lake)  # a snapshot per query, as `tradelab lake query` takes
        got = con.execute("select close from bars order by ts").fetchnumpy()["close"]
        match = [k for k, c in enumerate(closes) if np.array_equal(got, c)]
        assert match, "a reader saw a partition that is neither the old nor the new version"
        seen.add(match[0])
    os.waitpid(pid, 0)
    assert seen == {0, 1}


def test_kill_9_mid_ingest_leaves_whole_partitions_and_rerun_completes(tmp_path: Path):
    lake = tmp_path / "lake"
    ref = tmp_path / "ref"
    p = _writer(ref, seed=3)
    p.wait(timeout=120)
    expected = {y: pq.read_table(path) for _, _, y, path in Lake(ref).files()}
    assert sorted(expected) == [2021, 2022, 2023]
    for delay in (0.05, 0.15, 0.3, 0.6):
        p = _writer(lake, seed=3)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        landed = {y: pq.read_table(path) for _, _, y, path in Lake(lake).files()}
        assert landed == {} or _closes(landed) == _closes(expected), "a killed ingest left part of a batch"
    p = _writer(lake, seed=3)
    p.wait(timeout=120)
    got = {y: pq.read_table(path) for _, _, y, path in Lake(lake).files()}
    assert _closes(got) == _closes(expected)
    parquet_files = sorted(lake.rglob("*.parquet"))
    assert len(parquet_files) == 3, "orphans of the killed writers were not removed"


def _closes(tables: dict) -> dict:
    return {y: t.select(["ts", "close"]).to_pydict() for y, t in tables.items()}
