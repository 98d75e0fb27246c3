"""Sweep results as pictures: the objective over two params, one heatmap panel per regime.

Which rows are read and how they are ranked is ``research.sweep.results``; a panel's cells follow
its regime attribution (a bar's return belongs to the regime of its session).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # plotly is imported lazily: the CLI's other commands should not pay for it
    import plotly.graph_objects as go


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
