"""The params file's regime definition: recorded, round-tripped, checked against the entries' labels."""

from __future__ import annotations

import json

import pytest

from research.params import RegimeDefinition, dumps, loads
from research.regimes import RegimeParams
from tests.kit import edited, entry, params_file

TREND = RegimeDefinition(scheme="trend", er_min=0.3)


def test_a_trend_scheme_file_round_trips_and_its_labels_validate():
    pf = params_file([entry(regime=r) for r in ("up", "down", "range", "warmup", "all")], regimes=TREND)

    back = loads(dumps(pf))

    assert back == pf and dumps(back) == dumps(pf)
    assert back.regime_params() == RegimeParams(scheme="trend", er_min=0.3)
    assert json.loads(dumps(pf))["regimes"]["scheme"] == "trend"


def test_a_label_of_another_scheme_is_refused_naming_it():
    pf = params_file([entry(regime="up")], regimes=TREND)

    with pytest.raises(ValueError, match=r"entries.0.regime: 'up_normal' is not a label of regime scheme 'trend' "
                                         r"\(its labels: up, down, range, warmup, all\)"):
        loads(edited(pf, lambda d: d["entries"][0].update(regime="up_normal")))
    with pytest.raises(ValueError, match="'up' is not a label of regime scheme 'trend_vol'"):
        loads(edited(pf, lambda d: d.pop("regimes")))  # no definition: trend_vol, where "up" means nothing


def test_an_old_file_without_a_definition_loads_as_trend_vol_and_keeps_its_bytes():
    pf = params_file([entry(regime="up_normal")])
    text = dumps(pf)

    back = loads(text)

    assert b'"regimes"' not in text and back.regimes is None
    assert back.regime_params() == RegimeParams() and back.regime_params().scheme == "trend_vol"
    assert dumps(back) == text  # its sha256, the file's identity, is unchanged


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r.update(scheme="both"), "regimes.scheme: Input should be 'trend', 'vol' or 'trend_vol'"),
    (lambda r: r.update(er_mn=0.3), "regimes.er_mn: Extra inputs are not permitted"),
    (lambda r: r.update(low_pct=0.9), "regimes: regime needs 0 < low_pct < high_pct < extreme_pct <= 1"),
    (lambda r: r.update(trend_window="50"), "regimes.trend_window: Input should be a valid integer"),
])
def test_a_bad_definition_names_the_field(edit, message):
    pf = params_file([entry(regime="up")], regimes=TREND)

    with pytest.raises(ValueError, match=message):
        loads(edited(pf, lambda d: edit(d["regimes"])))
