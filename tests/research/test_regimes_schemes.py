"""Regime schemes: trend, vol and trend_vol labels from one set of measures, causal, hashed apart."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

import pytest

from research.regimes import (
    DEFINITION, LABELS, SCHEMES, TRENDS, VOLS, RegimeParams, default_scheme, labels, params_hash,
)
from tests.research.test_regimes import SMALL, ibm, ibm_regimes, regimes_of, three_phases  # noqa: F401 (ibm: fixture)


def test_each_scheme_labels_by_its_own_components():
    close = three_phases()
    frames = {s: regimes_of(close, replace(SMALL, scheme=s)) for s in SCHEMES}
    both = frames["trend_vol"]

    # the measures do not depend on the scheme, only the label does
    for s in ("trend", "vol"):
        assert frames[s][["trend", "vol"]].equals(both[["trend", "vol"]])
    trend, vol = frames["trend"], frames["vol"]
    assert (trend["label"] == trend["trend"]).all()
    assert (vol["label"] == vol["vol"]).all()
    ready = (both["trend"] != "warmup") & (both["vol"] != "warmup")
    assert (both["label"][ready] == both["trend"][ready] + "_" + both["vol"][ready]).all()
    assert (both["label"][~ready] == "warmup").all()
    # the hand-built phases: an uptrend, then chop, then a crash
    assert set(trend["label"]) == {"warmup", "up", "range", "down"}
    assert set(trend["label"]) - {"warmup"} <= set(TRENDS) and set(vol["label"]) - {"warmup"} <= set(VOLS)


def test_a_scheme_warms_up_only_on_the_components_it_uses():
    close = three_phases()
    for s in SCHEMES:
        p = replace(SMALL, scheme=s)
        label = regimes_of(close, p)["label"].tolist()
        assert label[:p.warmup_bars] == ["warmup"] * p.warmup_bars, s
        assert label[p.warmup_bars] != "warmup", s
    # SMALL: trend needs max(5 + 2, 5 + 1) = 7 bars, vol 5 + 10 + 1 = 16, both 16
    assert [replace(SMALL, scheme=s).warmup_bars for s in ("trend", "vol", "trend_vol")] == [7, 16, 16]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_labels_are_causal_in_every_scheme(ibm, scheme):  # noqa: F811
    p = RegimeParams(scheme=scheme)
    full = ibm_regimes(ibm, p=p)
    for stop in (300, 1234, 2500, len(ibm["ts"]) - 1):
        cut = ibm_regimes(ibm, stop, p=p)
        # a prefix of the bars labels the same sessions the same, through the session after its last bar
        assert cut["label"].tolist() == full["label"].iloc[:len(cut)].tolist(), (scheme, stop)
    assert set(full["label"]) - {"warmup"} == set(labels(scheme))


def test_the_hash_differs_per_scheme_and_trend_vol_keeps_its_old_hash():
    hashes = {s: params_hash(RegimeParams(scheme=s)) for s in SCHEMES}
    assert len(set(hashes.values())) == 3
    # trend_vol (the only definition before schemes) hashes as it did, so stored tables stay valid
    before = {k: v for k, v in asdict(RegimeParams()).items() if k != "scheme"}
    old = hashlib.sha256(json.dumps({"definition": DEFINITION, **before}, sort_keys=True).encode()).hexdigest()[:16]
    assert hashes["trend_vol"] == old == params_hash(RegimeParams())
    assert params_hash(RegimeParams(scheme="trend", er_min=0.3)) != hashes["trend"]


def test_labels_per_scheme_and_a_bad_scheme_is_named():
    assert labels("trend") == ("up", "down", "range")
    assert labels("vol") == ("low", "normal", "high", "extreme")
    assert labels("trend_vol") == LABELS and len(LABELS) == 12
    assert RegimeParams(scheme="vol").labels == VOLS
    with pytest.raises(ValueError, match="scheme must be one of trend, vol, trend_vol, got 'trends'"):
        RegimeParams(scheme="trends")
    with pytest.raises(ValueError, match="got 'both'"):
        labels("both")
    assert default_scheme("1Day") == "trend" and default_scheme("5Min") == "trend_vol"
