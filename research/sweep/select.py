"""Choosing params from a sweep, with the evidence needed before trusting them.

For every (symbol, regime) of a sweep's results, ``choose`` picks the combination to use from now
on and measures how much that choice can be believed:

* **Selection window.** Without walk-forward: the full period. With walk-forward: the ``deploy``
  window (the most recent train-length window; anchored: everything), i.e. params for tomorrow
  are chosen by exactly the rule whose out-of-sample record the walk-forward measured.
* **Rule.** The highest ``objective`` among combinations with at least ``min_trades`` trades in
  the cell (window x regime); ties to the lowest combo (``research.walkforward.choose``).
* **Out of sample** (walk-forward only): per split, the combo chosen on train-i is scored on
  test-i; the test-window returns (the cell's bars: test window x regime) are stitched end to end
  (``research.walkforward.stitched_metrics``) and the test rows' trades are summed. The combo's
  simulation runs over the whole history (positions carry across window edges), so a test window
  sees the params as if they had been trading, without a cold start.
* **Deflated Sharpe** (Bailey & Lopez de Prado): the chosen combo's per-bar returns in the cell
  give SR, skew, kurtosis and n; ``n_trials`` = every combination of the grid (all were looked
  at); the variance of SR across trials comes from their (deannualized) Sharpe in the same cell.
  When several strategies compete for a cell, ``research.sweep.across`` recomputes it over every
  strategy's trials (``deflated_over_trials``).
* **PBO** by CSCV on the cell's per-bar returns of up to ``pbo_trials`` combinations (all of
  them, or an evenly spaced deterministic sample that always includes the chosen one).
* **Stability**: ``research.guards.neighbourhood_stability`` of the chosen point in the grid of
  the objective over every swept dimension (params and exit rules with more than one value).

Per-bar returns are recomputed here for the few combinations needed (signals, the fill convention
of ``research.exits`` and the accounting of ``research.metrics``), so the sweep itself never
stores them. A cell's returns are those of its bars (regime attribution as in ``results``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from data_lake import Lake

from ..exits import simulate_exits
from ..guards import deannualize_sharpe_variance, deflated_sharpe, pbo_cscv, point_stability, sharpe_stats
from ..metrics import equity_curve
from ..signals import get
from ..walkforward import choose as choose_one
from ..walkforward import stitched_metrics
from .plan import SweepSpec
from .chunks import DEPLOY, SymbolData, load_symbol, periods_per_year
from .results import check_objective

PBO_TRIALS = 256
PBO_SPLITS = 16
MATRIX_BYTES = 256 * 2**20  # cap of one PBO returns matrix (bars x trials x 8 bytes)


@dataclass(frozen=True)
class Choice:
    """The combination chosen for one (symbol, regime) cell and the evidence for it.

    ``combo`` is None when no combination had ``min_trades`` trades (nothing to trade: flat).
    Metrics are dicts of ``research.metrics.METRICS`` names (NaN where undefined); guards are NaN
    where they cannot be computed (e.g. too few bars for PBO), with the reason in ``notes``.
    """

    symbol: str
    regime: str
    window: str
    combo: int | None
    params: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    in_sample: dict = field(default_factory=dict)
    out_of_sample: dict | None = None
    oos_trades: int = 0
    n_trials: int = 0
    deflated_sharpe: float = math.nan
    pbo: float = math.nan
    stability: float = math.nan
    notes: tuple[str, ...] = ()
    is_returns: pd.Series | None = field(default=None, repr=False)  # cell returns, selection window
    oos_returns: pd.Series | None = field(default=None, repr=False)  # stitched test-window returns


def choose(lake: Lake, spec: SweepSpec, results: pd.DataFrame, objective: str = "sharpe", min_trades: int = 5, *,
           pbo_trials: int = PBO_TRIALS, pbo_splits: int = PBO_SPLITS) -> list[Choice]:
    """One ``Choice`` per (symbol, regime) of ``results`` (the rows ``run_sweep`` returned for ``spec``)."""
    check_objective(objective)
    params, rules, _ = spec.combos()
    window = DEPLOY if spec.walk_forward else "full"
    out = []
    for symbol in spec.symbols:
        rows = results[results["symbol"] == symbol]
        if rows.empty:
            raise ValueError(f"the results hold no rows for {symbol}")
        if window not in set(rows["split"]):
            raise ValueError(f"the results of {symbol} have no {window!r} window (too little data for the walk-forward?)")
        cells = _Cells(load_symbol(lake, spec, symbol), spec, params, rules)
        for regime in sorted(rows["regime"].unique(), key=lambda r: (r != "all", r)):
            out.append(cells.choice(rows[rows["regime"] == regime], regime, window, objective, min_trades,
                                    pbo_trials, pbo_splits))
    return out


def deflated_over_trials(r: np.ndarray, trial_sharpes: np.ndarray, n_trials: int,
                         ppy: float) -> tuple[float, tuple[str, ...]]:
    """Deflated Sharpe of the chosen cell returns ``r`` against ``n_trials`` trials whose (annualized)
    Sharpe ratios in the cell are ``trial_sharpes`` (NaN ignored); NaN and a note when undefined."""
    srs = np.asarray(trial_sharpes, float)
    srs = srs[np.isfinite(srs)]
    if len(srs) < 2:
        return math.nan, ("deflated Sharpe needs >= 2 trials with a Sharpe ratio",)
    try:
        st = sharpe_stats(r)
        var = deannualize_sharpe_variance(float(np.var(srs, ddof=1)), ppy)
        return deflated_sharpe(st.sr, st.n_obs, st.skew, st.kurt, n_trials, var), ()
    except ValueError as exc:
        return math.nan, (f"deflated Sharpe: {exc}",)


def choices_frame(choices: list[Choice]) -> pd.DataFrame:
    """One row per choice: symbol, regime, params and rules by name, is_/oos_ metrics and the guards."""
    rows = []
    for c in choices:
        row = {"symbol": c.symbol, "regime": c.regime, "window": c.window, "combo": c.combo, **c.params, **c.rules}
        row.update({f"is_{k}": v for k, v in c.in_sample.items()})
        row.update({f"oos_{k}": v for k, v in (c.out_of_sample or {}).items()})
        row.update(oos_trades=c.oos_trades, n_trials=c.n_trials, deflated_sharpe=c.deflated_sharpe, pbo=c.pbo,
                   stability=c.stability, notes="; ".join(c.notes))
        rows.append(row)
    return pd.DataFrame(rows)


class _Cells:
    """One symbol's data and a cache of per-bar returns by combo."""

    def __init__(self, data: SymbolData, spec: SweepSpec, params: list, rules: list) -> None:
        self.data, self.spec, self.params, self.rules = data, spec, params, rules
        self.ppy = periods_per_year(spec.timeframe)
        self.index = pd.to_datetime(data.ts, unit="us", utc=True)
        self._returns: dict[int, np.ndarray] = {}

    def returns(self, combo: int) -> np.ndarray:
        """Per-bar returns of one combination over the whole history (research.metrics accounting)."""
        if combo not in self._returns:
            p, r = self.params[combo // len(self.rules)], self.rules[combo % len(self.rules)]
            path = simulate_exits(self.data.bars, get(self.spec.strategy).signals(self.data.bars, p), r)
            self._returns[combo] = equity_curve(self.data.bars.close, path, self.spec.fees, self.spec.slippage).returns
        return self._returns[combo]

    def mask(self, window: str, regime: str) -> np.ndarray:
        """The cell's bars: inside the window and (unless "all") of the regime."""
        a, b = self.data.windows[self.data.window_names.index(window)]
        m = np.zeros(len(self.data.ts), bool)
        m[a:b] = True
        if regime != "all":
            m &= self.data.regimes == self.data.regime_names.index(regime)
        return m

    def choice(self, rows: pd.DataFrame, regime: str, window: str, objective: str, min_trades: int,
               pbo_trials: int, pbo_splits: int) -> Choice:
        sel = rows[rows["split"] == window].sort_values("combo")
        n_trials = len(self.params) * len(self.rules)
        picked = choose_one(sel, objective, min_trades)
        oos, oos_trades, oos_returns, notes = self.out_of_sample(rows, regime, objective, min_trades)
        if picked is None:
            return Choice(self.data.symbol, regime, window, None, out_of_sample=oos, oos_trades=oos_trades,
                          n_trials=n_trials, notes=(f"no combination has >= {min_trades} trades in {window}/{regime}",
                                                    *notes), oos_returns=oos_returns)
        row = sel.iloc[picked]
        combo = int(row["combo"])
        mask = self.mask(window, regime)
        r = self.returns(combo)[mask]
        dsr, note = self.deflated(r, sel, n_trials)
        notes += note
        pbo, note = self.pbo(sel, combo, mask, pbo_trials, pbo_splits)
        notes += note
        return Choice(
            self.data.symbol, regime, window, combo,
            params=asdict(self.params[combo // len(self.rules)]), rules=asdict(self.rules[combo % len(self.rules)]),
            in_sample={k: float(row[k]) for k in _metric_names(rows)}, out_of_sample=oos, oos_trades=oos_trades,
            n_trials=n_trials, deflated_sharpe=dsr, pbo=pbo, stability=self.stability(sel, combo, objective),
            notes=notes, is_returns=pd.Series(r, index=self.index[mask], name="returns"), oos_returns=oos_returns)

    def out_of_sample(self, rows: pd.DataFrame, regime: str, objective: str, min_trades: int):
        """Stitched test-window metrics of the combos chosen on each train window (None without splits)."""
        trains = sorted(s for s in rows["split"].unique() if s.startswith("train-"))
        if not trains:
            return None, 0, None, ()
        parts, stamps, trades, skipped = [], [], 0, []
        for train in trains:
            tr = rows[rows["split"] == train].sort_values("combo")
            picked = choose_one(tr, objective, min_trades)
            test = train.replace("train-", "test-")
            if picked is None:
                skipped.append(test)  # nothing eligible: flat in this test window (zero returns)
                m = self.mask(test, regime)
                parts.append(np.zeros(int(m.sum())))
                stamps.append(self.index[m])
                continue
            combo = int(tr.iloc[picked]["combo"])
            m = self.mask(test, regime)
            parts.append(self.returns(combo)[m])
            stamps.append(self.index[m])
            hit = rows[(rows["split"] == test) & (rows["combo"] == combo)]
            trades += int(hit["trades"].iloc[0]) if len(hit) else 0
        stitched = stitched_metrics(parts, self.ppy)
        metrics = {k: getattr(stitched, k) for k in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar")}
        series = pd.Series(np.concatenate(parts), index=stamps[0].append(stamps[1:]) if stamps else None, name="returns")
        notes = (f"flat (nothing eligible on train) in {', '.join(skipped)}",) if skipped else ()
        return metrics, trades, series, notes

    def deflated(self, r: np.ndarray, sel: pd.DataFrame, n_trials: int) -> tuple[float, tuple[str, ...]]:
        return deflated_over_trials(r, sel["sharpe"].to_numpy(float), n_trials, self.ppy)

    def pbo(self, sel: pd.DataFrame, combo: int, mask: np.ndarray, trials: int, splits: int):
        combos = sel["combo"].to_numpy(np.int64)
        n_bars = int(mask.sum())
        k = int(min(trials, max(2, MATRIX_BYTES // max(8 * n_bars, 1)), len(combos)))
        if k < 2:
            return math.nan, ("PBO needs >= 2 combinations",)
        pick = np.unique(np.r_[combos[np.linspace(0, len(combos) - 1, k).round().astype(int)], combo])
        s = min(splits, (n_bars // 4) // 2 * 2)  # blocks of >= 4 bars
        if s < 4:
            return math.nan, (f"PBO needs >= 16 bars in the cell, has {n_bars}",)
        matrix = np.stack([self.returns(int(c))[mask] for c in pick], axis=1)
        return pbo_cscv(matrix, n_splits=s, metric="sharpe").pbo, ()

    def stability(self, sel: pd.DataFrame, combo: int, objective: str) -> float:
        dims = [n for n, _ in self.spec.grid] + [n for n in asdict(self.rules[0])]
        table = pd.DataFrame([{**asdict(self.params[c // len(self.rules)]), **asdict(self.rules[c % len(self.rules)])}
                              for c in sel["combo"]], index=sel.index)
        at = int(np.flatnonzero(sel["combo"].to_numpy() == combo)[0])
        return point_stability(table[list(dict.fromkeys(dims))], sel[objective].to_numpy(float), at)


def _metric_names(rows: pd.DataFrame) -> list[str]:
    from ..metrics import METRICS

    return [m for m in METRICS if m in rows.columns]
