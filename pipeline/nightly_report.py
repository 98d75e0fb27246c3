"""The nightly run's HTML report: what was chosen, why, how it did out of sample, and what changed.

One self-contained page (``pipeline.run_report``) that leads with what a person needs: the summary
(``pipeline.nightly_summary``, the same one ``tradelab nightly`` prints): the verdict and the gate,
what passed, the best candidates with the rule each failed, the out-of-sample record against the
users' return target. Then every entry, flat ones folded away; equity and drawdowns in and out of
sample; per-regime heatmaps of the objective; the regime timeline; the changes against the params
in force; provenance.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_lake import Lake
from research.sweep.chunks import DEPLOY

from .nightly import NightlyResult
from .nightly_summary import TARGET_DAILY, NightlySummary, no_trades, summarize, summary_lines, target_rows
from .params_store import diff, params_text
from .run_report import Fold, Section, build_report, equity_figure, regime_timeline_figure
from .sweep_report import heatmap_figure

NO_TRADES_TEXT = "no combination with enough trades: flat"  # the gate column of such an entry
__all__ = ["TARGET_DAILY", "entries_section", "entries_table", "summary_section", "target_table", "write_report"]


def entries_table(result: NightlyResult) -> pd.DataFrame:
    """One row per entry of the candidate file, by symbol and regime: its evidence and the gate's verdict."""
    rows = []
    for e in sorted(result.params.entries, key=lambda e: (e.symbol, e.regime, e.strategy)):
        oos = e.out_of_sample
        rows.append({"symbol": e.symbol, "regime": e.regime, "strategy": e.strategy, "status": e.status,
                     "source": e.source, "params": "" if no_trades(e) else params_text(e.params),
                     "stop_loss": e.exit_rules.stop_loss, "is_sharpe": e.in_sample.sharpe,
                     "oos_sharpe": oos.sharpe if oos else None, "oos_trades": e.oos_trades,
                     "deflated_sharpe": e.deflated_sharpe, "pbo": e.pbo, "stability": e.stability,
                     "gate": _gate_text(e)})
    return pd.DataFrame(rows).round(4)


def _gate_text(e) -> str:
    """The gate column: pass, nothing eligible, or the failed rules (shortest form that is still exact)."""
    if e.gate.passed:
        return "pass" + (" (kept from the params in force)" if e.source == "kept" else "")
    if no_trades(e):
        return NO_TRADES_TEXT
    return "; ".join(e.gate.reasons)


def target_table(result: NightlyResult | NightlySummary) -> pd.DataFrame:
    """Out-of-sample mean return per session of each (strategy, symbol), against the 0.5-1%/day goal."""
    rows = result.target if isinstance(result, NightlySummary) else target_rows(result)
    return pd.DataFrame([{"strategy": t.strategy, "symbol": t.symbol, "oos_sessions": t.sessions,
                          "mean_per_session_%": round(100 * t.mean_per_session, 4), "target_%": "0.5-1.0",
                          "reached": "yes" if t.reached else "no"} for t in rows])


def summary_section(s: NightlySummary) -> Section:
    """The page's opening: the summary's lines (as the console prints them), then the target's table."""
    lines = [f"\u2022 {line.strip()}" if line.startswith(" ") else line for line in summary_lines(s)]
    return Section("Summary", "", ["\n\n".join(lines), target_table(s) if s.target else "no walk-forward record",
                                   "Out of sample means the walk-forward: params chosen on each train window, traded "
                                   "on the next test window. The 0.5-1%/day goal is shown against it, never tuned "
                                   "toward it."])


def entries_section(result: NightlyResult) -> Section:
    """Every entry by (symbol, regime): the active ones in view, the flat ones folded away (not dropped)."""
    table = entries_table(result)
    flat = table[table["status"] == "flat"]
    empty = flat["gate"] == NO_TRADES_TEXT
    items: list = [table[table["status"] == "active"] if (table["status"] == "active").any()
                   else "no entry is active: the live bridge trades nothing from this file"]
    if (~empty).any():
        items.append(Fold(f"{int((~empty).sum())} flat entries that failed the gate", [flat[~empty]]))
    if empty.any():
        items.append(Fold(f"{int(empty.sum())} flat entries (no combination had enough trades)", [flat[empty]]))
    return Section("Every entry", "One row per (symbol, regime, strategy): the params, the evidence and the "
                   "gate's verdict. Click a folded line to open it.", items)


def equity_section(result: NightlyResult) -> Section:
    """Per strategy (and per swept pair or basket): each symbol's walk-forward (out-of-sample) equity and the
    chosen params' deploy window."""
    figs = []
    for run in result.all_runs:
        curves, starts = {}, {}
        for c in run.choices:
            if c.regime != "all":
                continue
            if c.oos_returns is not None and len(c.oos_returns):
                curves[f"{c.symbol} walk-forward (out of sample)"] = (1 + c.oos_returns).cumprod()
                starts[f"{c.symbol} walk-forward (out of sample)"] = c.oos_returns.index[0]
            if c.is_returns is not None and len(c.is_returns):
                curves[f"{c.symbol} chosen params, {c.window} window (in sample)"] = (1 + c.is_returns).cumprod()
                starts[f"{c.symbol} chosen params, {c.window} window (in sample)"] = None
        if curves:
            figs.append(equity_figure(curves, starts, title=f"{run.strategy}: equity and drawdown"))
    return Section("Equity in and out of sample",
                   "Out of sample = the walk-forward: params chosen on each train window, traded on the next test "
                   "window, stitched. In sample = the params chosen for tomorrow, on the window they were chosen on.",
                   figs or ["no equity to show (nothing was chosen)"])


def heatmap_section(result: NightlyResult, objective: str) -> Section:
    """The objective over the first two grid params, one panel per regime, per strategy and symbol."""
    items: list = []
    for run in result.all_runs:
        names = [n for n, v in run.spec.grid if len(v) > 1]
        if len(names) < 2:
            continue
        for sym in run.spec.symbols:
            rows = run.results[run.results["symbol"] == sym]
            if rows.empty:  # a pair no selection window screened in: never swept
                continue
            split = DEPLOY if DEPLOY in set(rows["split"]) else "full"
            items.append(heatmap_figure(rows, names[0], names[1], objective, split=split,
                                        title=f"{sym} {run.strategy}: {objective} over {names[0]} x {names[1]} "
                                              f"({split} window, best over the other dimensions)"))
    return Section("Per-regime heatmaps", "", items or ["the grids have fewer than two swept params"])


def regime_section(lake: Lake, result: NightlyResult) -> Section:
    """The regime label of every session, shaded under the benchmark's close."""
    figs = []
    for sym, frame in result.regimes.items():
        arr = lake.load_arrays(sym, "1Day")
        ts = pd.to_datetime(arr["ts"], unit="us", utc=True).tz_convert("America/New_York").tz_localize(None).normalize()
        close = pd.Series(arr["close"], index=ts, name=sym)
        labels = pd.Series(frame["label"].to_numpy(), index=pd.DatetimeIndex(frame["session"]), name="label")
        start = pd.Timestamp(result.params.data.start)
        figs.append(regime_timeline_figure(labels[labels.index >= start], close[close.index >= start],
                                           title=f"{sym}: regime per session (known before the open)"))
    return Section("Regime timeline", "", figs or ["regimes were not used (by_regime off)"])


def changes_table(result: NightlyResult) -> pd.DataFrame | str:
    """What this file changes against the params in force."""
    if result.previous is None:
        return "no params were in force: this is the first file"
    rows = diff(result.previous, result.params)
    if not rows:
        return "no changes against the params in force"
    return pd.DataFrame([{"change": r.change, "strategy": r.strategy, "symbol": r.symbol, "regime": r.regime,
                          "fields": ", ".join(r.fields), "detail": r.detail} for r in rows])


def write_report(lake: Lake, result: NightlyResult, path: str | Path, summary: NightlySummary | None = None) -> Path:
    """Build the page at ``path`` (atomically) and return it; it opens with ``summary`` (default: ``summarize``)."""
    pf = result.params
    summary = summary if summary is not None else summarize(result)
    if summary.params_sha256 != pf.sha256():
        raise ValueError("the summary is of another params file than this result's")
    verdict = "PROMOTED" if pf.verdict.promoted else "REJECTED: the params in force stay"
    sections = [
        summary_section(summary),
        entries_section(result),
        equity_section(result),
        heatmap_section(result, pf.selection.objective),
        regime_section(lake, result),
        Section("What changed against the params in force", "", [changes_table(result)]),
        Section("Provenance", "", [pd.DataFrame([{
            "created_at": pf.created_at.isoformat(), "code_version": pf.code_version, "timeframe": pf.data.timeframe,
            "data": f"{pf.data.start} .. {pf.data.end}", "bars_hash": " ".join(f"{k}:{v}" for k, v in pf.data.bars_hash.items()),
            "sweeps": " ".join(pf.selection.sweep_ids), "walk_forward": pf.selection.walk_forward,
            "objective": pf.selection.objective, "notebook": pf.run.notebook}]).T.rename(columns={0: ""})]),
    ]
    return build_report(path, f"tradelab nightly {pf.created_at:%Y-%m-%d %H:%M} UTC: {verdict}", sections,
                        generated_at=pf.created_at)
