"""Reading sweep results: the best params per (symbol, regime), top-N, walk-forward choice, heatmaps.

Regime attribution (the rule the live bridge follows too): a bar's return belongs to the regime
label of the session the bar is in (a label known before that session opened); a trade belongs to
the regime of the session in which it was entered. So "the best params for regime R" are the
params whose bars and entries inside R-labelled sessions did best, which is exactly what the live
bridge applies when today's label is R.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # plotly is imported lazily: the CLI's other commands should not pay for it
    import plotly.graph_objects as go

OBJECTIVES = ("sharpe", "sortino", "calmar", "total_return", "expectancy")


def check_objective(objective: str) -> str:
    """The objective name, or ValueError naming the valid ones."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    return objective


def best(results: pd.DataFrame, objective: str, min_trades: int = 1, split: str = "full") -> pd.DataFrame:
    """The best row per (symbol, regime) by ``objective`` among rows with >= min_trades trades.

    Ties go to the earliest combination (lowest ``combo``), so the choice is reproducible.
    """
    check_objective(objective)
    rows = results[(results["split"] == split) & (results["trades"] >= min_trades) & results[objective].notna()]
    rows = rows.sort_values(["symbol", "regime", objective, "combo"], ascending=[True, True, False, True])
    return rows.groupby(["symbol", "regime"], sort=True).head(1).reset_index(drop=True)


def top(results: pd.DataFrame, objective: str, n: int = 10, split: str = "full", regime: str = "all",
        min_trades: int = 1) -> pd.DataFrame:
    """The n best rows of one split and regime by the objective."""
    check_objective(objective)
    rows = results[(results["split"] == split) & (results["regime"] == regime) & (results["trades"] >= min_trades)]
    return rows.sort_values([objective, "combo"], ascending=[False, True]).head(n).reset_index(drop=True)


def walk_forward(results: pd.DataFrame, objective: str, min_trades: int = 1, regime: str = "all") -> pd.DataFrame:
    """Per symbol and split: the combo chosen on train (only), and its test-window metrics."""
    check_objective(objective)
    out = []
    for (sym, split), train in results[results["split"].str.startswith("train-") & (results["regime"] == regime)].groupby(["symbol", "split"]):
        ok = train[(train["trades"] >= min_trades) & train[objective].notna()]
        if ok.empty:
            continue
        chosen = ok.sort_values([objective, "combo"], ascending=[False, True]).iloc[0]
        test_name = split.replace("train-", "test-")
        test = results[(results["symbol"] == sym) & (results["split"] == test_name) & (results["regime"] == regime)
                       & (results["combo"] == chosen["combo"])]
        if not test.empty:
            row = test.iloc[0].copy()
            row["train_" + objective] = chosen[objective]
            out.append(row)
    return pd.DataFrame(out).reset_index(drop=True)


def heatmap_html(results: pd.DataFrame, x: str, y: str, objective: str, path: str, split: str = "full",
                 title: str | None = None) -> str:
    """Write ``heatmap_figure`` as a standalone HTML page (plotly.js inlined) and return its path."""
    fig = heatmap_figure(results, x, y, objective, split=split, title=title)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def heatmap_figure(results: pd.DataFrame, x: str, y: str, objective: str, split: str = "full",
                   title: str | None = None) -> go.Figure:
    """A plotly heatmap Figure of the objective over params x and y, one panel per regime.

    Pass one symbol's rows: other params (and exit rules) are reduced by their max, so each cell
    shows the best the other dimensions can do at that (x, y). The colour scale is centred on 0
    and clipped at the 95th percentile of |objective|, so a thin regime's outliers do not wash
    out the others.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = results[results["split"] == split]
    for name in (x, y):
        if name not in rows:
            raise ValueError(f"heatmap param {name!r} is not a column of the results")
    regimes = sorted(rows["regime"].unique(), key=lambda r: (r != "all", r))
    cols = min(3, len(regimes))
    n_rows = int(np.ceil(len(regimes) / cols))
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=regimes, x_title=x, y_title=y)
    values = rows[objective].to_numpy(dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    bound = float(np.quantile(finite, 0.95)) if finite.size else 1.0
    for i, regime in enumerate(regimes):
        grid = rows[rows["regime"] == regime].pivot_table(index=y, columns=x, values=objective, aggfunc="max")
        fig.add_trace(go.Heatmap(z=grid.to_numpy(), x=grid.columns, y=grid.index, coloraxis="coloraxis",
                                 hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>{objective}=%{{z:.3f}}<extra>{regime}</extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title=title or f"{objective} over {x} x {y} ({split})", height=300 * n_rows + 100,
                      coloraxis={"colorscale": "RdYlGn", "cmid": 0.0, "cmin": -bound, "cmax": bound,
                                 "colorbar": {"title": objective}})
    return fig
