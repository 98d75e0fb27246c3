"""rotation: hand-built rankings, the rebalance schedule, causality on real bars, weight properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_lake.sources.sample import sample_bars
from research.signals import get
from research.signals.rotation import GRID, STRATEGY, Rotation, signals

NAN = np.nan


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AAPL, MSFT, GOOG closes and IBM (the benchmark) on IBM's dates; GOOG is NaN before its listing.

    Returns (closes on IBM's dates, bench, the rows where all four trade).
    """
    frames = {s: sample_bars(s).set_index("ts")["close"] for s in ("AAPL", "MSFT", "GOOG", "IBM")}
    index = frames["IBM"].index
    closes = np.column_stack([frames[s].reindex(index).to_numpy() for s in ("AAPL", "MSFT", "GOOG")])
    bench = frames["IBM"].to_numpy()
    common = np.isfinite(closes).all(axis=1)
    return closes, bench, common


def test_hand_ranking_long_only() -> None:
    # Arrange: a flat benchmark, so RS = close[t] / close[t-1] - 1 (lookback 1)
    closes = np.array([[10, 10, 10],
                       [11, 9, 10],   # RS (0.1, -0.1, 0): first valid bar, rebalance -> A
                       [11, 10, 10],  # hold
                       [11, 10, 12],  # RS (0, 0, 0.2): rebalance -> C
                       [12, 11, 12],  # hold
                       [12, 11, 12]], dtype=float)  # RS all 0: tie -> the lowest column, A
    bench = np.full(6, 100.0)
    # Act
    s = signals(closes, bench, Rotation(lookback=1, rebalance=2, top_k=1))
    # Assert
    assert s.weights.tolist() == [[0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0]]
    assert np.flatnonzero(s.rebalance).tolist() == [1, 3, 5]
    np.testing.assert_allclose(s.rs[1], [0.1, -0.1, 0.0])


def test_hand_ranking_long_short_with_ties() -> None:
    closes = np.array([[10, 10, 10], [11, 9, 10], [11, 10, 10], [11, 10, 12], [12, 11, 12],
                       [12, 11, 12]], dtype=float)
    s = signals(closes, np.full(6, 100.0), Rotation(lookback=1, rebalance=2, top_k=1, short=True))
    # bar 1: long A (0.1), short B (-0.1); bar 3: long C (0.2), short the lowest of A = B = 0: A (lower
    # index); bar 5: all tie: long A, short the lowest untaken, B
    assert s.weights.tolist() == [[0, 0, 0], [1, -1, 0], [1, -1, 0], [-1, 0, 1], [-1, 0, 1], [1, -1, 0]]


def test_rs_uses_the_benchmark_and_nan_is_never_selected() -> None:
    # Arrange: bench NaN at bar 0 -> no RS at bar 1 (lookback 1) -> first valid bar (t0) is 2;
    # asset B is missing at bar 3, so its RS is NaN at bars 3 and 4
    closes = np.array([[10, 10, 10], [10, 10, 10], [12, 11, 10], [12, NAN, 10], [12, 30, 10],
                       [12, 30, 10]], dtype=float)
    bench = np.array([NAN, 100, 110, 110, 110, 110])
    # Act
    s = signals(closes, bench, Rotation(lookback=1, rebalance=2, top_k=2))
    # Assert: RS at bar 2 = (1.2, 1.1, 1.0) / 1.1 - 1
    np.testing.assert_allclose(s.rs[2], np.array([1.2, 1.1, 1.0]) / 1.1 - 1)
    assert np.isnan(s.rs[:2]).all() and np.isnan(s.rs[3:5, 1]).all()
    assert np.flatnonzero(s.rebalance).tolist() == [2, 4]
    assert s.weights[:2].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert s.weights[2].tolist() == s.weights[3].tolist() == [0.5, 0.5, 0]
    # bar 4: B's RS is NaN (its price is missing at bar 3): A and C tie at 0 and are chosen
    assert s.weights[4].tolist() == s.weights[5].tolist() == [0.5, 0, 0.5]


def test_fewer_valid_assets_than_slots_leaves_cash() -> None:
    closes = np.array([[10, NAN, 10], [11, NAN, 9], [12, NAN, 8]], dtype=float)
    long_only = signals(closes, np.full(3, 1.0), Rotation(lookback=1, rebalance=1, top_k=3))
    long_short = signals(closes, np.full(3, 1.0), Rotation(lookback=1, rebalance=1, top_k=3, short=True))
    np.testing.assert_allclose(long_only.weights[1], [1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(long_short.weights[1], [1 / 3, 0, -1 / 3])  # 2 valid -> one a side


def test_all_nan_at_a_rebalance_goes_flat() -> None:
    closes = np.array([[10.0], [11.0], [NAN], [12.0], [13.0]])
    s = signals(closes, np.ones(5), Rotation(lookback=1, rebalance=2, top_k=1))
    # t0 = 1; rebalance at 1 (long), 3 (RS NaN: bar 2 missing -> flat)
    assert s.weights[:, 0].tolist() == [0, 1, 1, 0, 0]


@pytest.mark.parametrize("rows", ["common", "all"])
@pytest.mark.parametrize("p", [Rotation(), Rotation(lookback=10, rebalance=3, top_k=1, short=True)])
def test_prefix_invariance_on_real_bars(real, rows: str, p: Rotation) -> None:
    closes, bench, common = real
    if rows == "common":
        closes, bench = closes[common], bench[common]
    full = signals(closes, bench, p)
    assert (full.weights != 0).any()
    n = len(bench)
    cuts = {1, p.lookback, p.lookback + 1, n - 1, n}
    cuts |= set(np.random.default_rng(0).integers(1, n, 40).tolist())
    for t in sorted(cuts):
        cut = signals(closes[:t], bench[:t], p)
        assert np.array_equal(cut.weights, full.weights[:t]), f"weights cut at {t} differ"
        assert np.array_equal(cut.rs, full.rs[:t], equal_nan=True)
        assert np.array_equal(cut.rebalance, full.rebalance[:t])


def test_real_bars_never_hold_goog_before_it_trades(real) -> None:
    closes, bench, _ = real
    s = signals(closes, bench, Rotation(top_k=1))
    listed = int(np.flatnonzero(np.isfinite(closes[:, 2]))[0])
    assert (s.weights[:listed + 5, 2] == 0).all() and (s.weights[:, 2] != 0).any()


# --- properties -------------------------------------------------------------------------------

def reference_weights(rs: np.ndarray, p: Rotation) -> np.ndarray:
    """The module docstring's definition, written plainly."""
    w = np.zeros_like(rs)
    valid_rows = np.flatnonzero(np.isfinite(rs).any(axis=1))
    if not len(valid_rows):
        return w
    t0 = valid_rows[0]
    for t in range(t0, len(rs)):
        if (t - t0) % p.rebalance:
            w[t] = w[t - 1]
            continue
        ok = [i for i in range(rs.shape[1]) if np.isfinite(rs[t, i])]
        n_side = min(p.top_k, len(ok) // 2) if p.short else min(p.top_k, len(ok))
        longs = sorted(ok, key=lambda i: (-rs[t, i], i))[:n_side]
        ascending = [i for i in sorted(ok, key=lambda i: (rs[t, i], i)) if i not in longs]
        shorts = ascending[:n_side] if p.short else []
        w[t, longs] = 1 / p.top_k
        w[t, shorts] = -1 / p.top_k
    return w


@st.composite
def rotation_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, Rotation]:
    n, m = draw(st.integers(1, 60)), draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, m)), axis=0))
    if draw(st.booleans()):
        closes = np.round(closes, 0)  # coarse prices make ties
    bench = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    closes[rng.random((n, m)) < draw(st.floats(0.0, 0.5))] = NAN
    bench[rng.random(n) < draw(st.floats(0.0, 0.2))] = NAN
    p = Rotation(lookback=draw(st.integers(1, 8)), rebalance=draw(st.integers(1, 8)),
                 top_k=draw(st.integers(1, 5)), short=draw(st.booleans()))
    return closes, bench, p


@settings(max_examples=30, deadline=None)
@given(rotation_case())
def test_weights_properties(case: tuple[np.ndarray, np.ndarray, Rotation]) -> None:
    closes, bench, p = case
    s = signals(closes, bench, p)
    n, m = closes.shape
    assert s.weights.dtype == np.float64 and s.weights.shape == (n, m) and s.rs.shape == (n, m)
    assert s.rebalance.dtype == np.bool_ and s.rebalance.shape == (n,)
    assert np.isfinite(s.weights).all()
    assert (np.where(s.weights > 0, s.weights, 0).sum(axis=1) <= 1 + 1e-12).all()
    assert (np.where(s.weights < 0, s.weights, 0).sum(axis=1) >= -1 - 1e-12).all()
    if not p.short:
        assert (s.weights >= 0).all()
    assert np.isnan(s.rs[:p.lookback]).all() and not s.rebalance[:p.lookback].any()
    first = np.flatnonzero(np.isfinite(s.rs).any(axis=1))
    t0 = first[0] if len(first) else n
    assert (s.weights[:t0] == 0).all() and not s.rebalance[:t0].any()
    reb = np.flatnonzero(s.rebalance)
    assert (reb == np.arange(t0, n, p.rebalance)).all()
    assert (s.weights[reb] == 0)[~np.isfinite(s.rs[reb])].all()  # NaN RS never chosen
    np.testing.assert_array_equal(s.weights, reference_weights(s.rs, p))
    t = n // 2 + 1
    assert np.array_equal(signals(closes[:t], bench[:t], p).weights, s.weights[:t])


# --- params, registry -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [dict(lookback=0), dict(rebalance=0), dict(top_k=0)])
def test_bad_params_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Rotation(**bad)


def test_misshapen_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="aligned"):
        signals(np.ones((5, 2)), np.ones(4), Rotation())
    with pytest.raises(ValueError, match="aligned"):
        signals(np.ones(5), np.ones(5), Rotation())


def test_registered_with_defaults_at_the_grid_centre() -> None:
    assert get("rotation") is STRATEGY and STRATEGY.params is Rotation
    d = Rotation()
    assert (d.lookback, d.rebalance, d.top_k, d.short) == (5, 5, 3, False)
    for key, values in GRID.items():
        assert values[len(values) // 2] == getattr(d, key)
    for combo in itertools.product(*GRID.values()):
        Rotation(**dict(zip(GRID, combo)))
