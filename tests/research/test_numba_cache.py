"""A second process loads every sweep kernel from numba's on-disk cache: it compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from numba.core import event

compiled = []

class Listener(event.Listener):
    def on_start(self, ev):
        if ev.kind == "numba:compile":
            compiled.append(str(ev.data["dispatcher"].py_func.__qualname__))
    def on_end(self, ev):
        pass

event.register("numba:compile", Listener())
from data_lake.sources.sample import sample_bars
from research.bars import bars_from_arrays
from research.exits import ExitRules
from research.signals.sma_cross import SmaCross
from research.sweep import Costs, run_grid
import numpy as np
f = sample_bars("IBM")
arrays = {{"ts": f["ts"].to_numpy(dtype="datetime64[us]").view(np.int64), **{{c: f[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}}}}
bars = bars_from_arrays(arrays, "1Day")
out = run_grid("sma_cross", bars, [SmaCross(5, 20), SmaCross(10, 50)], [ExitRules(allow_short=False)], Costs())
print(json.dumps({{"compiled": compiled, "sharpe": float(out[0, 0, -1, 2])}}))
"""


def _run(cache: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing(tmp_path: Path):
    first = _run(tmp_path / "numba")
    assert first["compiled"], "the first process should have compiled the kernels"
    second = _run(tmp_path / "numba")
    assert second["compiled"] == [] and second["sharpe"] == first["sharpe"]


def test_cache_folders_of_old_code_unused_for_two_weeks_are_pruned(tmp_path: Path):
    import os
    import time

    from research._numba_cache import prune

    keep, recent, stale = (tmp_path / n for n in ("current", "recent", "stale"))
    for p in (keep, recent, stale):
        (p / "sub").mkdir(parents=True)
        (p / "sub" / "kernel.nbi").write_bytes(b"x")
    month_ago = time.time() - 30 * 86400
    for p in (keep, stale):
        os.utime(p, (month_ago, month_ago))

    removed = prune(tmp_path, keep=keep)

    assert removed == [stale] and keep.exists() and recent.exists() and not stale.exists()
    assert prune(tmp_path / "missing", keep=keep) == []
