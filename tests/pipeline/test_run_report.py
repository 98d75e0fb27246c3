"""The nightly report page: built from a real sample lake and sweep, opened in headless Chromium."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from data_lake import Lake
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.run_report import (
    Section,
    build_report,
    equity_figure,
    regime_colour,
    regime_spans,
    regime_timeline_figure,
    render_report,
)
from pipeline.sweep import run_sweep
from pipeline.sweep_report import heatmap_figure
from research.exits import ExitRules
from research.regimes import RegimeParams, regimes_from_daily, save_regimes
from research.sweep.plan import SweepSpec
from research.sweep.results import best
from tests.browser import Chromium

EXTERNAL = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)


def daily_close(lake: Lake, symbol: str) -> pd.Series:
    """A symbol's daily closes indexed by session date (naive, like the regimes' sessions)."""
    arr = lake.load_arrays(symbol, "1Day")
    ts = pd.to_datetime(arr["ts"], unit="us", utc=True).tz_convert("America/New_York").tz_localize(None)
    return pd.Series(arr["close"], index=ts.normalize(), name=symbol)


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    """A report page built like the nightly run: equity, regimes, a per-regime heatmap, tables."""
    lake = Lake(tmp_path_factory.mktemp("report") / "lake")
    for sym in ("AAPL", "MSFT", "IBM"):
        lake.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    arr = lake.load_arrays("IBM", "1Day")
    regimes = regimes_from_daily(arr["ts"], arr["open"], arr["high"], arr["low"], arr["close"], RegimeParams())
    save_regimes(lake, "IBM", regimes, RegimeParams())
    spec = SweepSpec(strategy="sma_cross", symbols=("AAPL",), grid=(("fast", (5, 10, 20)), ("slow", (20, 50, 100))),
                     rules=(ExitRules(allow_short=False),), fees=0.001, by_regime=True, benchmark="IBM")
    results = run_sweep(lake, spec)
    curves = {s: (c := daily_close(lake, s)) / c.iloc[0] for s in ("AAPL", "MSFT")}
    oos = curves["AAPL"].index[int(len(curves["AAPL"]) * 0.7)]
    figures = [equity_figure(curves["AAPL"], oos, title="AAPL"), equity_figure(curves, oos, title="All"),
               regime_timeline_figure(regimes.set_index("session")["label"], daily_close(lake, "IBM")),
               heatmap_figure(results, "fast", "slow", "sharpe", title="AAPL sharpe")]
    sections = [Section("Equity", "Buy and hold.\n\nOut-of-sample is shaded.", figures[:2]),
                Section("Regimes", "IBM as the benchmark.", [figures[2]]),
                Section("Sweep", "", [figures[3], best(results, "sharpe"), "Best <params> per regime."])]
    page = build_report(tmp_path_factory.mktemp("out") / "nightly.html", "Nightly run", sections,
                        generated_at=datetime(2024, 5, 1, 22, 0, tzinfo=timezone.utc))
    return page, len(figures), regimes


@pytest.fixture(scope="module")
def browser():
    with Chromium(timeout=60) as b:
        yield b


def test_every_plot_renders_without_console_errors(nightly, browser):
    page, n_figures, _ = nightly

    seen = browser.check(page)

    assert seen.errors == []
    assert seen.plots == n_figures and seen.rendered == n_figures
    assert seen.title == "Nightly run"


def test_page_is_self_contained_with_plotlyjs_once_and_escaped_text(nightly):
    text = nightly[0].read_text(encoding="utf-8")

    assert EXTERNAL.search(text) is None
    assert text.count(get_plotlyjs()[:300]) == 1
    assert "Generated at 2024-05-01T22:00:00+00:00" in text
    assert "Best &lt;params&gt; per regime." in text and "<params>" not in text
    assert '<table class="dataframe report">' in text


def test_a_javascript_error_is_reported(tmp_path, browser):
    page = tmp_path / "bad.html"
    page.write_text("<html><head><title>bad</title></head><body>"
                    "<script>console.error('boom')</script><script>undefinedFn()</script></body></html>")

    seen = browser.check(page)

    assert any("undefinedFn" in e for e in seen.errors)
    assert any("boom" in e for e in seen.errors)
    assert seen.title == "bad"


def test_a_plot_with_broken_data_is_counted_as_not_rendered(tmp_path, browser):
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2]))
    broken = ('<div id="broken" class="plotly-graph-div" style="height:300px"></div>'
              '<script>Plotly.newPlot("broken", JSON.parse("{not json"))</script>')
    page = build_report(tmp_path / "broken.html", "broken", [Section("ok", items=[fig])])
    page.write_text(page.read_text().replace("</body>", broken + "</body>"))

    seen = browser.check(page, settle=1.0)

    assert seen.plots == 2 and seen.rendered == 1
    assert any("JSON" in e for e in seen.errors)


class ExplodingFigure(go.Figure):
    def to_html(self, *args, **kwargs):
        raise RuntimeError("figure failed")


def test_build_report_leaves_no_partial_file_when_a_figure_raises(tmp_path):
    old = build_report(tmp_path / "r.html", "yesterday", [Section("s", "fine")]).read_bytes()
    sections = [Section("ok", items=[go.Figure()]), Section("bad", items=[ExplodingFigure()])]

    with pytest.raises(RuntimeError, match="figure failed"):
        build_report(tmp_path / "r.html", "today", sections)
    with pytest.raises(RuntimeError, match="figure failed"):
        build_report(tmp_path / "new.html", "today", sections)

    assert (tmp_path / "r.html").read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_section_rejects_what_it_cannot_render():
    with pytest.raises(TypeError, match="not int"):
        render_report("t", [Section("s", items=[42])])


def test_regime_runs_become_spans_and_one_trace_per_label(nightly):
    labels = nightly[2].set_index("session")["label"]

    spans = regime_spans(labels)
    fig = regime_timeline_figure(labels)

    assert spans["sessions"].sum() == len(labels)
    assert (spans["label"].to_numpy()[1:] != spans["label"].to_numpy()[:-1]).all()
    assert (spans["start"].iloc[1:].to_numpy() == spans["end"].iloc[:-1].to_numpy()).all()
    assert len(fig.data) == labels.nunique() < len(spans) < len(labels)


def test_regime_colours_share_a_hue_per_trend_and_deepen_with_vol():
    low, extreme, down = regime_colour("up_low"), regime_colour("up_extreme"), regime_colour("down_low")

    assert low.rsplit(",", 1)[0] == extreme.rsplit(",", 1)[0] != down.rsplit(",", 1)[0]
    assert float(low.rsplit(",", 1)[1].rstrip(")")) < float(extreme.rsplit(",", 1)[1].rstrip(")"))
    assert regime_colour("mystery") == regime_colour("mystery")


def test_equity_splits_at_oos_start_and_draws_the_drawdown():
    idx = pd.bdate_range("2020-01-01", periods=100)
    equity = pd.Series(np.r_[np.linspace(1, 2, 50), np.linspace(2, 1.5, 50)], index=idx)

    fig = equity_figure(equity, idx[60])
    several = equity_figure({"a": equity, "b": equity * 2}, {"a": idx[60], "b": None})

    inside, outside, drawdown = fig.data
    assert len(inside.x) == 60 and len(outside.x) == 41 and outside.x[0] == inside.x[-1]
    assert np.isclose(min(drawdown.y), 1.5 / 2 - 1) and max(drawdown.y) == 0
    assert [t.name for t in several.data] == ["a in-sample", "a out-of-sample", "a drawdown", "b", "b drawdown"]


def test_heatmap_figure_has_one_panel_per_regime(nightly):
    results = pd.DataFrame({"symbol": "AAPL", "fast": [5, 5, 10, 10] * 2, "slow": [20, 50, 20, 50] * 2,
                            "regime": ["all"] * 4 + ["up_low"] * 4, "split": "full", "combo": [0, 1, 2, 3] * 2,
                            "sharpe": np.arange(8.0) - 3, "trades": 5})

    fig = heatmap_figure(results, "fast", "slow", "sharpe")

    assert [t.type for t in fig.data] == ["heatmap", "heatmap"]
    assert fig.layout.title.text == "sharpe over fast x slow (full)"


def test_missing_chromium_skips_locally_but_fails_in_ci(monkeypatch):
    from tests import browser as driver

    monkeypatch.setattr(driver.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        driver.chromium_path()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        driver.chromium_path()
