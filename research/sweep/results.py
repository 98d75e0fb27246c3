"""Reading sweep results: the best params per (symbol, regime), top-N, the walk-forward choice.

Regime attribution (the rule the live bridge follows too): a bar's return belongs to the regime
label of the session the bar is in (a label known before that session opened); a trade belongs to
the regime of the session in which it was entered. So "the best params for regime R" are the
params whose bars and entries inside R-labelled sessions did best, which is exactly what the live
bridge applies when today's label is R.
"""

from __future__ import annotations

import pandas as pd

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
