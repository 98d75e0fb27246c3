"""The runner's growable history equals the lake's arrays and research.bars' calendar facts, bar for bar."""

from __future__ import annotations

import numpy as np
import pytest

from live_bridge.history import COLUMNS, History
from research.bars import bars_from_arrays
from tests.kit import minute_bars


@pytest.mark.parametrize("timeframe", ["1Min", "1Day"])
def test_appended_bars_equal_the_whole_history_built_at_once(timeframe):
    df = minute_bars(["2024-07-02", "2024-07-03", "2024-07-05"], seed=3)  # 07-03 is a half day
    if timeframe == "1Day":
        df = df.groupby(df["ts"].dt.tz_convert("America/New_York").dt.date).first().reset_index(drop=True)
        df["ts"] = df["ts"].dt.tz_convert("America/New_York").dt.normalize().dt.tz_convert("UTC")
    us = df["ts"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    arrays = {c: (us if c == "ts" else df[c].to_numpy(float)) for c in COLUMNS}
    cut = 2 if timeframe == "1Day" else 500
    h = History({c: a[:cut] for c, a in arrays.items()}, timeframe)
    for i in range(cut, len(arrays["ts"])):
        assert h.append(*(arrays[c][i] for c in COLUMNS))
    assert not h.append(*(arrays[c][-1] for c in COLUMNS)), "a bar seen already is not added twice"
    want = bars_from_arrays(arrays, timeframe)
    for name, a in zip(want._fields, h.bars):
        np.testing.assert_array_equal(a, getattr(want, name), err_msg=name)
    for c in COLUMNS:
        np.testing.assert_array_equal(h.arrays[c], arrays[c])
    assert len(h) == len(arrays["ts"]) and h.last_ts == arrays["ts"][-1]


def test_history_refuses_unsorted_bars():
    with pytest.raises(ValueError, match="increase"):
        History({"ts": np.array([2, 1]), **{c: np.ones(2) for c in COLUMNS[1:]}}, "1Day")
