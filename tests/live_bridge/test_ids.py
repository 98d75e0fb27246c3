"""Client order ids: deterministic across processes, unique per decision, short, parseable."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from live_bridge.ids import MAX_LEN, client_order_id, parse_client_order_id

ROOT = Path(__file__).resolve().parents[2]
BAR = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)


def test_format_is_readable_and_short():
    cid = client_order_id("smacross", "AAPL", BAR, "entry")

    assert cid.startswith("tl-smacross-AAPL-20240102T1530-entry-0-")
    assert len(cid) <= MAX_LEN


def test_same_instant_in_another_timezone_gives_the_same_id():
    eastern = BAR.astimezone(timezone(timedelta(hours=-5)))

    assert client_order_id("smacross", "AAPL", eastern, "exit", 2) == \
        client_order_id("smacross", "AAPL", BAR, "exit", 2)


def test_ids_are_stable_across_processes():
    args = [("smacross", "AAPL", BAR, "entry", 0), ("sma_convergence", "GOOGL", BAR, "flatten", 12),
            ("vwap_reversion", "BRK.B", BAR + timedelta(seconds=7), "stop", 3)]
    code = (
        "from datetime import datetime\nfrom live_bridge.ids import client_order_id\n"
        f"for s, y, t, i, n in {[(s, y, t.isoformat(), i, n) for s, y, t, i, n in args]!r}:\n"
        "    print(client_order_id(s, y, datetime.fromisoformat(t), i, n))\n"
    )
    runs = []
    for seed in ("1", "2"):  # a different hash seed per process: nothing may depend on hash()
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": "Asia/Tokyo"}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True)
        runs.append(out.stdout.split())

    here = [client_order_id(*a) for a in args]
    assert runs[0] == runs[1] == here


def test_ids_are_unique_per_field():
    strategies = ["sma_convergence", "sma_convergence_fast", "sma_convergence_slow", "smacross"]
    times = [BAR + timedelta(minutes=m) for m in range(3)] + [BAR + timedelta(seconds=30)]
    kinds = ["entry", "exit", "stop", "target"]
    combos = itertools.product(strategies, ["AAPL", "MSFT"], times, kinds, range(3))

    ids = [client_order_id(*c) for c in combos]

    assert len(set(ids)) == len(ids)  # truncated names and same-minute bars differ by their hash
    assert max(map(len, ids)) <= MAX_LEN


def test_long_strategy_name_is_truncated_but_recoverable():
    cid = client_order_id("sma_convergence", "GOOGL", BAR, "flatten", 12)

    assert len(cid) == MAX_LEN
    parsed = parse_client_order_id(cid)
    assert "sma_convergence".startswith(parsed.strategy) and parsed.maybe_truncated
    resolved = parse_client_order_id(cid, ["sma_convergence_fast", "sma_convergence", "smacross"])
    assert resolved.strategy == "sma_convergence" and not resolved.maybe_truncated


def test_parse_round_trips_the_fields():
    cid = client_order_id("pairs", "BRK.B", BAR, "target", 7)

    p = parse_client_order_id(cid)

    assert (p.strategy, p.symbol, p.bar_time, p.intent, p.seq) == ("pairs", "BRK.B", BAR, "target", 7)
    assert p.is_exit and not p.maybe_truncated


def test_parse_returns_none_for_foreign_ids():
    assert parse_client_order_id("b0b6dd9d-8b9b-48a9-ba46-b9d54906e415") is None
    assert parse_client_order_id("tl-x-AAPL-2024-entry") is None


@pytest.mark.parametrize("field, kwargs", [
    ("strategy", {"strategy": "sma cross"}),
    ("strategy", {"strategy": "sma-cross"}),
    ("symbol", {"symbol": "BTC/USD"}),
    ("symbol", {"symbol": "AAPL&x=1"}),
    ("intent", {"intent": "Entry"}),
    ("seq", {"seq": 1000}),
    ("seq", {"seq": -1}),
    ("bar_time", {"bar_time": datetime(2024, 1, 2, 15, 30)}),
])
def test_rejects_what_alpaca_or_the_format_cannot_take(field, kwargs):
    args = {"strategy": "smacross", "symbol": "AAPL", "bar_time": BAR, "intent": "entry", "seq": 0} | kwargs

    with pytest.raises(ValueError, match=field):
        client_order_id(**args)


def test_rejects_fields_too_long_to_fit():
    with pytest.raises(ValueError, match="characters for the strategy"):
        client_order_id("smacross", "ABCDEFGHIJKLMNOP", BAR, "flatten_all", 999)
