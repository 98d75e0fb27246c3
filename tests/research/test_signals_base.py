"""The strategy contract (research/signals/base.py): kinds, the sweep hooks as Strategy fields, and
the checks a Strategy makes when it is defined."""

from __future__ import annotations

import importlib

import pytest

from research.signals import NAMES, get
from research.signals import sma_cross as sma
from research.signals.base import Strategy, StrategyKind

HOOKS = ("params_to_array", "signals_nb", "indicator_keys", "indicator_nb", "signals_from_nb")


def test_kinds_are_the_strings_callers_compare_with():
    kinds = {name: get(name).kind for name in NAMES}

    assert all(isinstance(k, StrategyKind) for k in kinds.values())
    assert kinds["pairs"] == "pair" and kinds["rotation"] == "basket" and kinds["sma_cross"] == "single"
    assert f"{kinds['pairs']}" == "pair"  # error messages format it as its value


@pytest.mark.parametrize("name", NAMES)
def test_every_hook_a_module_defines_is_registered(name):
    # a hook function left out of Strategy(...) would silently send the sweep down a slower path
    module = importlib.import_module(f"research.signals.{name}")
    strat = get(name)

    for hook in HOOKS:
        assert getattr(strat, hook) is getattr(module, hook, None), hook


def test_fast_paths_per_strategy():
    fused = {n for n in NAMES if get(n).signals_nb is not None}
    shared = {n for n in NAMES if get(n).signals_from_nb is not None}

    assert fused == {"sma_cross", "sma_convergence", "breakout", "vwap_reversion", "rsi_reversion", "gap"}
    assert shared == {"sma_cross"}


def test_a_string_kind_becomes_the_enum():
    strat = Strategy("x", sma.SmaCross, {}, sma.signals, kind="pair")

    assert strat.kind is StrategyKind.PAIR


@pytest.mark.parametrize("kw, msg", [
    (dict(kind="rotation"), "kind must be one of single, pair, basket"),
    (dict(kind=StrategyKind.PAIR, params_to_array=sma.params_to_array, signals_nb=sma.signals_nb),
     "apply to single-symbol"),
    (dict(params_to_array=sma.params_to_array, indicator_nb=sma.indicator_nb), "come together"),
    (dict(signals_nb=sma.signals_nb), "need params_to_array"),
])
def test_inconsistent_registrations_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Strategy("x", sma.SmaCross, {}, sma.signals, **kw)


def test_hooks_and_options_are_keyword_only():
    with pytest.raises(TypeError):
        Strategy("x", sma.SmaCross, {}, sma.signals, True)  # intraday by position
