"""The decision log's lines: one JSON object per line, whatever a line holds, and whole lines only."""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from live_bridge.runner_alerts import _write_all, json_line


@dataclass(frozen=True)
class Rules:
    stop_loss: float | None
    at: datetime


def test_a_line_holds_times_numbers_dataclasses_and_writes_nan_and_inf_as_null():
    at = datetime(2024, 1, 2, 21, 0, 0, 123, tzinfo=timezone.utc)
    entry = {"bar_time": pd.Timestamp("2024-01-02 21:00", tz="UTC"), "qty": np.float64(3.5), "n": np.int64(7),
             "ok": np.bool_(True), "z": math.nan, "inf": -math.inf, "rules": Rules(0.02, at), "held": {"sma_cross": 0.0},
             "plan": (1, 2), "price": 0.1 + 0.2}

    line = json_line(entry)

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"bar_time": "2024-01-02T21:00:00+00:00", "qty": 3.5, "n": 7, "ok": True, "z": None,
                                "inf": None, "rules": {"stop_loss": 0.02, "at": at.isoformat()},
                                "held": {"sma_cross": 0.0}, "plan": [1, 2], "price": 0.30000000000000004}


def test_what_orjson_cannot_write_goes_through_json_instead_of_failing():
    line = json_line({"big": 2**70, "x": math.nan, "when": pd.Timestamp("2024-01-02", tz="UTC")})

    assert json.loads(line) == {"big": 2**70, "x": None, "when": "2024-01-02T00:00:00+00:00"}


def test_lines_written_whole_by_two_writers_never_interleave(tmp_path):
    path = tmp_path / "decisions.jsonl"
    ours = open(path, "ab", buffering=0)  # noqa: SIM115 - as the runner opens it
    batch = b"".join(json_line({"event": "decision", "i": i, "pad": "x" * 300}) for i in range(200))  # ~64 KB

    def control() -> None:  # another process appending control lines meanwhile (O_APPEND, a line a write)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            for k in range(500):
                os.write(fd, json_line({"event": "control", "k": k}))
        finally:
            os.close(fd)

    other = threading.Thread(target=control)
    other.start()
    for _ in range(40):
        _write_all(ours, batch)
    other.join()
    ours.close()

    rows = [json.loads(x) for x in path.read_bytes().splitlines()]  # every line whole

    assert len(rows) == 40 * 200 + 500
    assert [r["k"] for r in rows if r["event"] == "control"] == list(range(500))
