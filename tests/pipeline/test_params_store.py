"""Params files on disk: install and history, the diff, the checked-in schema, the code version."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.params_store import SCHEMA_PATH, code_version, diff, history_name, install
from research.params import EntryVerdict, ExitRulesModel, dumps, load, schema_bytes
from tests.kit import entry, params_file


def test_install_promoted_replaces_current_and_keeps_history(tmp_path: Path):
    first = params_file()
    second = params_file([entry(params={"fast": 20, "slow": 100})], previous=first.sha256())

    h1 = install(first, tmp_path)
    h2 = install(second, tmp_path)

    assert (tmp_path / "current.json").read_bytes() == dumps(second)
    assert h1.read_bytes() == dumps(first) and h2.read_bytes() == dumps(second)
    assert h2.parent == tmp_path / "history" and h2.name == history_name(second)
    assert h2.name.startswith("20240502T220501Z-") and h2.name.endswith("-promoted.json")


def test_install_rejected_leaves_current_untouched(tmp_path: Path):
    install(params_file(), tmp_path)
    current = tmp_path / "current.json"
    os.utime(current, ns=(1_000_000_000, 1_000_000_000))  # a known mtime
    before = (current.read_bytes(), current.stat().st_mtime_ns)
    rejected = params_file([entry(status="flat", gate=EntryVerdict(passed=False, reasons=("pbo 0.7 > 0.5",)))],
                           promoted=False)

    hist = install(rejected, tmp_path)

    assert (current.read_bytes(), current.stat().st_mtime_ns) == before
    assert hist.name.endswith("-rejected.json") and load(hist) == rejected
    assert sorted(p.name.split("-")[-1] for p in (tmp_path / "history").glob("*.json")) == ["promoted.json",
                                                                                           "rejected.json"]


def test_install_refuses_a_file_decided_against_another_current(tmp_path: Path):
    install(params_file(), tmp_path)
    stale = params_file([entry(params={"fast": 5, "slow": 20})], previous=None)

    with pytest.raises(ValueError, match="changed since this file was decided"):
        install(stale, tmp_path)

    assert load(tmp_path / "current.json") == params_file()


def test_diff_names_added_removed_changed_entries_and_provenance():
    a = params_file([entry(), entry(regime="up_normal"), entry(symbol="MSFT")])
    b = params_file([entry(params={"fast": 20, "slow": 50}), entry(regime="up_normal", status="flat"),
                     entry(symbol="AAPL", regime="down_high",
                           exit_rules=ExitRulesModel(stop_loss=0.02))], code_version="def5678")

    rows = diff(a, b)

    got = {(r.change, r.symbol, r.regime): (r.fields, r.detail) for r in rows}
    assert got[("provenance", None, None)] == (("code_version",), "abc1234 -> def5678")
    assert got[("changed", "AAPL", "all")] == (("params",), "fast 10 -> 20")
    assert got[("changed", "AAPL", "up_normal")] == (("status",), "status active -> flat")
    assert got[("removed", "MSFT", "all")] == ((), "active fast=10 slow=50")
    assert got[("added", "AAPL", "down_high")] == ((), "active fast=10 slow=50")
    assert len(rows) == 5 and diff(a, a) == []


def test_checked_in_schema_is_generated_from_the_model():
    # regenerate with: tradelab params schema --out params/schema.json
    schema = json.loads(schema_bytes())

    assert SCHEMA_PATH.read_bytes() == schema_bytes()
    entry_props = schema["$defs"]["Entry"]["properties"]
    assert "sma_cross" in entry_props["strategy"]["enum"] and "up_normal" in entry_props["regime"]["enum"]
    assert schema["additionalProperties"] is False


def test_code_version_names_the_checkout():
    v = code_version()

    assert v.strip() == v and v != "unknown"


def test_a_rejected_first_file_becomes_current_as_all_flat(tmp_path: Path):
    rejected = params_file([entry(status="flat", gate=EntryVerdict(passed=False, reasons=("pbo 0.7 > 0.5",)))],
                           promoted=False)

    install(rejected, tmp_path)

    assert load(tmp_path / "current.json") == rejected  # explicit "trade nothing", not a missing file
    assert all(e.status == "flat" for e in load(tmp_path / "current.json").entries)
