"""The params file: round trip, validation that names the bad field, install, diff, schema."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from research.exits import ExitRules
from research.metrics import METRICS
from research.params import (
    SCHEMA_PATH,
    ExitRulesModel,
    Metrics,
    code_version,
    diff,
    dumps,
    history_name,
    install,
    load,
    loads,
    schema_bytes,
    write_candidate,
)
from research.promotion import EntryVerdict
from research.signals.sma_cross import SmaCross
from tests.kit import edited, entry, metrics, params_file


def test_round_trip_is_byte_identical_and_typed(tmp_path: Path):
    pf = params_file([entry(), entry(regime="up_normal", status="flat", out_of_sample=None, deflated_sharpe=None,
                                     gate=EntryVerdict(passed=False, reasons=("oos_sharpe missing",)))])

    path = write_candidate(pf, tmp_path / "run" / "candidate.json")
    back = load(path)

    assert back == pf and dumps(back) == path.read_bytes() and back.sha256() == pf.sha256()
    assert back.lookup("sma_cross", "AAPL", "all").make_params() == SmaCross(fast=10, slow=50)
    assert back.lookup("sma_cross", "AAPL", "up_normal").status == "flat"
    assert back.lookup("sma_cross", "MSFT", "all") is None
    assert path.read_bytes().endswith(b"}\n") and b'"created_at": "2024-05-02T22:05:01Z"' in path.read_bytes()


def test_nan_and_numpy_values_become_plain_json():
    e = entry(in_sample=metrics(sharpe=float("nan"), trades=np.float64(12)), pbo=np.float64("nan"),
              params={"fast": np.int64(10), "slow": 50})

    text = dumps(params_file([e])).decode()

    assert "NaN" not in text and e.in_sample.sharpe is None and e.pbo is None and e.params["fast"] == 10
    assert type(e.params["fast"]) is int


def test_metrics_and_exit_rules_mirror_the_research_types():
    rules = ExitRules(stop_loss=0.02, time_stop=5, allow_short=False)

    stored = ExitRulesModel.from_rules(rules)

    assert tuple(Metrics.model_fields) == METRICS
    assert tuple(ExitRulesModel.model_fields) == tuple(f.name for f in fields(ExitRules))
    assert stored.to_rules() == rules
    assert Metrics.from_mapping({k: 1.0 for k in METRICS}).exposure == 1.0


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["entries"][0]["params"].update(fast="ten"), "entries.0.params.fast: expected int, got 'ten'"),
    (lambda d: d["entries"][0]["params"].update(fsat=3), "entries.0.params.fsat: sma_cross has no parameter 'fsat'"),
    (lambda d: d["entries"][0]["params"].update(fast=80), "entries.0.params: sma_cross needs 1 <= fast < slow"),
    (lambda d: d["entries"][0].update(strategy="sma_crss"), "entries.0.strategy: unknown strategy 'sma_crss'"),
    (lambda d: d["entries"][0].update(regime="sideways"), "entries.0.regime: Input should be 'up_low'"),
    (lambda d: d["entries"][0].update(oos_trades=-1), "entries.0.oos_trades: Input should be greater than or equal to 0"),
    (lambda d: d["entries"][0].update(oos_trades="10"), "entries.0.oos_trades: Input should be a valid integer"),
    (lambda d: d["entries"][0].update(pbo=1.5), "entries.0.pbo: Input should be less than or equal to 1"),
    (lambda d: d["entries"][0].update(leverage=2), "entries.0.leverage: Extra inputs are not permitted"),
    (lambda d: d["entries"][0]["gate"].update(passed=False), "entries.0.status: active, but its gate did not pass"),
    (lambda d: d.update(created_at="2024-05-02T22:05:01"), "created_at: Input should have timezone info"),
    (lambda d: d.update(created_at="2024-05-02T22:05:01+02:00"), "created_at: must be in UTC"),
    (lambda d: d["data"].update(timeframe="1Week"), "data.timeframe: Input should be '1Min'"),
    (lambda d: d["data"].update(start="2025-01-01"), "data: start 2025-01-01 is after end 2024-05-01"),
    (lambda d: d["data"]["bars_hash"].pop("MSFT"), "bars_hash needs one entry per symbol (missing: MSFT"),
    (lambda d: d.update(schema_version=2), "schema_version: Input should be 1"),
    (lambda d: d["entries"].append(d["entries"][0]), "entries.1: duplicate entry sma_cross AAPL all"),
])
def test_a_bad_hand_edit_names_the_field(edit, message):
    text = edited(params_file(), edit)

    with pytest.raises(ValueError) as info:
        loads(text, "params/current.json")

    assert str(info.value).startswith("params/current.json: ") and message in str(info.value), str(info.value)


def test_several_errors_get_one_line_each():
    text = edited(params_file(), lambda d: (d["entries"][0].update(regime="sideways", oos_trades=-1),
                                            d["entries"][0]["params"].update(fast="ten")))

    with pytest.raises(ValueError) as info:
        loads(text, "f.json")

    lines = str(info.value).splitlines()
    assert lines[0] == "f.json: 3 invalid fields"
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == ["entries.0.regime", "entries.0.params.fast",
                                                             "entries.0.oos_trades"]


@pytest.mark.parametrize("text, message", [
    ('{"schema_version": 1,\n  "created_at": }', "f.json: invalid JSON at line 2, column 17"),
    ('{"schema_version": NaN}', "f.json: NaN is not JSON"),
    ('{"schema_version": 1, "schema_version": 1}', "f.json: duplicate key 'schema_version'"),
])
def test_broken_json_says_where(text, message):
    with pytest.raises(ValueError, match=message):
        loads(text, "f.json")


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


def test_duplicate_keys_are_found_in_linear_time_and_huge_files_are_refused(tmp_path: Path):
    import time

    from research.params import MAX_BYTES, load, loads

    many = "{" + ",".join(f'"k{i}": {i}' for i in range(60_000)) + ', "k7": 1}'
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="duplicate key 'k7'"):
        loads(many)
    assert time.perf_counter() - t0 < 5.0  # the old check took minutes (keys.count per key)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    with pytest.raises(ValueError, match="over the .*-byte limit"):
        load(huge)
