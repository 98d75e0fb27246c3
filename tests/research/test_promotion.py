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


def test_decide_refuses_duplicate_or_no_candidates():
    with pytest.raises(ValueError, match="duplicate candidate keys: sma_cross AAPL all"):
        decide([candidate(), failing()], None)
    with pytest.raises(ValueError, match="at least one candidate"):
        decide([], None)


def test_a_candidate_starts_unjudged_and_a_file_refuses_it_as_active():
    c = Entry(**entry().model_dump(exclude={"gate", "source"}))

    with pytest.raises(ValidationError, match=r"entries\.0\.status\n.*active, but its gate did not pass"):
        params_file([c])

    assert c.gate == NOT_EVALUATED and c.source == "candidate"
