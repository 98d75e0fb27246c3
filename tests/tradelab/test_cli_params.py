"""`tradelab params` as a user runs it: real files, one-line errors that name the bad field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.params_store import install, write_candidate
from research.params import schema_bytes
from tests.kit import edited, entry, params_file
from tradelab.cli import app


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_show_prints_provenance_verdict_and_entries(tmp_path: Path):
    pf = params_file([entry(), entry(symbol="MSFT", regime="up_normal", deflated_sharpe=0.981)])
    install(pf, tmp_path)

    r = run("params", "show", str(tmp_path / "current.json"))

    assert r.exit_code == 0, r.output
    for text in ("abc1234", pf.sha256()[:12], "nightly", "1Day 2015-01-02..2024-05-01 AAPL,MSFT (benchmark SPY)",
                 "verdict   promoted", "sma_cross", "up_normal", "fast=10 slow=50", "0.9810", "pass"):
        assert text in r.stdout, text


def test_show_defaults_to_params_current_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    missing = run("params", "show")
    install(params_file(), tmp_path / "params")

    found = run("params", "show")

    assert missing.exit_code == 2 and missing.stderr == "error: params/current.json: no such params file\n"
    assert found.exit_code == 0 and "sma_cross" in found.stdout


def test_validate_accepts_a_good_file(tmp_path: Path):
    path = write_candidate(params_file(), tmp_path / "candidate.json")

    r = run("params", "validate", str(path))

    assert r.exit_code == 0 and r.stdout.startswith(f"valid: {path} (1 entry, promoted, sha256 ")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["entries"][0]["params"].update(fast="ten"), "entries.0.params.fast: expected int, got 'ten'"),
    (lambda d: d["entries"][0].update(strategy="golden_goose"), "entries.0.strategy: unknown strategy 'golden_goose'"),
    (lambda d: d["entries"][0].update(regime="sideways"), "entries.0.regime: Input should be"),
    (lambda d: d["entries"][0]["exit_rules"].update(stop_los=0.02), "entries.0.exit_rules.stop_los: Extra inputs"),
    (lambda d: d["entries"][0].update(oos_trades=-3), "entries.0.oos_trades: Input should be greater than or equal to 0"),
    (lambda d: d.update(created_at="2024-05-02T22:05:01"), "created_at: Input should have timezone info"),
])
def test_validate_names_the_bad_field_of_a_hand_edit(tmp_path: Path, edit, message):
    path = tmp_path / "current.json"
    path.write_text(edited(params_file(), edit))

    r = run("params", "validate", str(path))

    assert r.exit_code == 2 and r.stderr.startswith(f"error: {path}: invalid field ") and message in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_validate_reports_invalid_json_and_missing_files(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1,\n  "created_at": }\n')

    broken = run("params", "validate", str(bad))
    missing = run("params", "validate", str(tmp_path / "nope.json"))

    assert broken.exit_code == 2 and f"{bad}: invalid JSON at line 2, column 17" in broken.stderr
    assert missing.exit_code == 2 and missing.stderr == f"error: {tmp_path / 'nope.json'}: no such params file\n"


def test_diff_lists_changes_and_says_when_there_are_none(tmp_path: Path):
    a = write_candidate(params_file(), tmp_path / "a.json")
    b = write_candidate(params_file([entry(params={"fast": 20, "slow": 50})], code_version="def5678"),
                        tmp_path / "b.json")

    changed = run("params", "diff", str(a), str(b))
    same = run("params", "diff", str(a), str(a))

    assert changed.exit_code == 0, changed.output
    for text in ("provenance", "code_version", "abc1234 -> def5678", "changed", "params", "fast 10 -> 20"):
        assert text in changed.stdout, text
    assert same.exit_code == 0 and same.stdout == "no differences\n"


def test_schema_prints_or_writes_the_generated_schema(tmp_path: Path):
    printed = run("params", "schema")
    written = run("params", "schema", "--out", str(tmp_path / "schema.json"))

    assert printed.exit_code == 0 and printed.stdout.encode() == schema_bytes()
    assert written.exit_code == 0 and (tmp_path / "schema.json").read_bytes() == schema_bytes()
    assert json.loads(printed.stdout)["$id"] == "tradelab-params-v1"
