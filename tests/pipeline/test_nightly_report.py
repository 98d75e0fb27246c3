"""The nightly report from a real nightly on a small sample lake: it opens with the summary, folds the flat rows."""

from __future__ import annotations

import re

import pytest

from data_lake import Lake
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.nightly import NightlyConfig, nightly
from pipeline.nightly_report import write_report
from pipeline.nightly_summary import load_summary, summarize, summarize_params, summary_lines, write_summary
from research.params import GateThresholds, RunInfo
from research.params import load as load_params
from pipeline.params_store import write_candidate
from tests.browser import check_page

#: Lets candidates with a positive out-of-sample Sharpe through, so one night has active, failed and empty cells.
MIDDLE_GATE = GateThresholds(min_oos_sharpe=0.0, min_deflated_sharpe=0.0, max_pbo=1.0, min_oos_trades=0,
                             min_stability=0.0)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """Two symbols x two strategies per regime, tiny grids: the report, the summary and the params file."""
    root = tmp_path_factory.mktemp("nightly")
    lake = Lake(root / "lake")
    for sym in ("MSFT", "IBM"):
        lake.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    cfg = NightlyConfig(symbols=("MSFT", "IBM"), strategies=("sma_cross", "rsi_reversion"),
                        grids={"sma_cross": {"fast": (5, 10, 20), "slow": (50, 100)},
                               "rsi_reversion": {"n": (7, 14), "lower": (25.0, 30.0)}},
                        lookback=None, walk_forward="2y:1y", stop_loss=(0.02,), min_trades=2, gate=MIDDLE_GATE)
    result = nightly(lake, cfg, params_dir=root / "params", run=RunInfo(job="manual", notebook="test", run_dir=str(root)))
    summary = summarize(result)  # as the notebook does
    write_candidate(result.params, root / "params.json")
    write_summary(summary, root / "summary.json")
    page = write_report(lake, result, root / "report.html", summary)
    return result, page, root


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def test_the_night_has_active_failed_and_empty_cells(night):
    statuses = {(e.status, e.gate.passed, e.gate.reasons[:1] == ("status flat: no combination had enough trades to choose",))
                for e in night[0].params.entries}

    assert {("active", True, False), ("flat", False, False), ("flat", False, True)} <= statuses


def test_the_page_opens_with_the_summary_then_every_entry(night):
    _, page, root = night
    body = page.read_text(encoding="utf-8").split("<body>", 1)[1]

    titles = re.findall(r"<h2>(.*?)</h2>", body)
    first = _between(body, "<section>", "</section>")

    assert titles[:2] == ["Summary", "Every entry"]
    assert body.index("<section>") == body.index("<section><h2>Summary</h2>")  # nothing but the title before it
    lines = summary_lines(load_summary(root / "summary.json"))
    assert first.index("verdict: PROMOTED") < first.index("gate: OOS Sharpe") < first.index("entries: ")
    for line in lines:  # the console's lines, word for word (escaped, bullets for the indented ones)
        text = line.strip().replace("<", "&lt;").replace(">", "&gt;")
        assert text in first, text
    assert "best candidates that failed the gate" in first and "out of sample vs the 0.5-1%/day goal" in first


def test_flat_rows_are_folded_not_dropped(night):
    result, page, _ = night
    body = page.read_text(encoding="utf-8")
    section = _between(body, "<section><h2>Every entry</h2>", "</section>")
    folds = re.findall(r'<details class="fold"><summary>(.*?)</summary>(.*?)</details>', section, re.S)
    visible = re.sub(r"<details.*?</details>", "", section, flags=re.S)
    entries = result.params.entries
    empty = sum(e.gate.reasons[:1] == ("status flat: no combination had enough trades to choose",) for e in entries)
    flat = sum(e.status == "flat" for e in entries)

    assert [label for label, _ in folds] == [f"{flat - empty} flat entries that failed the gate",
                                             f"{empty} flat entries (no combination had enough trades)"]
    assert visible.count("<td>flat</td>") == 0 and visible.count("<td>active</td>") == len(entries) - flat
    assert sum(inner.count("<td>flat</td>") for _, inner in folds) == flat


def test_the_summary_file_holds_the_params_files_numbers(night):
    _, _, root = night
    pf = load_params(root / "params.json")
    s = load_summary(root / "summary.json")

    assert s.params_sha256 == pf.sha256() and s.promoted == pf.verdict.promoted
    assert s.verdict == pf.verdict.reasons[0]
    assert (s.entries, s.active, s.kept, s.flat) == (
        len(pf.entries), sum(e.status == "active" for e in pf.entries), sum(e.source == "kept" for e in pf.entries),
        sum(e.status == "flat" for e in pf.entries))
    assert summarize_params(pf, s.target) == s  # the file alone gives the same summary
    assert {(t.strategy, t.symbol) for t in s.target} == {(st, sym) for st in ("sma_cross", "rsi_reversion")
                                                         for sym in ("MSFT", "IBM")}


def test_a_summary_of_another_file_is_refused(night, tmp_path):
    result, _, root = night
    other = summarize_params(result.params.model_copy(update={"entries": result.params.entries[:1]}))

    with pytest.raises(ValueError, match="another params file"):
        write_report(Lake(root / "lake"), result, tmp_path / "r.html", other)


def test_the_page_renders_in_chromium_with_the_folds(night):
    seen = check_page(night[1])

    assert seen.errors == [] and seen.plots == seen.rendered and seen.plots > 0, seen
