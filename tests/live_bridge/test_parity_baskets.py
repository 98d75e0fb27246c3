"""Multi-leg strategies live: pairs and rotation through the live runner, the real alpaca-py clients
and the simulator in lockstep, leg for leg the fills of research.baskets' weights; the broker rules
of ``effective`` (no late entry, never a flip in one order); and the check can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from live_bridge.parity import check
from live_bridge.replay import replay
from research import baskets
from research.params import DataWindow
from tests.kit import entry, params_file

PAIR = ("pairs", "AAPL/MSFT", {"lookback": 30, "entry_z": 1.0, "exit_z": 0.2, "stop_z": 3.0, "max_hold": 20,
                               "min_corr": -1.0, "short": True})
ROTATION = ("rotation", "GOOG,IBM/AAPL", {"lookback": 5, "rebalance": 5, "top_k": 1, "short": True})


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from data_lake import Lake
    from data_lake.sources.sample import sample_bars, sample_meta

    lk = Lake(tmp_path_factory.mktemp("baskets") / "lake")
    for sym in ("AAPL", "MSFT", "IBM", "GOOG"):
        lk.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    return lk


def file_of(*cases):
    entries = [entry(symbol=sym, strategy=s, params=p) for s, sym, p in cases]
    syms = sorted({x for s, sym, _ in cases for x in baskets.legs(s, sym).data})
    data = DataWindow(timeframe="1Day", start="2005-01-03", end="2013-03-01", symbols=syms,
                      bars_hash={s: "x" for s in syms})
    return params_file(entries, data=data)


@pytest.fixture(scope="module")
def both(lake, tmp_path_factory):
    work = tmp_path_factory.mktemp("both")
    return replay(lake, file_of(PAIR, ROTATION), "2012-03-01", "2013-03-01", work_dir=work), work


def test_pairs_and_rotation_trade_live_exactly_as_the_backtest(both):
    result, work = both
    parity = check(result)

    assert result.errors == []
    assert parity.ok, parity.first_divergence
    f = result.fills
    pair = f[f["client_order_id"].str.startswith("tl-pairs")]
    rot = f[f["client_order_id"].str.startswith("tl-rotation")]
    assert set(pair["symbol"]) == {"AAPL", "MSFT"} and len(pair) >= 8, "the pair traded too little to prove much"
    assert set(rot["symbol"]) == {"GOOG", "IBM"} and len(rot) >= 10
    assert not set(rot["symbol"]) & {"AAPL"}, "the rotation's benchmark is data, never traded"
    # a pair's legs enter on the same bar, on opposite sides when the hedge ratio is positive
    entries = pair[pair["client_order_id"].str.contains("-entry-")]
    for _, g in entries.groupby("bar"):
        assert sorted(g["symbol"]) == ["AAPL", "MSFT"]
    lines = [json.loads(x) for x in (work / "decisions.jsonl").read_text().splitlines()]
    reasons = [x["reason"] for x in lines if x["event"] == "decision" and x["strategy"] == "rotation"]
    assert any(r.startswith("rebalance:") for r in reasons)
    assert len(parity.equity) >= 240


def test_parity_fails_when_a_leg_fill_is_missing(both):
    result, _ = both
    f = result.fills
    i = f.index[f["client_order_id"].str.startswith("tl-pairs")][2]
    broken = type(result)(**{**result.__dict__, "fills": f.drop(index=i).reset_index(drop=True)})

    parity = check(broken)

    assert not parity.ok
    assert "pairs AAPL/MSFT" in parity.first_divergence


def test_effective_weights_no_late_entry_and_no_flip_in_one_order():
    raw = np.array([[0.5], [0.5], [0.0], [0.5], [-0.5], [-0.5], [-0.5], [0.0]])
    w = baskets.effective(raw, start=1)
    # on at the start (decided in the warm-up): not entered; fresh entry at 3; flip at 4 -> flat, short at 5
    assert w[:, 0].tolist() == [0.0, 0.0, 0.0, 0.5, 0.0, -0.5, -0.5, 0.0]
    # prefix invariance: the weights up to t never change when bars are added after t
    for t in range(1, len(raw)):
        assert np.array_equal(baskets.effective(raw[:t], 1), w[:t])


def test_legs_are_named_by_the_symbol_and_bad_forms_are_refused():
    assert baskets.legs("pairs", "KO/PEP") == baskets.Legs(("KO", "PEP"), "PEP")
    assert baskets.legs("rotation", "XLK,XLF/SPY").data == ("XLK", "XLF", "SPY")
    for strategy, bad in (("pairs", "KO"), ("pairs", "KO/KO"), ("pairs", "KO,PEP/XOM"), ("rotation", "XLK,XLK/SPY"),
                          ("rotation", "XLK,SPY/SPY"), ("rotation", "/SPY")):
        with pytest.raises(ValueError, match=strategy):
            baskets.legs(strategy, bad)
    with pytest.raises(ValueError, match="pairs symbol must be 'Y/X'"):
        entry(symbol="AAPL", strategy="pairs", params={})


def test_pairs_weights_are_causal_on_real_bars(lake):
    from research.bars import bars_from_arrays
    from research.signals.pairs import Pairs

    a, m = (lake.load_arrays(s, "1Day") for s in ("AAPL", "MSFT"))
    ts, al = baskets.align({"AAPL": a, "MSFT": m}, ("AAPL", "MSFT"))
    p = Pairs(**{k: v for k, v in PAIR[2].items()})
    full = baskets.pair_weights(*(bars_from_arrays(al[s], "1Day") for s in ("AAPL", "MSFT")), p)
    assert (full != 0).any()
    for cut in (1500, 2300, len(ts) - 7):
        part = baskets.pair_weights(*(bars_from_arrays({k: v[:cut] for k, v in al[s].items()}, "1Day")
                                      for s in ("AAPL", "MSFT")), p)
        assert np.array_equal(part, full[:cut])
    # gross weight 1 on every bar in a trade, legs on opposite sides for a positive hedge ratio
    on = full[:, 0] != 0
    assert np.allclose(np.abs(full[on]).sum(axis=1), 1.0)


def test_a_symbol_traded_by_two_strategies_is_refused_before_any_order(lake, tmp_path):
    clash = ("rotation", "AAPL,IBM/GOOG", ROTATION[2])
    with pytest.raises(ValueError, match=r"one position per symbol.*AAPL by pairs, rotation"):
        replay(lake, file_of(PAIR, clash), "2012-03-01", "2012-04-01", work_dir=tmp_path)
    overlap = file_of(PAIR, ("pairs", "MSFT/IBM", PAIR[2]))
    with pytest.raises(ValueError, match="pairs trades MSFT in two entries"):
        replay(lake, overlap, "2012-03-01", "2012-04-01", work_dir=tmp_path)
