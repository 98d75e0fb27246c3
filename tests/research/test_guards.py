"""Overfitting guards: PSR/DSR from the papers' formulas, PBO by CSCV, neighbourhood stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from research.guards import (
    deannualize_sharpe, deannualize_sharpe_variance, deflated_sharpe, expected_max_sharpe,
    neighbourhood_stability, pbo_cscv, probabilistic_sharpe, sharpe_stats,
)

# --- PSR / DSR ---------------------------------------------------------------------------------


def test_psr_by_hand() -> None:
    # sr 0.1, benchmark 0, n 101, normal: z = 0.1 * sqrt(100) / sqrt(1 - 0 + (3-1)/4 * 0.01)
    #   = 1 / sqrt(1.005) = 0.997509; Phi(z) = 0.840741
    assert probabilistic_sharpe(0.1, 0.0, 101) == pytest.approx(0.840741, abs=1e-6)
    # sr 0.1, benchmark 0.05, n 253, skew -1, kurt 6: 1 + 0.1 + 5/4 * 0.01 = 1.1125
    #   z = 0.05 * sqrt(252) / sqrt(1.1125) = 0.793725 / 1.054751 = 0.752524; Phi(z) = 0.774132
    assert probabilistic_sharpe(0.1, 0.05, 253, skew=-1, kurt=6) == pytest.approx(0.774132, abs=1e-6)


def test_psr_is_one_half_at_the_benchmark() -> None:
    assert probabilistic_sharpe(0.08, 0.08, 500, 0.0, 3.0) == 0.5
    assert probabilistic_sharpe(0.08, 0.08, 500, -2.0, 9.0) == 0.5


def test_dsr_by_hand() -> None:
    # N 10, V 0.001: Phi^-1(1 - 1/10) = 1.281552, Phi^-1(1 - 1/(10e)) = Phi^-1(0.963212) = 1.789242
    #   SR0 = sqrt(0.001) * (0.422784 * 1.281552 + 0.577216 * 1.789242) = 0.0316228 * 1.574598
    #       = 0.0497932
    #   z = (0.1 - 0.0497932) * sqrt(499) / sqrt(1 + 2/4 * 0.01) = 1.118742; Phi(z) = 0.868375
    assert expected_max_sharpe(10, 0.001) == pytest.approx(0.0497932, abs=1e-7)
    assert deflated_sharpe(0.1, 500, 0.0, 3.0, 10, 0.001) == pytest.approx(0.868375, abs=1e-6)


def test_dsr_paper_example() -> None:
    # Bailey & Lopez de Prado (2014): annual SR 2.5, 5 years of daily data (1250 obs, 250 a year),
    # 100 trials with annual SR variance 0.5, skew -3, kurt 10 -> SR0 ~ 0.1132, DSR ~ 0.9004
    sr, v = deannualize_sharpe(2.5, 250), deannualize_sharpe_variance(0.5, 250)

    assert sr == pytest.approx(2.5 / math.sqrt(250)) and v == pytest.approx(0.002)
    assert expected_max_sharpe(100, v) == pytest.approx(0.1132, abs=5e-5)
    assert deflated_sharpe(sr, 1250, -3.0, 10.0, 100, v) == pytest.approx(0.9004, abs=5e-5)


def test_dsr_falls_as_trials_grow() -> None:
    dsr = [deflated_sharpe(0.1, 500, -0.5, 5.0, n, 0.002) for n in (1, 2, 5, 10, 100, 1000, 10_000)]

    assert dsr[0] == probabilistic_sharpe(0.1, 0.0, 500, -0.5, 5.0)  # one trial: no selection
    assert all(a > b for a, b in zip(dsr, dsr[1:]))


def test_psr_dsr_errors() -> None:
    with pytest.raises(ValueError, match="not positive"):
        probabilistic_sharpe(1.0, 0.0, 100, skew=5.0, kurt=1.0)
    with pytest.raises(ValueError, match="n_obs"):
        probabilistic_sharpe(0.1, 0.0, 1)
    with pytest.raises(ValueError, match="n_trials"):
        deflated_sharpe(0.1, 100, 0, 3, 0, 0.001)
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(2.5, 0.001)


def test_sharpe_stats_of_a_normal_sample() -> None:
    r = np.random.default_rng(0).normal(0.001, 0.01, 20_000)

    s = sharpe_stats(r)

    assert s.n_obs == 20_000 and s.sr == pytest.approx(r.mean() / r.std(ddof=1))
    assert abs(s.skew) < 0.1 and s.kurt == pytest.approx(3.0, abs=0.15)


# --- PBO ---------------------------------------------------------------------------------------


def test_pbo_hand_cases() -> None:
    # S = 2, metric mean. Trial 0 = [2, 2, -1, -1], trial 1 = [0, 0, 1, 1]: whichever half is in
    # sample, its winner is the loser out of sample: rank 1 of 2, w = 1/3, logit = ln(1/2).
    flip = np.array([[2, 0], [2, 0], [-1, 1], [-1, 1]], dtype=float)
    # trial 0 always better: rank 2 of 2, w = 2/3, logit = ln 2
    steady = np.array([[2, 0], [2, 0], [2, 0], [2, 0]], dtype=float)

    a, b = pbo_cscv(flip, 2, "mean"), pbo_cscv(steady, 2, "mean")
    trimmed = pbo_cscv(np.vstack([[99.0, -99.0], flip]), 2, "mean")  # T mod S = 1 oldest row dropped

    assert a.pbo == 1.0 and a.n_combinations == 2
    np.testing.assert_allclose(a.logits, [math.log(0.5)] * 2)
    assert b.pbo == 0.0 and np.allclose(b.logits, math.log(2))
    np.testing.assert_array_equal(trimmed.logits, a.logits)


def test_pbo_exact_combination_counts() -> None:
    r = np.random.default_rng(3).normal(0, 0.01, (160, 6))

    assert pbo_cscv(r, 8).n_combinations == 70  # C(8, 4)
    assert pbo_cscv(r, 4).n_combinations == 6
    assert len(pbo_cscv(r, 8).logits) == 70


def test_pbo_noise_is_near_one_half() -> None:
    # pure noise: the in-sample winner's out-of-sample rank is uniform; one sample's PBO swings
    # widely (combinations share data), so average 16 seeded draws
    pbos = [pbo_cscv(np.random.default_rng(s).normal(0, 0.01, (400, 10)), 8).pbo for s in range(16)]

    assert np.mean(pbos) == pytest.approx(0.5, abs=0.1)


def test_pbo_real_edge_is_near_zero() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(0, 0.01, (1000, 40))
    r[:, 17] += 0.002  # per-period SR 0.2 against noise: it wins in and out of sample

    res = pbo_cscv(r, 16)

    assert res.n_combinations == 12_870 and res.pbo < 0.05


def test_pbo_sharpe_kernel_matches_a_brute_force_metric() -> None:
    r = np.random.default_rng(7).normal(0.0002, 0.01, (240, 12))

    fast = pbo_cscv(r, 8, "sharpe")
    slow = pbo_cscv(r, 8, lambda x: x.mean(axis=0) / x.std(axis=0, ddof=1))

    np.testing.assert_allclose(fast.logits, slow.logits)


def test_pbo_cap_is_deterministic() -> None:
    r = np.random.default_rng(5).normal(0, 0.01, (400, 8))

    a, b = pbo_cscv(r, 20, max_combinations=500), pbo_cscv(r, 20, max_combinations=500)
    c = pbo_cscv(r, 20, max_combinations=500, seed=1)

    assert a.n_combinations == 500 and np.array_equal(a.logits, b.logits)
    assert not np.array_equal(a.logits, c.logits)


def test_pbo_errors() -> None:
    r = np.zeros((100, 4))
    with pytest.raises(ValueError, match="even"):
        pbo_cscv(r, 7)
    with pytest.raises(ValueError, match="N >= 2"):
        pbo_cscv(r[:, :1], 4)
    with pytest.raises(ValueError, match="too few"):
        pbo_cscv(r[:3], 4)
    with pytest.raises(ValueError, match="metric"):
        pbo_cscv(r, 4, "sortino")


# --- neighbourhood stability -------------------------------------------------------------------


def test_flat_plateau_is_one_everywhere() -> None:
    grid = np.full((4, 5, 3), 1.7)

    assert neighbourhood_stability(grid, (2, 2, 1)) == 1.0
    assert neighbourhood_stability(grid, (0, 0, 0)) == 1.0  # corner: 7 neighbours
    assert neighbourhood_stability(grid, (3, 4, 2), diagonals=False) == 1.0


def test_isolated_spike_is_near_zero() -> None:
    grid = np.random.default_rng(0).normal(0, 0.01, (7, 7))
    grid[3, 3] = 2.0

    assert neighbourhood_stability(grid, (3, 3)) < 0.02
    assert neighbourhood_stability(np.array([0.0, 0.0, 1.0]), (2,)) == 0.0  # spike at the edge


def test_stability_by_hand() -> None:
    # chosen 2: neighbours 1 -> 1 - 1/2 = 0.5 and 1.5 -> 1 - 0.5/2 = 0.75; mean 0.625
    assert neighbourhood_stability(np.array([1.0, 2.0, 1.5]), (1,)) == pytest.approx(0.625)
    # corner (0, 0) of [[4, 3], [2, 4]]: 3 -> 0.75, 2 -> 0.5, 4 (diagonal) -> 1; mean 0.75
    grid = np.array([[4.0, 3.0], [2.0, 4.0]])
    assert neighbourhood_stability(grid, (0, 0)) == pytest.approx(0.75)
    assert neighbourhood_stability(grid, (0, 0), diagonals=False) == pytest.approx(0.625)
    # NaN neighbour ignored; an inf neighbour scores 0
    assert neighbourhood_stability(np.array([np.nan, 2.0, 1.0]), (1,)) == pytest.approx(0.5)
    assert neighbourhood_stability(np.array([np.inf, 2.0, 2.0]), (1,)) == pytest.approx(0.5)


def test_stability_negative_and_zero_objectives() -> None:
    # chosen -1: -2 is |1|/1 away -> 0, -0.5 is 0.5 away -> 0.5; mean 0.25
    assert neighbourhood_stability(np.array([-2.0, -1.0, -0.5]), (1,)) == pytest.approx(0.25)
    assert neighbourhood_stability(np.array([-1.0, -1.0, -1.0]), (1,)) == 1.0
    assert neighbourhood_stability(np.array([-1.0, 1.0, -1.0]), (1,)) == 0.0  # sign flips
    assert neighbourhood_stability(np.array([0.0, 0.0, 0.0]), (1,)) == 1.0
    assert neighbourhood_stability(np.array([1.0, 0.0, 0.0]), (1,)) == 0.5


def test_stability_undefined_cases_and_errors() -> None:
    assert np.isnan(neighbourhood_stability(np.array([3.0]), (0,)))
    assert np.isnan(neighbourhood_stability(np.array([np.nan, 1.0, np.nan]), (1,)))
    assert np.isnan(neighbourhood_stability(np.array([1.0, np.nan, 1.0]), (1,)))
    with pytest.raises(ValueError, match="outside the grid"):
        neighbourhood_stability(np.zeros((3, 3)), (3, 0))
    with pytest.raises(ValueError, match="one index per grid axis"):
        neighbourhood_stability(np.zeros((3, 3)), (1,))


@settings(max_examples=100, deadline=None)
@given(grid=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                       elements=st.floats(-1e6, 1e6) | st.just(np.nan)),
       data=st.data())
def test_stability_is_in_unit_interval(grid: np.ndarray, data: st.DataObject) -> None:
    idx = tuple(data.draw(st.integers(0, n - 1)) for n in grid.shape)

    s = neighbourhood_stability(grid, idx)

    assert np.isnan(s) or 0.0 <= s <= 1.0


def test_point_stability_lays_sweep_rows_out_as_the_grid_of_the_dimensions_that_vary():
    import pandas as pd

    from research.guards import point_stability

    rows = pd.DataFrame({"fast": [5, 5, 10, 10, 20, 20], "slow": [50, 100, 50, 100, 50, 100], "fixed": 1})
    values = np.array([0.1, 0.2, 0.9, 1.0, 0.3, 0.4])
    grid = np.array([[0.1, 0.2], [0.9, 1.0], [0.3, 0.4]])  # fast x slow

    assert point_stability(rows.iloc[::-1], values[::-1], 2) == neighbourhood_stability(grid, (1, 1))
    assert np.isnan(point_stability(rows[["fixed"]], values, 0))
