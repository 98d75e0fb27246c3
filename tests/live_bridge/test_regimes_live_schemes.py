"""Live consumers label sessions with the params file's regime definition, as the nightly did."""

from __future__ import annotations

import pytest

from data_lake import Lake, LakeError
from data_lake.sources.sample import sample_bars, sample_meta
from live_bridge.parity import check
from live_bridge.regimes_live import OnlineRegimes, daily_arrays, regime_params_of
from live_bridge.replay import replay
from research.params import DataWindow, ExitRulesModel, RegimeDefinition
from research.regimes import RegimeParams, regimes_from_daily
from tests.kit import entry, params_file
from tradelab.evening_plan import plan

TREND = RegimeDefinition(scheme="trend")
TREND_LABELS = {"up", "down", "range", "warmup"}


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lk = Lake(tmp_path_factory.mktemp("live-schemes") / "lake")
    for sym in ("AAPL", "IBM"):
        lk.write_bars(sym, "1Day", sample_bars(sym), sample_meta())
    return lk


def trend_file(regimes=TREND, labels=("up", "range")):
    data = DataWindow(timeframe="1Day", start="2000-01-03", end="2013-03-01", symbols=["AAPL"],
                      bars_hash={"AAPL": "x"}, benchmark="IBM")
    params = ({"fast": 10, "slow": 50, "short": False}, {"fast": 5, "slow": 20, "short": False})
    return params_file([entry(symbol="AAPL", regime=r, params=p, exit_rules=ExitRulesModel(stop_loss=0.02,
                                                                                           allow_short=False))
                        for r, p in zip(labels, params)], data=data, regimes=regimes)


def test_online_regimes_label_with_the_files_scheme_bar_by_bar(lake):
    a = daily_arrays(lake.read_bars("IBM", "1Day"))
    definition = regime_params_of([trend_file()])
    book = OnlineRegimes("IBM", {c: v[:-40] for c, v in a.items()}, definition)

    for i in range(len(a["ts"]) - 40, len(a["ts"])):  # the last 40 bars arrive one by one
        book.add_daily(int(a["ts"][i]), *(float(a[c][i]) for c in ("open", "high", "low", "close")))

    batch = regimes_from_daily(a["ts"], a["open"], a["high"], a["low"], a["close"], RegimeParams(scheme="trend"))
    assert definition.scheme == "trend"
    assert book.table()["label"].tolist() == batch["label"].tolist()
    assert set(book.table()["label"]) == TREND_LABELS


def test_a_runner_cannot_trade_two_regime_definitions():
    old = trend_file(regimes=None, labels=("up_normal", "range_normal"))

    assert regime_params_of([(0, old)]) == RegimeParams()  # an old file: trend_vol
    with pytest.raises(ValueError, match=r"define regimes differently \(scheme trend_vol, params \w+ vs scheme "
                                         r"trend, params \w+\).*start a new runner state"):
        regime_params_of([(0, old), (5, trend_file())])


def test_a_replay_of_a_trend_file_labels_trend_and_matches_the_backtest(lake, tmp_path):
    pf = trend_file()

    result = replay(lake, pf, "2012-03-01", "2012-09-01", work_dir=tmp_path)
    parity = check(result)

    assert result.errors == [] and parity.ok, parity.first_divergence
    assert set(result.regimes["IBM"]["label"]) <= TREND_LABELS
    # the labels the runner switched on ("unknown": a sleeve holding a position decides before its
    # benchmark's bar, it keeps the params it entered with)
    seen = {d.regime_next for d in result.decisions} - {"unknown"}
    assert {"up", "range"} <= seen <= TREND_LABELS - {"warmup"}, seen
    assert len(result.fills) >= 2, "a replay without trades proves nothing"


def test_the_evening_relabels_with_the_params_in_force_else_the_nightlys_scheme():
    assert plan(trend_file(), {}).regime_params.scheme == "trend"
    assert plan(trend_file(regimes=None, labels=("up_low", "all")), {}).regime_params == RegimeParams()
    assert plan(None, {"regime_scheme": "vol", "benchmark": "IBM"}).regime_params.scheme == "vol"
    assert plan(None, {"benchmark": "IBM"}).regime_params.scheme == "trend"  # 1Day's default
    with pytest.raises(LakeError, match="regime_scheme: regime scheme must be one of trend, vol, trend_vol, got 'x'"):
        plan(None, {"regime_scheme": "x"})
