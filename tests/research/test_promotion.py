"""The promotion gate: each rule fails alone with a specific reason; decide keeps, flattens, rejects."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.params_store import install
from research.params import NOT_EVALUATED, Entry, GateThresholds, ParamsFile, dumps, load
from research.promotion import decide, evaluate
from tests.kit import entry, metrics, params_file


def candidate(symbol: str = "AAPL", regime: str = "all", **over) -> Entry:
    """A candidate as research builds it: no gate verdict yet (the default), passing on its numbers."""
    return Entry(**entry(symbol=symbol, regime=regime, **over).model_dump(exclude={"gate", "source"}))


def failing(symbol: str = "AAPL", regime: str = "all", **over):
    """A candidate whose PBO fails the default gate."""
    return candidate(symbol, regime, **{"pbo": 0.7, **over})


def test_a_good_candidate_passes_without_reasons():
    verdict = evaluate(candidate())

    assert verdict.passed and verdict.reasons == ()


@pytest.mark.parametrize("over, reason", [
    (dict(out_of_sample=metrics(sharpe=-0.12)), "oos_sharpe -0.12 <= 0"),
    (dict(out_of_sample=metrics(sharpe=0.0)), "oos_sharpe 0 <= 0"),
    (dict(out_of_sample=None), "oos_sharpe missing: no out-of-sample metrics"),
    (dict(out_of_sample=metrics(sharpe=None)), "oos_sharpe missing: undefined out of sample"),
    (dict(deflated_sharpe=0.81), "deflated_sharpe 0.81 < 0.95"),
    (dict(deflated_sharpe=None), "deflated_sharpe missing"),
    (dict(pbo=0.62), "pbo 0.62 > 0.5"),
    (dict(pbo=None), "pbo missing"),
    (dict(oos_trades=4), "oos_trades 4 < 10"),
    (dict(stability=0.3), "stability 0.3 < 0.5"),
    (dict(stability=None), "stability missing"),
    (dict(status="flat"), "status flat"),
])
def test_each_rule_fails_alone_with_its_reason(over, reason):
    verdict = evaluate(candidate(**over))

    assert not verdict.passed and len(verdict.reasons) == 1 and verdict.reasons[0].startswith(reason), verdict


def test_boundaries_pass_except_the_strict_sharpe_rule():
    at_edges = candidate(deflated_sharpe=0.95, pbo=0.5, oos_trades=10, stability=0.5)
    strict = GateThresholds(min_oos_sharpe=0.8)

    assert evaluate(at_edges).passed
    assert evaluate(at_edges, strict).reasons == ("oos_sharpe 0.8 <= 0.8",)


def test_custom_thresholds_are_used_in_the_reasons():
    t = GateThresholds(min_deflated_sharpe=0.99, max_pbo=0.1, min_oos_trades=50, min_stability=0.9)

    verdict = evaluate(candidate(), t)

    assert verdict.reasons == ("deflated_sharpe 0.97 < 0.99", "pbo 0.2 > 0.1", "oos_trades 25 < 50",
                               "stability 0.8 < 0.9")


def test_decide_promotes_passes_keeps_previous_and_flattens_the_rest():
    previous = params_file([entry(), entry(regime="up_normal", params={"fast": 5, "slow": 30}),
                            entry(symbol="MSFT")])
    new_all = candidate(params={"fast": 20, "slow": 100})
    candidates = [new_all, failing(regime="up_normal"), failing(regime="down_high")]

    entries, verdict = decide(candidates, previous)

    by_key = {e.key: e for e in entries}
    assert [e.key for e in entries] == [c.key for c in candidates]
    passed = by_key[("sma_cross", "AAPL", "all")]
    assert (passed.status, passed.source, passed.gate.passed, passed.params) == ("active", "candidate", True,
                                                                                 {"fast": 20, "slow": 100})
    kept = by_key[("sma_cross", "AAPL", "up_normal")]
    assert (kept.status, kept.source, kept.params) == ("active", "kept", {"fast": 5, "slow": 30})
    flat = by_key[("sma_cross", "AAPL", "down_high")]
    assert (flat.status, flat.source, flat.gate.reasons) == ("flat", "candidate", ("pbo 0.7 > 0.5",))
    assert verdict.promoted and verdict.previous_sha256 == previous.sha256()
    assert verdict.reasons == (
        "promoted: 1 of 3 candidates passed the gate",
        "sma_cross AAPL up_normal: kept the previous entry; candidate failed: pbo 0.7 > 0.5",
        "sma_cross AAPL down_high: flat; candidate failed: pbo 0.7 > 0.5",
        "sma_cross MSFT all: in the previous file but not among the candidates: dropped",
    )


def test_decide_output_makes_a_valid_file_that_installs(tmp_path: Path):
    previous = params_file()
    install(previous, tmp_path)
    entries, verdict = decide([candidate(params={"fast": 15, "slow": 60}), failing(regime="up_low")],
                              load(tmp_path / "current.json"))

    pf = params_file(list(entries), verdict=verdict)
    install(ParamsFile.model_validate_json(dumps(pf), strict=True), tmp_path)

    assert load(tmp_path / "current.json").lookup("sma_cross", "AAPL", "all").params == {"fast": 15, "slow": 60}
    assert load(tmp_path / "current.json").lookup("sma_cross", "AAPL", "up_low").status == "flat"


def test_nothing_passes_so_the_run_is_rejected_and_current_stays(tmp_path: Path):
    install(params_file(), tmp_path)
    before = (tmp_path / "current.json").read_bytes()
    entries, verdict = decide([failing(), failing(regime="up_low")], load(tmp_path / "current.json"))

    hist = install(params_file(list(entries), verdict=verdict), tmp_path)

    assert not verdict.promoted and verdict.reasons[0] == "rejected: none of 2 candidates passed the gate"
    assert [(e.status, e.source) for e in entries] == [("active", "kept"), ("flat", "candidate")]
    assert (tmp_path / "current.json").read_bytes() == before and hist.name.endswith("-rejected.json")


def test_a_previous_entry_is_kept_only_if_it_is_active_and_passes_todays_gate():
    stricter = GateThresholds(min_deflated_sharpe=0.99)
    previous = params_file([entry(), entry(regime="up_low", status="flat", gate=NOT_EVALUATED)])

    entries, verdict = decide([failing(), failing(regime="up_low")], previous, stricter)

    assert [(e.status, e.source) for e in entries] == [("flat", "candidate"), ("flat", "candidate")]
    assert "flat (the previous entry is flat or fails today's gate)" in verdict.reasons[1]
    assert not verdict.promoted


def test_decide_refuses_two_candidates_for_one_cell_or_no_candidates():
    with pytest.raises(ValueError, match=r"more than one candidate for AAPL all \(sma_cross, sma_cross\)"):
        decide([candidate(), failing()], None)
    with pytest.raises(ValueError, match=r"AAPL up_low \(sma_cross, rsi_reversion\): one strategy per"):
        decide([candidate(regime="up_low"), rsi("AAPL", "up_low")], None)
    with pytest.raises(ValueError, match="at least one candidate"):
        decide([], None)


def test_a_candidate_starts_unjudged_and_a_file_refuses_it_as_active():
    c = Entry(**entry().model_dump(exclude={"gate", "source"}))

    with pytest.raises(ValidationError, match=r"entries\.0\.status\n.*active, but its gate did not pass"):
        params_file([c])

    assert c.gate == NOT_EVALUATED and c.source == "candidate"


# --- one strategy per (symbol, regime): the gate across strategies ----------------------------------
RSI = {"n": 14, "lower": 30.0, "upper": 70.0, "exit_level": 50.0}


def rsi(symbol: str = "AAPL", regime: str = "all", **over) -> Entry:
    """An rsi_reversion candidate that passes the default gate."""
    return candidate(symbol, regime, **{"strategy": "rsi_reversion", "params": RSI, **over})


def test_a_passing_candidate_of_another_strategy_replaces_the_cells_previous_entry():
    previous = params_file([entry(regime="up_low"), entry(regime="down_high")])

    entries, verdict = decide([rsi(regime="up_low"), candidate(regime="down_high")], previous)

    assert [(e.key, e.status, e.source) for e in entries] == [
        (("rsi_reversion", "AAPL", "up_low"), "active", "candidate"),
        (("sma_cross", "AAPL", "down_high"), "active", "candidate")]
    assert "rsi_reversion AAPL up_low: replaces sma_cross AAPL up_low (active in the previous file)" in verdict.reasons
    assert not any("dropped" in r for r in verdict.reasons)  # the replaced entry is named, not "dropped"
    params_file(list(entries), verdict=verdict)  # one active strategy per cell: a valid file


def test_a_failing_candidate_keeps_the_cells_previous_entry_whatever_its_strategy():
    previous = params_file([entry(regime="up_low"), entry(regime="down_high", strategy="rsi_reversion", params=RSI)])

    entries, verdict = decide([failing(strategy="rsi_reversion", params=RSI, regime="up_low"),
                               failing(regime="down_high")], previous)

    assert [(e.key, e.status, e.source) for e in entries] == [
        (("sma_cross", "AAPL", "up_low"), "active", "kept"),
        (("rsi_reversion", "AAPL", "down_high"), "active", "kept")]
    assert ("rsi_reversion AAPL up_low: kept the previous entry (sma_cross AAPL up_low); candidate failed: "
            "pbo 0.7 > 0.5") in verdict.reasons
    assert not verdict.promoted  # nothing of tonight passed
    pf = params_file(list(entries), verdict=verdict)
    assert [e.strategy for e in pf.entries if e.status == "active"] == ["sma_cross", "rsi_reversion"]


def test_a_previous_entry_of_a_strategy_the_run_no_longer_trades_is_not_kept():
    previous = params_file([entry(strategy="rsi_reversion", params=RSI)])

    entries, verdict = decide([failing()], previous, strategies=("sma_cross",))

    assert [(e.key, e.status) for e in entries] == [(("sma_cross", "AAPL", "all"), "flat")]
    assert ("sma_cross AAPL all: flat (the previous entry rsi_reversion AAPL all is of a strategy this run does "
            "not trade); candidate failed: pbo 0.7 > 0.5") in verdict.reasons


def test_keeping_never_leaves_two_strategies_active_in_one_cell():
    # the previous file: sma_cross active in up_low; tonight rsi_reversion is the cell's candidate and fails,
    # and sma_cross's own evidence fails today's stricter gate: the cell is flat, nothing of either is active
    previous = params_file([entry(regime="up_low", deflated_sharpe=0.96)])

    entries, verdict = decide([failing(strategy="rsi_reversion", params=RSI, regime="up_low")], previous,
                              GateThresholds(min_deflated_sharpe=0.99))

    assert [(e.key, e.status) for e in entries] == [(("rsi_reversion", "AAPL", "up_low"), "flat")]
    assert "(the previous entry sma_cross AAPL up_low fails today's gate)" in verdict.reasons[1]


def test_selection_lines_are_appended_to_the_verdict():
    _, verdict = decide([candidate()], None, selection=["AAPL all: sma_cross chosen by out-of-sample sharpe"])

    assert verdict.reasons[-1] == "AAPL all: sma_cross chosen by out-of-sample sharpe"
