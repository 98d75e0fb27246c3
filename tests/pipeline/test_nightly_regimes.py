"""The nightly's regime scheme: labels, sweeps and the params file all use one definition, never mixed."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from data_lake import Lake
from data_lake.sources.sample import sample_bars, sample_meta
from pipeline.nightly import NightlyConfig, nightly, refresh_regimes
from pipeline.sweep import run_sweep
from research.params import RunInfo, dumps, loads
from research.regimes import RegimeParams, load_regimes, params_hash

RUN = RunInfo(job="manual", notebook="test", run_dir="-")
NOW = datetime(2013, 3, 2, tzinfo=timezone.utc)


def config(scheme: str | None) -> NightlyConfig:
    return NightlyConfig(symbols=("AAPL",), grids={"sma_cross": {"fast": (5, 10), "slow": (20, 50)}},
                         lookback="5y", walk_forward="2y:1y", stop_loss=(0.02,), min_trades=2,
                         regimes=RegimeParams(scheme=scheme) if scheme else None)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lk = Lake(tmp_path_factory.mktemp("nightly-regimes") / "lake")
    lk.write_bars("AAPL", "1Day", sample_bars("AAPL"), sample_meta())
    return lk


@pytest.fixture(scope="module")
def trend_night(lake, tmp_path_factory):
    return nightly(lake, config("trend"), params_dir=tmp_path_factory.mktemp("params"), run=RUN, now=NOW)


def test_a_trend_night_labels_entries_up_down_range_and_records_the_definition(trend_night):
    pf = trend_night.params
    regimes = {e.regime for e in pf.entries}

    assert regimes and regimes <= {"up", "down", "range", "warmup"}
    assert {"up", "range"} <= regimes
    assert pf.regimes is not None and pf.regime_params() == RegimeParams(scheme="trend")
    assert loads(dumps(pf)).regime_params().scheme == "trend"
    stored = trend_night.regimes["AAPL"]
    assert set(stored["label"]) <= {"up", "down", "range", "warmup"}
    assert set(stored["params_hash"]) == {params_hash(RegimeParams(scheme="trend"))}
    assert trend_night.runs[0].spec.regime_hash == params_hash(RegimeParams(scheme="trend"))


def test_each_scheme_sweeps_apart_and_a_table_of_another_scheme_is_refused(lake, trend_night, tmp_path):
    vol = nightly(lake, config("vol"), params_dir=tmp_path, run=RUN, now=NOW)  # rewrites AAPL's table: vol labels

    assert vol.params.selection.sweep_ids != trend_night.params.selection.sweep_ids  # no stored chunk reused
    assert {e.regime for e in vol.params.entries} <= {"low", "normal", "high", "extreme", "warmup"}
    with pytest.raises(ValueError, match=f"computed with regime params {params_hash(RegimeParams(scheme='vol'))}, "
                                         f"not {params_hash(RegimeParams(scheme='trend'))}"):
        run_sweep(lake, trend_night.runs[0].spec, resume=True)  # the trend sweep on vol labels: refused
    with pytest.raises(ValueError, match="regime params"):
        load_regimes(lake, "AAPL", params_hash(RegimeParams()))


def test_the_default_scheme_follows_the_timeframe(lake):
    cfg = config(None)

    assert cfg.regime_params == RegimeParams(scheme="trend")  # 1Day: trend (bench/regime_schemes.py)
    assert replace(cfg, timeframe="5Min").regime_params.scheme == "trend_vol"
    refresh_regimes(lake, cfg)
    assert set(load_regimes(lake, "AAPL", params_hash(RegimeParams(scheme="trend")))["label"]) \
        == {"up", "down", "range", "warmup"}
    with pytest.raises(ValueError, match="regimes must be a research.regimes.RegimeParams or None, got 'trend'"):
        replace(cfg, regimes="trend")


def test_a_night_keeps_the_definition_in_force_unless_asked_and_keeps_nothing_across_definitions(lake, trend_night,
                                                                                                  tmp_path):
    """No regime_scheme: the night labels as the params in force do (a running runner refuses a reload
    whose labels mean other sessions). An explicit other scheme switches, and no entry of the file in
    force is kept: its labels mean other sessions."""
    (tmp_path / "current.json").write_bytes(dumps(trend_night.params))
    kept = nightly(lake, config(None), params_dir=tmp_path, run=RUN, now=NOW)
    assert kept.params.regime_params() == RegimeParams(scheme="trend")  # not the 1Day default's choice, by luck:
    assert kept.params.selection.sweep_ids == trend_night.params.selection.sweep_ids  # same labels, same sweeps

    switched = nightly(lake, config("vol"), params_dir=tmp_path, run=RUN, now=NOW)
    assert switched.params.regime_params().scheme == "vol"
    assert not any(e.source == "kept" for e in switched.params.entries)
    assert any("another regime definition (trend); none of its entries is kept" in r
               for r in switched.params.verdict.reasons)


def test_with_no_params_in_force_the_timeframe_default_applies(tmp_path):
    from pipeline.nightly import with_regimes_in_force
    from research.regimes import default_scheme
    from tests.kit import params_file

    cfg = config(None)
    assert with_regimes_in_force(cfg, None).regime_params == RegimeParams(scheme=default_scheme("1Day"))
    old = params_file()  # an older file: no definition recorded = trend_vol
    assert with_regimes_in_force(cfg, old).regime_params == RegimeParams(scheme="trend_vol")
    assert with_regimes_in_force(config("vol"), old).regime_params.scheme == "vol"  # asked for: switches
