"""The params file: round trip, validation that names the bad field, limits."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from pipeline.params_store import write_candidate
from research.exits import ExitRules
from research.metrics import METRICS
from research.params import EntryVerdict, ExitRulesModel, Metrics, dumps, load, loads
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


# --- one strategy per (symbol, regime) ------------------------------------------------------------
RSI = {"n": 14, "lower": 30.0, "upper": 70.0, "exit_level": 50.0}


def test_one_symbol_may_trade_different_strategies_in_different_regimes(tmp_path: Path):
    pf = params_file([entry(regime="up_low"), entry(regime="down_high", strategy="rsi_reversion", params=RSI),
                      entry(regime="down_high", status="flat"),  # a flat entry beside the active one: allowed
                      entry(symbol="MSFT", regime="up_low", strategy="rsi_reversion", params=RSI)])

    back = load(write_candidate(pf, tmp_path / "p.json"))

    assert back == pf and dumps(back) == dumps(pf)
    assert back.lookup("sma_cross", "AAPL", "up_low").status == "active"
    assert back.lookup("rsi_reversion", "AAPL", "down_high").make_params().lower == 30.0


def test_two_active_strategies_in_one_cell_load_the_live_bridge_nets_them():
    pf = params_file([entry(regime="up_low"), entry(regime="all", strategy="rsi_reversion", params=RSI)])

    back = loads(dumps(pf), "f.json")

    assert [e.strategy for e in back.entries if e.status == "active"] == ["sma_cross", "rsi_reversion"]
