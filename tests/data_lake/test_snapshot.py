"""One lake state per job, and nothing left behind by a killed writer (issue 14, items 4 and 5)."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data_lake import Batch, Lake
from data_lake.manifest import READERS, Manifest
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.sweep import run_sweep
from research.exits import ExitRules
from research.sweep.plan import SweepSpec

SIX = ("AAPL", "MSFT", "IBM", "GOOG", "AMZN", "NFLX")
ROOT = Path(__file__).resolve().parents[2]


def _bars(symbol: str, scale: float = 1.0) -> pd.DataFrame:
    base = {"AMZN": "AAPL", "NFLX": "MSFT"}.get(symbol, symbol)  # the sample holds five symbols
    f = sample_bars(base)
    f = f[f["ts"] >= pd.Timestamp("2008-01-01", tz="UTC")].reset_index(drop=True)
    for c in ("open", "high", "low", "close"):
        f[c] = f[c] * scale
    return f


def _write_all(lake: Lake, scale: float) -> None:
    lake.write_many([Batch(s, "1Day", _bars(s, scale), sample_meta()) for s in SIX])


def _closes(lake: Lake) -> dict[str, float]:
    return {s: float(lake.load_arrays(s, "1Day")["close"][-1]) for s in SIX}


def test_a_snapshot_reads_one_state_for_every_symbol(tmp_path: Path):
    lake = Lake(tmp_path / "lake", grace_seconds=0.0)
    _write_all(lake, 1.0)
    old = _closes(lake)
    snap = lake.snapshot()
    assert snap.snapshot() is snap and "snapshot of generation 1" in repr(snap)
    _write_all(lake, 2.0)  # one commit replaces all six, and retires the files the snapshot reads
    assert _closes(snap) == old  # the snapshot: every symbol old, although the grace is 0
    assert _closes(lake) == {s: 2 * v for s, v in old.items()}  # the live lake: every symbol new
    assert _closes(lake.snapshot()) == _closes(lake)


def test_a_lease_holds_retired_files_until_its_snapshot_goes(tmp_path: Path):
    lake = Lake(tmp_path / "lake", grace_seconds=0.0)
    _write_all(lake, 1.0)
    snap = lake.snapshot()
    held = {p for *_, p in snap.files()}
    _write_all(lake, 2.0)
    _write_all(lake, 3.0)  # this write collects: the snapshot's files stay (its lease), the middle ones go
    assert all(p.exists() for p in held)
    assert len(list(lake.root.rglob("*.parquet"))) == 3 * len(held)  # snapshot's, middle (retired after), new
    del snap
    gc.collect()
    assert not list((lake.root / READERS).iterdir())  # the lease went with the snapshot
    _write_all(lake, 4.0)
    assert not any(p.exists() for p in held)
    assert len(list(lake.root.rglob("*.parquet"))) == 2 * len(held)  # the current and the just-retired


def test_a_dead_process_lease_holds_nothing(tmp_path: Path):
    lake = Lake(tmp_path / "lake", grace_seconds=0.0)
    _write_all(lake, 1.0)
    code = "import sys; from data_lake import Lake; s = Lake(sys.argv[1]).snapshot(); import os; os._exit(0)"
    subprocess.run([sys.executable, "-c", code, str(lake.root)], check=True, cwd=ROOT)
    assert len(list((lake.root / READERS).iterdir())) == 1  # killed before it could release
    held = {p for *_, p in lake.files()}
    _write_all(lake, 2.0)
    _write_all(lake, 3.0)
    assert not any(p.exists() for p in held) and not list((lake.root / READERS).iterdir())


class _IngestMidJob(Lake):
    """A lake whose first bar read lets an ingest commit new bars for all six symbols (the reported race)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fired: list[bool] = []  # shared with the job's snapshot (a shallow copy)

    def load_arrays(self, *args, **kwargs):
        if not self.fired:
            self.fired.append(True)
            _write_all(Lake(self.root), 2.0)
        return super().load_arrays(*args, **kwargs)


def _spec() -> SweepSpec:
    return SweepSpec(strategy="sma_cross", symbols=SIX, grid=(("fast", (5, 10)), ("slow", (20, 50))),
                     rules=(ExitRules(allow_short=False),), fees=0.001)


def test_a_sweep_started_before_an_ingest_commit_reads_the_old_lake_for_every_symbol(tmp_path: Path):
    raced = _IngestMidJob(tmp_path / "raced")
    _write_all(raced, 1.0)
    old = Lake(tmp_path / "old")
    _write_all(old, 1.0)
    got = run_sweep(raced, _spec())
    want = run_sweep(old, _spec())
    assert raced.fired and _closes(Lake(raced.root))["AAPL"] == 2 * _closes(old)["AAPL"]  # the ingest landed
    assert got["sweep_id"].iloc[0] == want["sweep_id"].iloc[0]  # the id names the state the rows came from
    cols = ["symbol", "combo", "split", "regime"]
    a, b = (f.sort_values(cols).reset_index(drop=True) for f in (got, want))
    assert np.allclose(a["sharpe"].to_numpy(), b["sharpe"].to_numpy(), equal_nan=True)


def test_the_nightly_takes_one_snapshot_for_regimes_sweeps_and_provenance(tmp_path: Path):
    from pipeline.nightly import NightlyConfig, nightly
    from research.params import RunInfo
    from research.sweep.plan import bars_hash

    raced = _IngestMidJob(tmp_path / "raced")
    _write_all(raced, 1.0)
    old = {s: bars_hash(Lake(raced.root).load_arrays(s, "1Day", None, None)) for s in SIX}
    cfg = NightlyConfig(symbols=SIX, grids={"sma_cross": {"fast": (5, 10), "slow": (20, 50)}}, lookback=None,
                        stop_loss=(0.02,), by_regime=True)
    result = nightly(raced, cfg, params_dir=tmp_path / "params",
                     run=RunInfo(job="manual", notebook="test", run_dir=str(tmp_path)))
    assert raced.fired
    assert dict(result.params.data.bars_hash) == old


# --- stray files ------------------------------------------------------------------------------------
KILLED_WRITER = """
import os, signal, sys
import pandas as pd
from data_lake import Batch, Lake
from data_lake.manifest import Manifest
from data_lake.sources.sample import sample_bars, sample_meta
Manifest.save = lambda self, root: os.kill(os.getpid(), signal.SIGKILL)  # dies at its commit point
frames = [Batch(s, "1Day", sample_bars(s), sample_meta()) for s in ("AAPL", "MSFT", "IBM", "GOOG")]
Lake(sys.argv[1]).write_many(frames)
"""


def test_stray_files_of_a_killed_ingest_go_with_the_next_write_anywhere(tmp_path: Path):
    lake = Lake(tmp_path / "lake")  # the default grace: retired files stay for their readers
    lake.write_bars("FB", "1Day", sample_bars("FB"), sample_meta())
    lake.write_bars("FB", "1Day", sample_bars("FB").iloc[:-5], sample_meta())  # retires a file (in grace)
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(lake.root)], cwd=ROOT)
    assert proc.returncode == -9
    listed = Manifest.load(lake.root).known()
    strays = [p for p in (lake.root / "bars").rglob("*") if p.is_file() and str(p.relative_to(lake.root)) not in listed]
    assert len(strays) >= 40  # every year of four symbols, written and never committed
    (lake.root / "tables" / "sweeps" / "x").mkdir(parents=True)
    (lake.root / "tables" / "sweeps" / "x" / ".part-1.parquet.tmp-1-abc").write_bytes(b"half")
    strays.append(lake.root / "tables" / "sweeps" / "x" / ".part-1.parquet.tmp-1-abc")
    before = {s: lake.load_arrays(s, "1Day")["close"].sum() for s in ("FB",)}
    snap = lake.snapshot()
    lake.write_bars("NEW", "1Day", _bars("AAPL").iloc[:50], sample_meta())  # another symbol, other folders
    assert not any(p.exists() for p in strays)
    assert all((lake.root / rel).exists() for rel in Manifest.load(lake.root).known())  # retired ones kept
    assert {s: lake.load_arrays(s, "1Day")["close"].sum() for s in ("FB",)} == before
    assert snap.load_arrays("FB", "1Day")["close"].sum() == before["FB"]
    assert lake.files("AAPL") == []  # the killed ingest never happened


def test_a_sweep_chunk_write_costs_little_with_many_files(tmp_path: Path):
    """The sweep of stray files walks the lake on every write: it must stay cheap (1,000 files here)."""
    lake = Lake(tmp_path / "lake")
    frames = [Batch(f"S{i:03d}", "1Day", _bars("AAPL"), sample_meta()) for i in range(100)]
    lake.write_many(frames)
    assert len(list(lake.root.rglob("*.parquet"))) >= 500
    from data_lake.tables import write_table

    t0 = time.perf_counter()
    for k in range(5):
        write_table(lake, "sweeps", f"k{k}", pd.DataFrame({"a": [k]}))
    assert (time.perf_counter() - t0) / 5 < 1.0, "a table write walked the lake too slowly"


def test_a_lake_that_cannot_take_a_lease_still_gives_snapshots(tmp_path: Path):
    lake = Lake(tmp_path / "lake")
    _write_all(lake, 1.0)
    (lake.root / READERS).write_text("not a folder")  # as a read-only lake: the lease cannot be written
    snap = lake.snapshot()
    _write_all(lake, 2.0)
    assert _closes(snap) == {s: v / 2 for s, v in _closes(lake).items()}  # the grace period holds its files
