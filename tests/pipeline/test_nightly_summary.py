"""The nightly summary from hand-built params files: counts, near misses per (symbol, regime), the file."""

from __future__ import annotations

import pytest

from pipeline.nightly_summary import (
    TargetRow,
    load_summary,
    summarize_params,
    summary_lines,
    write_summary,
)
from research.params import EntryVerdict, Verdict
from tests.kit import entry, metrics, params_file

NO_TRADES = EntryVerdict(passed=False, reasons=("status flat: no combination had enough trades to choose",))


def failed(symbol: str, regime: str, *reasons: str, strategy: str = "sma_cross", sharpe: float = 0.3, **over):
    """A candidate the gate turned down (written flat, as ``research.promotion.decide`` writes it)."""
    params = {"fast": 10, "slow": 50} if strategy == "sma_cross" else {"n": 14}
    return entry(symbol, regime, params=params, strategy=strategy, status="flat", out_of_sample=metrics(sharpe=sharpe),
                 gate=EntryVerdict(passed=False, reasons=reasons), **over)


def two_strategy_file():
    """MSFT and AAPL, two strategies per (symbol, regime): one cell active, one kept, near misses, no-trade flats."""
    entries = [
        entry("AAPL", "up_low"),                                                   # active, passed tonight
        failed("AAPL", "up_low", "deflated_sharpe 0.41 < 0.95", strategy="rsi_reversion"),  # cell covered
        entry("AAPL", "down_low", source="kept"),                                  # kept from the file in force
        failed("MSFT", "up_low", "deflated_sharpe 0.41 < 0.95", sharpe=0.2),
        failed("MSFT", "up_low", "pbo 0.7 > 0.5", "oos_trades 3 < 10", strategy="rsi_reversion", sharpe=1.5),
        failed("MSFT", "down_low", "oos_sharpe -0.2 <= 0", sharpe=-0.2),
        failed("MSFT", "down_low", "stability 0.3 < 0.5", strategy="rsi_reversion", sharpe=0.9),
        entry("MSFT", "range_low", status="flat", gate=NO_TRADES, out_of_sample=None),
        entry("MSFT", "range_low", strategy="rsi_reversion", params={"n": 14}, status="flat", gate=NO_TRADES,
              out_of_sample=None),
    ]
    return params_file(entries, verdict=Verdict(promoted=True, reasons=("promoted: 1 of 9 candidates passed the gate",
                                                                          "sma_cross AAPL down_low: kept ...")))


def test_counts_are_the_params_files():
    pf = two_strategy_file()

    s = summarize_params(pf)

    assert (s.entries, s.active, s.kept, s.flat, s.flat_no_trades) == (9, 2, 1, 7, 2)
    assert s.promoted and s.verdict == "promoted: 1 of 9 candidates passed the gate"
    assert s.params_sha256 == pf.sha256()
    assert [(p.symbol, p.regime, p.strategy, p.source) for p in s.passed] == [
        ("AAPL", "up_low", "sma_cross", "candidate"), ("AAPL", "down_low", "sma_cross", "kept")]


def test_near_misses_are_one_per_uncovered_cell_fewest_failed_rules_then_best_oos_sharpe():
    s = summarize_params(two_strategy_file())

    # AAPL up_low has an active entry: its failed rsi_reversion is no near miss; no-trade cells are none either.
    assert s.failed_cells == 2
    assert [(m.symbol, m.regime, m.strategy, m.failed) for m in s.near_misses] == [
        ("MSFT", "down_low", "rsi_reversion", ("stability 0.3 < 0.5",)),      # one rule, OOS Sharpe 0.9
        ("MSFT", "up_low", "sma_cross", ("deflated_sharpe 0.41 < 0.95",)),    # one rule beats two with a better Sharpe
    ]
    assert s.near_misses[1].text() == "MSFT up_low sma_cross(fast=10 slow=50): deflated_sharpe 0.41 < 0.95"


def test_lines_name_the_verdict_counts_near_misses_and_the_target_out_of_sample():
    target = (TargetRow(strategy="sma_cross", symbol="AAPL", sessions=250, mean_per_session=0.0012),
              TargetRow(strategy="sma_cross", symbol="MSFT", sessions=250, mean_per_session=-0.0004))

    lines = summary_lines(summarize_params(two_strategy_file(), target))

    assert lines[0] == "verdict: PROMOTED (1 of 9 candidates passed the gate)"
    assert lines[1].startswith("gate: OOS Sharpe > 0, deflated Sharpe >= 0.95, PBO <= 0.5")
    assert lines[2] == ("entries: 9: 2 active (1 kept from the params in force), 7 flat (5 failed the gate, "
                        "2 had no combination with enough trades)")
    assert "  active: AAPL down_low sma_cross(fast=10 slow=50): OOS Sharpe 0.80 (kept from the params in force)" in lines
    assert "best candidates that failed the gate (2 of 2 cells):" in lines
    assert lines[-1] == ("out of sample vs the 0.5-1%/day goal: 0 of 2 (strategy, symbol) reached it; "
                         "best AAPL sma_cross +0.120%/session over 250 sessions")
    assert len(lines) <= 12  # a few lines in a cron log


@pytest.mark.parametrize(("previous", "outcome"), [("a" * 64, "REJECTED, the params in force stay"),
                                                    (None, "REJECTED, nothing was in force: flat everywhere")])
def test_a_rejected_file_says_what_stays_in_force(previous, outcome):
    pf = params_file([failed("AAPL", "all", "oos_trades 3 < 10")], promoted=False,
                     verdict=Verdict(promoted=False, reasons=("rejected: none of 1 candidates passed the gate",),
                                     previous_sha256=previous))

    lines = summary_lines(summarize_params(pf))

    assert lines[0] == f"verdict: {outcome} (none of 1 candidates passed the gate)"
    assert lines[-1] == "out of sample vs the 0.5-1%/day goal: no walk-forward record"


def test_the_file_round_trips_and_a_foreign_file_is_named(tmp_path):
    s = summarize_params(two_strategy_file(), (TargetRow(strategy="sma_cross", symbol="AAPL", sessions=3,
                                                         mean_per_session=0.001),))

    assert load_summary(write_summary(s, tmp_path / "summary.json")) == s
    (tmp_path / "bad.json").write_text('{"schema_version": 2}')
    with pytest.raises(ValueError, match="bad.json: not a nightly summary"):
        load_summary(tmp_path / "bad.json")
