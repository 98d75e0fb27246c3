"""The nightly over two strategies: one strategy per (symbol, regime), deflated over every trial.

Real sample bars (AAPL, MSFT, IBM as the regime benchmark) in a real lake; sma_cross and
rsi_reversion swept per regime with walk-forward; the chosen strategy and its figures are checked
against the sweeps' own rows and choices.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from data_lake import Batch, Lake
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.nightly import NightlyConfig, nightly
from pipeline.params_store import write_candidate
from research.guards import deannualize_sharpe_variance, deflated_sharpe, sharpe_stats
from research.params import GateThresholds, RunInfo, dumps, loads
from research.sweep.chunks import DEPLOY
from tests.kit import entry, params_file

#: A gate every candidate with trades passes: only to exercise the promotion path, never a default.
OPEN_GATE = GateThresholds(min_oos_sharpe=-100.0, min_deflated_sharpe=0.0, max_pbo=1.0, min_oos_trades=0,
                           min_stability=0.0)
GRIDS = {"sma_cross": {"fast": (5, 10, 20), "slow": (50, 100)},  # 6 combinations
         "rsi_reversion": {"n": (7, 14), "lower": (25.0, 30.0)}}  # 4 combinations
RSI = {"n": 14, "lower": 30.0, "upper": 70.0, "exit_level": 50.0}
SMA = {"fast": 10, "slow": 50}


def config(gate: GateThresholds = OPEN_GATE) -> NightlyConfig:
    return NightlyConfig(symbols=("AAPL", "MSFT"), strategies=("sma_cross", "rsi_reversion"), grids=GRIDS,
                         lookback=None, walk_forward="2y:1y", stop_loss=(0.02,), min_trades=2, benchmark="IBM",
                         gate=gate)


def run_night(lake: Lake, params_dir: Path, gate: GateThresholds = OPEN_GATE):
    return nightly(lake, config(gate), params_dir=params_dir,
                   run=RunInfo(job="manual", notebook="test", run_dir=str(params_dir)))


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """One nightly over both strategies, nothing in force before it."""
    root = tmp_path_factory.mktemp("nightly")
    lake = Lake(root / "lake")
    lake.write_many([Batch(s, "1Day", sample_bars(s), sample_meta()) for s in ("AAPL", "MSFT", "IBM")])
    return lake, root, run_night(lake, root / "params")


def oos_sharpe(choice) -> float:
    v = (choice.out_of_sample or {}).get("sharpe")
    return v if v is not None and math.isfinite(v) else -math.inf


def test_each_cell_gets_one_entry_of_the_strategy_with_the_better_out_of_sample_objective(night):
    _, _, result = night
    runs = {r.strategy: r for r in result.runs}

    cells = [(e.symbol, e.regime) for e in result.params.entries]
    assert len(cells) == len(set(cells))  # one entry per (symbol, regime): at most one active strategy
    contested = 0
    for e in result.params.entries:
        choices = {s: next(c for c in r.choices if (c.symbol, c.regime) == (e.symbol, e.regime))
                   for s, r in runs.items()}
        eligible = {s: oos_sharpe(c) for s, c in choices.items() if c.combo is not None}
        if not eligible:
            assert e.status == "flat"
            continue
        contested += len(eligible) == 2
        assert e.strategy == max(eligible, key=lambda s: (eligible[s], -list(runs).index(s)))
        # the entry is the winner's deploy-window best by the objective, read off its sweep rows
        rows = runs[e.strategy].results
        sel = rows[(rows["symbol"] == e.symbol) & (rows["regime"] == e.regime) & (rows["split"] == DEPLOY)
                   & (rows["trades"] >= 2)]
        best = sel.loc[sel["sharpe"].idxmax()]
        assert {k: best[k] for k in e.params if k != "short"} == {k: v for k, v in e.params.items() if k != "short"}
        note = f"{e.symbol} {e.regime}: {e.strategy} chosen by out-of-sample sharpe ("
        assert any(r.startswith(note) for r in result.params.verdict.reasons), result.params.verdict.reasons
    assert contested >= 2, "the sample data should give cells where both strategies have a choice"
    # the sample data gives a symbol traded by sma_cross in one regime and rsi_reversion in another
    active = {(e.symbol, e.strategy) for e in result.params.entries if e.status == "active"}
    assert {s for s in ("AAPL", "MSFT") if (s, "sma_cross") in active and (s, "rsi_reversion") in active}


def test_n_trials_and_the_deflated_sharpe_count_every_strategys_trials(night):
    _, _, result = night
    runs = {r.strategy: r for r in result.runs}
    total = sum(r.results["combo"].nunique() for r in result.runs)

    assert total == 6 + 4
    assert {e.n_trials for e in result.params.entries} == {total}
    changed = 0
    for e in (e for e in result.params.entries if e.status == "active"):
        winner = next(c for c in runs[e.strategy].choices if (c.symbol, c.regime) == (e.symbol, e.regime))
        trials = np.concatenate([r.results[(r.results["symbol"] == e.symbol) & (r.results["regime"] == e.regime)
                                           & (r.results["split"] == DEPLOY)]["sharpe"].to_numpy(float)
                                 for r in result.runs])
        trials = trials[np.isfinite(trials)]
        st = sharpe_stats(winner.is_returns.to_numpy())
        want = deflated_sharpe(st.sr, st.n_obs, st.skew, st.kurt, total,
                               deannualize_sharpe_variance(float(np.var(trials, ddof=1)), 252.0))
        assert e.deflated_sharpe == pytest.approx(want, rel=1e-12, abs=1e-15)
        changed += not math.isclose(winner.deflated_sharpe, want)  # choose's own: this strategy's trials only
    assert changed  # pooling the trials changed the figure somewhere


def test_the_candidate_file_validates_and_round_trips(night):
    _, _, result = night

    back = loads(dumps(result.params))

    assert back == result.params
    assert result.params.verdict.promoted


def test_a_second_night_replaces_and_keeps_across_strategies(night, tmp_path: Path):
    lake, _, first = night
    active = [e for e in first.params.entries if e.status == "active"]
    top = max(active, key=lambda e: e.deflated_sharpe)
    keep = next(e for e in active if e is not top)
    # tonight's gate: only the best candidate of the first night passes (deflated Sharpe between it and the rest)
    second = max(e.deflated_sharpe for e in active if e is not top)
    gate = OPEN_GATE.model_copy(update={"min_deflated_sharpe": (top.deflated_sharpe + second) / 2})
    other = {"sma_cross": ("rsi_reversion", RSI), "rsi_reversion": ("sma_cross", SMA)}
    previous = params_file([entry(e.symbol, e.regime, strategy=other[e.strategy][0], params=other[e.strategy][1],
                                  deflated_sharpe=1.0) for e in (top, keep)], regimes=first.params.regimes)
    write_candidate(previous, tmp_path / "params" / "current.json")

    result = run_night(lake, tmp_path / "params", gate)

    by_cell = {(e.symbol, e.regime): e for e in result.params.entries}
    replaced, kept = by_cell[(top.symbol, top.regime)], by_cell[(keep.symbol, keep.regime)]
    assert (replaced.strategy, replaced.status, replaced.source) == (top.strategy, "active", "candidate")
    assert (kept.strategy, kept.status, kept.source) == (other[keep.strategy][0], "active", "kept")
    reasons = result.params.verdict.reasons
    assert f"{top.strategy} {top.symbol} {top.regime}: replaces {other[top.strategy][0]} {top.symbol} " \
           f"{top.regime} (active in the previous file)" in reasons
    assert any(r.startswith(f"{keep.strategy} {keep.symbol} {keep.regime}: kept the previous entry "
                            f"({other[keep.strategy][0]} {keep.symbol} {keep.regime})") for r in reasons)
    assert len(by_cell) == len(result.params.entries)  # still one entry per cell
