"""The nightly run's HTML report: what was chosen, why, how it did out of sample, and what changed.

One self-contained page (``pipeline.run_report``): the verdict and every entry with its gate
reasons; an honest line on the users' return target (out-of-sample only); equity and drawdowns
in and out of sample; per-regime heatmaps of the objective; the regime timeline; the changes
against the params in force.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_lake import Lake
from research.sweep.chunks import DEPLOY

from .nightly import NightlyResult
from .params_store import diff, params_text
from .run_report import Section, build_report, equity_figure, regime_timeline_figure
from .sweep_report import heatmap_figure

TARGET_DAILY = (0.005, 0.01)  # the users' stated goal: 0.5-1% a day (STRATEGY_DEFAULTS.md)


def entries_table(result: NightlyResult) -> pd.DataFrame:
    """One row per entry of the candidate file: what it trades, its evidence and the gate's verdict."""
    rows = []
    for e in result.params.entries:
        oos = e.out_of_sample
        rows.append({"strategy": e.strategy, "symbol": e.symbol, "regime": e.regime, "status": e.status,
                     "source": e.source, "params": params_text(e.params) if e.status == "active" else "",
                     "stop_loss": e.exit_rules.stop_loss, "is_sharpe": e.in_sample.sharpe,
                     "oos_sharpe": oos.sharpe if oos else None, "oos_trades": e.oos_trades,
                     "deflated_sharpe": e.deflated_sharpe, "pbo": e.pbo, "stability": e.stability,
                     "gate": _gate_text(e)})
    return pd.DataFrame(rows).round(4)


def _gate_text(e) -> str:
    """The gate column: pass, nothing eligible, or the failed rules (shortest form that is still exact)."""
    if e.gate.passed:
        return "pass" + (" (kept from the params in force)" if e.source == "kept" else "")
    if any(r.startswith("status flat") for r in e.gate.reasons):
        return "no combination with enough trades: flat"
    return "; ".join(e.gate.reasons)


def target_table(result: NightlyResult) -> pd.DataFrame:
    """Out-of-sample mean return per session of each (strategy, symbol), against the 0.5-1%/day goal."""
    rows = []
    for run in result.runs:
        for c in run.choices:
            if c.regime != "all" or c.oos_returns is None or not len(c.oos_returns):
                continue
            daily = (1 + c.oos_returns).groupby(c.oos_returns.index.tz_convert("America/New_York").date).prod() - 1
            mean = float(daily.mean())
            rows.append({"strategy": run.strategy, "symbol": c.symbol, "oos_sessions": len(daily),
                         "mean_per_session_%": round(100 * mean, 4), "target_%": "0.5-1.0",
                         "reached": "yes" if mean >= TARGET_DAILY[0] else "no"})
    return pd.DataFrame(rows)


def equity_section(result: NightlyResult) -> Section:
    """Per strategy: each symbol's walk-forward (out-of-sample) equity and the chosen params' deploy window."""
    figs = []
    for run in result.runs:
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
    for run in result.runs:
        names = [n for n, v in run.spec.grid if len(v) > 1]
        if len(names) < 2:
            continue
        for sym in run.spec.symbols:
            rows = run.results[run.results["symbol"] == sym]
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


def write_report(lake: Lake, result: NightlyResult, path: str | Path) -> Path:
    """Build the page at ``path`` (atomically) and return it."""
    pf = result.params
    verdict = "PROMOTED" if pf.verdict.promoted else "REJECTED: the params in force stay"
    g = pf.gate
    sections = [
        Section("Verdict", f"{verdict}. Gate: out-of-sample Sharpe > {g.min_oos_sharpe}, deflated Sharpe >= "
                f"{g.min_deflated_sharpe}, PBO <= {g.max_pbo}, >= {g.min_oos_trades} out-of-sample trades, "
                f"stability >= {g.min_stability}.", [pf.verdict.reasons[0] + " (each entry's reasons are in its gate column)", entries_table(result)]),
        Section("The return target, out of sample", "The users' goal is 0.5-1% a day. This is the walk-forward "
                "record of each strategy's choice for all sessions; it is not tuned toward the goal.",
                [target_table(result)]),
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
