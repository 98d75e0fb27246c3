"""A swept rotation basket, promoted by the nightly, traded live exactly as backtested: the nightly's
params file (AAPL's per-regime single-symbol entries and the basket GOOG,MSFT/IBM for regime "all")
through the live runner, the real alpaca-py clients and the simulator in lockstep; every leg's fills
at the backtest's bars and prices, the benchmark never traded."""

from __future__ import annotations

import pytest

from data_lake import Batch, Lake
from data_lake.sources.sample import sample_bars, sample_meta
from live_bridge.parity import check
from live_bridge.replay import replay
from pipeline.nightly import NightlyConfig, nightly
from research.params import GateThresholds, RunInfo

#: A gate every candidate with trades passes: the file must hold an *active* basket (never a default).
OPEN_GATE = GateThresholds(min_oos_sharpe=-100.0, min_deflated_sharpe=0.0, max_pbo=1.0, min_oos_trades=0,
                           min_stability=0.0)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("swept_rotation")
    lake = Lake(root / "lake")
    lake.write_many([Batch(s, "1Day", sample_bars(s), sample_meta()) for s in ("AAPL", "MSFT", "IBM", "GOOG")])
    cfg = NightlyConfig(symbols=("AAPL",), strategies=("sma_cross",),
                        grids={"sma_cross": {"fast": (10, 20), "slow": (50,)},
                               "rotation": {"lookback": (5, 10), "rebalance": (3, 5), "top_k": (1,)}},
                        lookback="4y", end="2013-03-02", walk_forward="2y:1y", stop_loss=(0.02,), min_trades=2,
                        rotation=("GOOG,MSFT/IBM",), gate=OPEN_GATE)
    pf = nightly(lake, cfg, params_dir=root / "params",
                 run=RunInfo(job="manual", notebook="test", run_dir=str(root))).params
    return pf, replay(lake, pf, "2012-03-01", "2013-03-02", work_dir=root / "replay")


def test_the_swept_basket_trades_live_leg_for_leg_as_the_backtest(swept):
    pf, result = swept
    [basket] = [e for e in pf.entries if e.strategy == "rotation"]
    parity = check(result)

    assert basket.status == "active" and basket.symbol == "GOOG,MSFT/IBM" and basket.regime == "all"
    assert result.errors == []
    assert parity.ok, parity.first_divergence
    legs = result.fills[result.fills["client_order_id"].str.startswith("tl-rotation")]
    assert set(legs["symbol"]) == {"GOOG", "MSFT"} and len(legs) >= 10, "the basket traded too little to prove much"
    assert set(parity.trades["symbol"]) >= {"GOOG", "MSFT"}
    assert len(parity.equity) >= 240


def test_parity_fails_when_a_swept_basket_leg_fill_is_missing(swept):
    _, result = swept
    f = result.fills
    i = f.index[f["client_order_id"].str.startswith("tl-rotation")][1]
    broken = type(result)(**{**result.__dict__, "fills": f.drop(index=i).reset_index(drop=True)})

    parity = check(broken)

    assert not parity.ok and "rotation GOOG,MSFT/IBM" in parity.first_divergence
