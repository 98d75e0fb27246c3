"""The runner takes a close's bars off its queue together and decides every sleeve in one batched call
(live_bridge/runner_bars.py, batch.decide_many). It must trade exactly as when each bar is decided on
its own: the same orders, fills and equity, on a replay with regime-switched, netted and single
sleeves whose benchmark's bar arrives in the same batch (one bar at a time, AAPL is decided before
its benchmark IBM's bar comes, and again after it; in a batch, once, with IBM's bar in the labels)."""

from __future__ import annotations

import json

import pytest

from live_bridge.replay import replay
from live_bridge.runner_bars import BarDesk
from research.params import ExitRulesModel
from tests.kit import entry
from tests.live_bridge.test_parity import lake  # noqa: F401 - the module's sample lake fixture
from tests.live_bridge.test_parity_switching import switching_file


def params():
    netted = entry(symbol="MSFT", strategy="breakout", params={"n": 5, "k": 1.0, "exit_n": 3, "short": False},
                   exit_rules=ExitRulesModel(stop_loss=0.03, allow_short=False))
    return switching_file([netted])  # AAPL mixed by regime; MSFT mixed and breakout in every regime: netted


def orders(work):
    """Every order the runner decided to send (and the risk verdict's quantity), in the decision log."""
    out = []
    for line in (work / "decisions.jsonl").read_text().splitlines():
        x = json.loads(line)
        out += [(a["order"], a.get("side"), a.get("qty"), a.get("type"), a.get("allowed")) for a in x.get("actions", [])
                if "order" in a]
    return sorted(out)


def regimes_seen(work):
    return {json.loads(x).get("regime_next") for x in (work / "decisions.jsonl").read_text().splitlines()}


def test_batched_bars_trade_exactly_as_bars_one_by_one(lake, tmp_path, monkeypatch):  # noqa: F811
    batched = replay(lake, params(), "2012-03-01", "2012-09-01", work_dir=tmp_path / "batched")
    sizes = []
    real = BarDesk._bars

    def one_by_one(self, items):
        sizes.append(len(items))
        for item in items:
            real(self, [item])

    monkeypatch.setattr(BarDesk, "_bars", one_by_one)
    single = replay(lake, params(), "2012-03-01", "2012-09-01", work_dir=tmp_path / "single")

    assert max(sizes) >= 3, "the replay never queued a close's bars together"
    assert batched.errors == [] and single.errors == []
    a, b = orders(tmp_path / "batched"), orders(tmp_path / "single")
    assert len(a) == len(b) >= 20
    assert a == b
    assert {"up_low", "range_low"} & regimes_seen(tmp_path / "batched")  # regime-switched sleeves decided
    cols = ["ts", "symbol", "side", "qty", "price", "client_order_id"]
    assert batched.fills[cols].reset_index(drop=True).equals(single.fills[cols].reset_index(drop=True))
    assert len(batched.fills) >= 10
    assert batched.equity.values == pytest.approx(single.equity.values, abs=1e-9)
