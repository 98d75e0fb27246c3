"""pairs: hand-built spreads, the trade-plan state machine, causality on real bars, Engle-Granger."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_lake.sources.sample import sample_bars
from research.bars import Bars, bars_from_arrays
from research.signals import get
from research.kernels.pairs import pair_signals_nb, rolling_ols_nb
from research.signals.pairs import (GRID, STRATEGY, Pairs, PairSignals, engle_granger, screen_pairs,
                                    signals)

NAN = np.nan


def bars_from_close(close: np.ndarray) -> Bars:
    """Daily-like Bars whose only meaningful column is close (sessions 0..n-1)."""
    n = len(close)
    c = np.asarray(close, dtype=np.float64)
    i = np.arange(n, dtype=np.int64)
    return Bars(c, c, c, c, np.ones(n), i, np.zeros(n, np.int64), np.zeros(n, np.int64))


@pytest.fixture(scope="module")
def real() -> dict[str, Bars]:
    """AAPL, MSFT and IBM sample daily bars on their common dates."""
    frames = {s: sample_bars(s) for s in ("AAPL", "MSFT", "IBM")}
    common = sorted(set.intersection(*(set(f["ts"]) for f in frames.values())))
    out = {}
    for s, f in frames.items():
        f = f[f["ts"].isin(common)].sort_values("ts")
        arrays = {c: f[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
        arrays["ts"] = f["ts"].dt.as_unit("us").astype("int64").to_numpy()
        out[s] = bars_from_arrays(arrays, "1Day")
    return out


def same(a: PairSignals, b: PairSignals) -> bool:
    return all(np.array_equal(u, v, equal_nan=u.dtype.kind == "f") for u, v in zip(a, b))


# --- hand-built spread -------------------------------------------------------------------------

def test_exact_pair_with_bumps_enters_at_the_bump_and_nowhere_before() -> None:
    # Arrange: log x rises 0.1 a bar; y = 2x, except a -1% bump at bar 12 and a +1% bump at bar 30.
    n, lb = 40, 5
    lx = np.log(100.0) + 0.1 * np.arange(n)
    bump = np.zeros(n)
    bump[12], bump[30] = -0.01, 0.01
    y, x = bars_from_close(2.0 * np.exp(lx + bump)), bars_from_close(np.exp(lx))
    # Act
    s = signals(y, x, Pairs(lookback=lb))
    # Assert: clean windows fit beta = 1 (alpha = log 2), so the spread is 0 and the z undefined (flat)
    assert np.allclose(s.beta[4:12], 1.0) and np.isnan(s.beta[:4]).all()
    assert np.allclose(s.spread[5:12], 0.0, atol=1e-12) and np.isnan(s.spread[:5]).all()
    assert np.isnan(s.z[:12]).all()
    # bar 12 is scored by the clean fit of bars 7..11: spread = -0.01, the window 8..12 is
    # (0, 0, 0, 0, -0.01): mean -0.002, std 0.004, z = -2 = -sqrt(L-1) -> long entry
    assert s.spread[12] == pytest.approx(-0.01, abs=1e-12)
    assert s.z[12] == pytest.approx(-2.0, abs=1e-9)
    # bar 13 is scored by the fit over 8..12, which the bump tilts: residual line -0.002 - 0.002 * k
    # (k = -2..2), extrapolated to k = 3: -0.008, so spread[13] = +0.008; the window 9..13 is
    # (0, 0, 0, -0.01, 0.008): mean -0.0004, std sqrt(3.264e-5), z = 1.4703 >= entry_z: the long
    # exits and a short enters on the same bar (a reversal)
    assert s.spread[13] == pytest.approx(0.008, abs=1e-12)
    assert s.z[13] == pytest.approx(0.0084 / np.sqrt(3.264e-5), abs=1e-6)
    assert np.flatnonzero(s.long_entry)[0] == 12 and s.long_exit[13] and s.short_entry[13]
    # the mirror bump at bar 30 (flat spread again after bar 22): z = +2, short entry
    assert s.z[30] == pytest.approx(2.0, abs=1e-9) and s.short_entry[30]
    assert np.isnan(s.z[22:30]).all() and not (s.long_entry[22:30] | s.short_entry[22:30]).any()


def test_low_correlation_blocks_entries() -> None:
    # Arrange: a -1% bump at bar 12; min_corr either side of that window's correlation
    n = 20
    lx = np.log(100.0) + 0.1 * np.arange(n)
    bump = np.zeros(n)
    bump[12] = -0.01
    y, x = bars_from_close(np.exp(lx + bump)), bars_from_close(np.exp(lx))
    # Act
    ok = signals(y, x, Pairs(lookback=5, min_corr=0.999))
    blocked = signals(y, x, Pairs(lookback=5, min_corr=0.9999))
    # Assert
    assert 0.999 < ok.corr[12] < 0.9999
    assert ok.long_entry[12] and not blocked.long_entry[12]
    assert (blocked.corr[blocked.long_entry] >= 0.9999).all()


def test_state_machine_by_hand() -> None:
    # Arrange: a hand-written z path; entry 1.2, exit 0.2, stop 2.8, time stop 3 bars
    z = np.array([NAN, 0.0, -1.3, -1.0, -0.1, 0.5, 1.5, 3.0, 2.0, 1.0, 0.1, 1.3, 1.3, 1.3, 1.3, 1.3,
                  -1.5, 1.5, -3.0, -1.5, -1.3, -0.5])
    corr = np.ones(len(z))
    corr[19] = 0.5
    # Act
    le, lx, se, sx = pair_signals_nb(z, corr, 1.2, 0.2, 2.8, 3, 0.7, True)
    # Assert
    # 2: long; 3: hold; 4: z >= -0.2, reverted: exit; 6: short; 7: z >= 2.8: stop, shorts locked;
    # 8, 9: still locked (z > 0.2); 10: z <= 0.2 unlocks; 11: short; held 12, 13, 14 -> time stop at
    # 14 (3 bars held), shorts locked; 15: locked; 16: z <= 0.2 unlocks, long (z = -1.5);
    # 17: z jumps to +1.5: long exit and short entry on one bar; 18: z = -3.0 <= 0.2: the short exits
    # on reversion, and -3.0 is beyond the stop, so no long; 19: corr 0.5 < 0.7 blocks the long;
    # 20: long; 21: hold (-0.5 < -0.2)
    assert np.flatnonzero(le).tolist() == [2, 16, 20]
    assert np.flatnonzero(lx).tolist() == [4, 17]
    assert np.flatnonzero(se).tolist() == [6, 11, 17]
    assert np.flatnonzero(sx).tolist() == [7, 14, 18]


def test_state_machine_long_stop_locks_until_reversion_and_short_flag() -> None:
    z = np.array([-1.5, -2.9, -2.0, -1.5, -0.3, -0.2, -1.4, 1.5])
    corr = np.ones(len(z))
    le, lx, se, sx = pair_signals_nb(z, corr, 1.2, 0.2, 2.8, 0, 0.7, False)
    # bar 0: long; 1: stop, longs locked; 2, 3, 4: locked (z < -0.2); 5: unlocked (z >= -0.2),
    # no entry; 6: long; 7: reverted exit, no short (short=False); max_hold 0 = no time stop
    assert np.flatnonzero(le).tolist() == [0, 6]
    assert np.flatnonzero(lx).tolist() == [1, 7]
    assert not se.any() and not sx.any()


# --- definitions against a plain numpy reference on real bars -------------------------------------

def test_beta_spread_z_match_a_per_window_reference(real: dict[str, Bars]) -> None:
    y, x, lb = real["AAPL"], real["MSFT"], 40
    s = signals(y, x, Pairs(lookback=lb))
    ly, lx = np.log(y.close), np.log(x.close)
    n = len(ly)
    beta, alpha = np.full(n, NAN), np.full(n, NAN)
    for t in range(lb - 1, n):
        beta[t], alpha[t] = np.polyfit(lx[t - lb + 1:t + 1], ly[t - lb + 1:t + 1], 1)
    spread = np.full(n, NAN)
    spread[1:] = ly[1:] - beta[:-1] * lx[1:] - alpha[:-1]
    z = np.full(n, NAN)
    for t in range(2 * lb - 1, n):
        w = spread[t - lb + 1:t + 1]
        z[t] = (spread[t] - w.mean()) / w.std()
    corr = np.array([NAN] * (lb - 1) + [np.corrcoef(lx[t - lb + 1:t + 1], ly[t - lb + 1:t + 1])[0, 1]
                                        for t in range(lb - 1, n)])
    np.testing.assert_allclose(s.beta, beta, atol=1e-9)
    np.testing.assert_allclose(s.spread, spread, atol=1e-10)
    np.testing.assert_allclose(s.z, z, atol=1e-8)
    np.testing.assert_allclose(s.corr, corr, atol=1e-9)


@pytest.mark.parametrize("pair,lookback", [(("AAPL", "MSFT"), 60), (("MSFT", "IBM"), 20)])
def test_prefix_invariance_on_real_bars(real: dict[str, Bars], pair: tuple[str, str], lookback: int) -> None:
    y, x = real[pair[0]], real[pair[1]]
    p = Pairs(lookback=lookback)
    full = signals(y, x, p)
    assert full.long_entry.any() and full.short_entry.any()
    n = len(y)
    cuts = {1, 2, lookback, 2 * lookback - 2, 2 * lookback - 1, 2 * lookback, n - 1, n}
    cuts |= set(np.random.default_rng(0).integers(1, n, 40).tolist())
    for t in sorted(cuts):
        cut = signals(y.slice(t), x.slice(t), p)
        assert same(cut, PairSignals(*(a[:t] for a in full))), f"cut at {t} differs"


def test_misaligned_bars_are_refused(real: dict[str, Bars]) -> None:
    with pytest.raises(ValueError, match="aligned"):
        signals(real["AAPL"], real["MSFT"].slice(100), Pairs())


# --- properties -------------------------------------------------------------------------------

@st.composite
def pair_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, Pairs]:
    n = draw(st.integers(1, 160))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lx = np.cumsum(rng.normal(0, 0.02, n)) + 4.0
    ly = draw(st.floats(0.2, 2.0)) * lx + 0.3 * np.cumsum(rng.normal(0, 0.01, n)) + rng.normal(0, 0.01, n)
    y, x = np.exp(ly), np.exp(lx)
    if draw(st.booleans()):
        y[rng.integers(0, n, max(1, n // 30))] = NAN
    entry = draw(st.floats(0.3, 2.0))
    p = Pairs(lookback=draw(st.integers(3, 25)), entry_z=entry, exit_z=draw(st.floats(0.0, 0.29)),
              stop_z=entry + draw(st.floats(0.1, 2.0)), max_hold=draw(st.integers(0, 30)),
              min_corr=draw(st.floats(-1.0, 1.0)), short=draw(st.booleans()))
    return y, x, p


@settings(max_examples=30, deadline=None)
@given(pair_case())
def test_signals_form_a_valid_trade_plan(case: tuple[np.ndarray, np.ndarray, Pairs]) -> None:
    y, x, p = case
    s = signals(bars_from_close(y), bars_from_close(x), p)
    n, warm = len(y), 2 * p.lookback - 1
    for a in s[:4]:
        assert a.dtype == np.bool_ and a.shape == (n,)
        assert not a[:warm].any()
    for a in s[4:]:
        assert a.dtype == np.float64 and a.shape == (n,)
    assert np.isnan(s.z[:warm]).all()
    if not p.short:
        assert not s.short_entry.any() and not s.short_exit.any()
    # entries only at admissible z and correlation
    zin, ok = s.z, s.corr >= p.min_corr
    assert (ok & (zin <= -p.entry_z) & (zin > -p.stop_z))[s.long_entry].all()
    assert (ok & (zin >= p.entry_z) & (zin < p.stop_z))[s.short_entry].all()
    # replay: exits only when in that position, entries only when flat, time stop respected
    pos, entered = 0, -1
    for t in range(n):
        assert not (s.long_entry[t] and s.short_entry[t])
        if s.long_exit[t]:
            assert pos == 1
            pos = 0
        if s.short_exit[t]:
            assert pos == -1
            pos = 0
        if p.max_hold and pos != 0:
            assert t - entered <= p.max_hold
        if s.long_entry[t] or s.short_entry[t]:
            assert pos == 0
            pos, entered = (1 if s.long_entry[t] else -1), t
    # prefix invariance at a random cut
    t = n // 2 + 1
    cut = signals(bars_from_close(y[:t]), bars_from_close(x[:t]), p)
    assert same(cut, PairSignals(*(a[:t] for a in s)))


def test_rolling_ols_handles_nan_windows_and_flat_x() -> None:
    x = np.array([1.0, 2.0, 3.0, NAN, 5.0, 6.0, 7.0, 8.0, 8.0, 8.0, 8.0])
    y = 3.0 * x + 1.0
    alpha, beta, corr = rolling_ols_nb(y, x, 3)
    assert beta[2] == pytest.approx(3.0) and alpha[2] == pytest.approx(1.0)
    assert np.isnan(beta[3:6]).all()  # windows holding the NaN
    assert beta[6] == pytest.approx(3.0) and corr[6] == pytest.approx(1.0)
    assert np.isnan(beta[10]) and np.isnan(corr[10])  # x flat over 8, 9, 10


# --- params, registry -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [dict(lookback=2), dict(exit_z=1.3), dict(stop_z=1.0), dict(exit_z=-0.1),
                                 dict(max_hold=-1), dict(min_corr=1.5)])
def test_bad_params_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Pairs(**bad)


def test_registered_with_defaults_at_the_grid_centre() -> None:
    assert get("pairs") is STRATEGY and STRATEGY.params is Pairs
    d = Pairs()
    assert (d.lookback, d.entry_z, d.exit_z, d.stop_z, d.max_hold, d.min_corr, d.short) == (
        60, 1.2, 0.2, 2.8, 80, 0.7, True)
    for key, values in GRID.items():
        assert values[len(values) // 2] == getattr(d, key)
    import itertools
    for combo in itertools.product(*GRID.values()):  # every grid point is a valid Pairs
        Pairs(**dict(zip(GRID, combo)))
    with pytest.raises(ValueError, match="did you mean 'entry_z'"):
        STRATEGY.make_params(entryz=1.0)


# --- Engle-Granger and the screen -------------------------------------------------------------

def cointegrated(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """x a log random walk, log y = 1.5 log x + 0.2 + AR(1) noise with phi 0.5 (half-life 1 bar)."""
    rng = np.random.default_rng(seed)
    lx = 4.0 + np.cumsum(rng.normal(0, 0.02, n))
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = 0.5 * e[t - 1] + rng.normal(0, 0.01)
    return np.exp(1.5 * lx + 0.2 + e), np.exp(lx)


def test_engle_granger_finds_a_cointegrated_pair() -> None:
    y, x = cointegrated(7)
    r = engle_granger(y, x)
    assert r.pvalue < 0.05
    assert r.beta == pytest.approx(1.5, abs=0.05)
    assert 0.5 < r.half_life < 2.0


def test_engle_granger_rejects_independent_random_walks() -> None:
    rng = np.random.default_rng(1)
    y, x = (np.exp(4.0 + np.cumsum(rng.normal(0, 0.02, 500))) for _ in range(2))
    r = engle_granger(y, x)
    assert r.pvalue > 0.05


def test_engle_granger_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        engle_granger(np.array([1.0, NAN, 2.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError):
        engle_granger(np.ones(5), np.ones(6))


def test_screen_keeps_the_cointegrated_pair_only() -> None:
    y, x = cointegrated(7)
    rng = np.random.default_rng(3)
    walk = np.exp(4.0 + np.cumsum(rng.normal(0, 0.02, 500)))
    found = screen_pairs({"X": x, "W": walk, "Y": y}, max_pvalue=0.05, min_corr=0.0)
    assert [(c.y, c.x) in (("Y", "X"), ("X", "Y")) for c in found] == [True]
    assert found[0].pvalue < 0.05 and found[0].corr > 0.9
    assert screen_pairs({"X": x, "Y": y}, min_corr=1.0) == []
