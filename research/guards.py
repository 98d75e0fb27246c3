"""Overfitting guards: is the chosen backtest better than the best of many lucky ones?

* ``probabilistic_sharpe`` / ``deflated_sharpe``: the probability that the true Sharpe ratio
  beats a benchmark, given the sample's length, skew and kurtosis; the deflated version sets the
  benchmark to the Sharpe ratio the best of ``n_trials`` skill-less strategies would show.
* ``pbo_cscv``: the probability of backtest overfitting, by combinatorially symmetric
  cross-validation: how often the in-sample winner lands in the bottom half out of sample.
* ``neighbourhood_stability``: does the chosen parameter point sit on a plateau or on a spike?

Units: every Sharpe ratio here is PER PERIOD (mean / std of the returns at their own frequency,
not annualized), and ``n_obs`` counts those periods. ``deannualize_sharpe`` and
``deannualize_sharpe_variance`` convert annualized figures. ``kurt`` is Pearson kurtosis (3 for a
normal distribution), not excess kurtosis.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329
_CHUNK = 2048  # combinations evaluated at once in pbo_cscv: bounds memory at 2 x CHUNK x N floats


def deannualize_sharpe(sr_annual: float, periods_per_year: float) -> float:
    """Per-period Sharpe ratio from an annualized one: SR / sqrt(periods_per_year)."""
    return float(sr_annual) / math.sqrt(periods_per_year)


def deannualize_sharpe_variance(var_annual: float, periods_per_year: float) -> float:
    """Per-period variance of Sharpe ratios from the variance of annualized ones: V / periods_per_year."""
    return float(var_annual) / periods_per_year


@dataclass(frozen=True, slots=True)
class SharpeStats:
    """The inputs PSR/DSR need, measured on one return series."""

    sr: float  # mean / std(ddof=1), per period
    n_obs: int
    skew: float  # scipy.stats.skew, biased (moment) estimator
    kurt: float  # scipy.stats.kurtosis(fisher=False), Pearson, biased (moment) estimator


def sharpe_stats(returns: np.ndarray) -> SharpeStats:
    """Per-period Sharpe ratio, length, skew and Pearson kurtosis of a return series."""
    r = np.asarray(returns, dtype=float)
    r = r[~np.isnan(r)]
    if len(r) < 2 or np.std(r) == 0:
        raise ValueError("sharpe_stats needs at least 2 non-NaN returns that are not all equal")
    return SharpeStats(float(r.mean() / r.std(ddof=1)), len(r), float(stats.skew(r)),
                       float(stats.kurtosis(r, fisher=False)))


def probabilistic_sharpe(sr: float, sr_benchmark: float, n_obs: int, skew: float = 0.0,
                         kurt: float = 3.0) -> float:
    """PSR: P(true SR > sr_benchmark) given the observed per-period ``sr``.

    Bailey & Lopez de Prado (2012), "The Sharpe Ratio Efficient Frontier", eq. (11)::

        PSR = Phi( (SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2) )

    with Phi the standard normal CDF, kurt Pearson (normal = 3). ValueError when n_obs < 2 or the
    term under the root is not positive (an impossible skew/kurtosis pair for this SR).
    """
    if n_obs < 2:
        raise ValueError(f"n_obs must be at least 2, got {n_obs}")
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not var > 0:
        raise ValueError(f"1 - skew*SR + (kurt-1)/4*SR^2 = {var:.4g} is not positive "
                         f"(sr={sr}, skew={skew}, kurt={kurt}; kurt is Pearson, normal = 3)")
    return float(stats.norm.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(var)))


def expected_max_sharpe(n_trials: int, sr_variance_across_trials: float) -> float:
    """E[max SR] of n_trials skill-less trials (true SR 0), per period.

    Bailey & Lopez de Prado (2014), "The Deflated Sharpe Ratio", eq. (2), the Euler-Mascheroni
    approximation of the expected maximum of N normal draws::

        SR0 = sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))

    g = 0.5772... (Euler-Mascheroni), V = variance of the trials' per-period SRs. N = 1 gives 0
    (one trial is not a selection; the formula itself would give -inf there).
    """
    n = int(n_trials)
    if n != n_trials or n < 1:
        raise ValueError(f"n_trials must be a whole number >= 1, got {n_trials}")
    if not sr_variance_across_trials >= 0:
        raise ValueError(f"sr_variance_across_trials must be >= 0, got {sr_variance_across_trials}")
    if n == 1:
        return 0.0
    z = (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n) + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e))
    return float(math.sqrt(sr_variance_across_trials) * z)


def deflated_sharpe(sr: float, n_obs: int, skew: float, kurt: float, n_trials: int,
                    sr_variance_across_trials: float) -> float:
    """DSR: the PSR of the chosen per-period ``sr`` against the expected max SR of n_trials.

    Bailey & Lopez de Prado (2014), eq. (2)-(3): DSR = PSR(SR0) with SR0 = expected_max_sharpe(
    n_trials, V). All SRs per period; V is the variance of the per-period SRs of all trials
    (e.g. np.var(trial_srs, ddof=1)). Their example: annual SR 2.5 over 1250 daily obs (250 a
    year), 100 trials, annual V 0.5, skew -3, kurt 10 -> SR0 = 0.1132 per day, DSR = 0.9004.
    """
    sr0 = expected_max_sharpe(n_trials, sr_variance_across_trials)
    return probabilistic_sharpe(sr, sr0, n_obs, skew, kurt)


@dataclass(frozen=True, slots=True)
class PBOResult:
    """pbo = share of logits <= 0; one logit per evaluated combination."""

    pbo: float
    logits: np.ndarray
    n_combinations: int  # evaluated: C(S, S/2), or max_combinations when that is smaller


Metric = str | Callable[[np.ndarray], np.ndarray]


def pbo_cscv(returns_matrix: np.ndarray, n_splits: int = 16, metric: Metric = "sharpe", *,
             max_combinations: int = 20_000, seed: int = 0) -> PBOResult:
    """Probability of backtest overfitting by CSCV (Bailey, Borwein, Lopez de Prado, Zhu 2015).

    ``returns_matrix`` is T x N (rows = periods, columns = trials). The first T mod S rows are
    dropped (the oldest), the rest cut into S = ``n_splits`` equal contiguous blocks. For each
    set c of S/2 blocks: in-sample = rows of c, out-of-sample = the others; n* = the trial with
    the best in-sample metric (ties -> lowest column); w = rank of n*'s out-of-sample metric among
    the N trials (1 = worst, ties averaged) / (N + 1); logit = ln(w / (1 - w)). PBO = share of
    logits <= 0. Metrics: "sharpe" (mean / std, ddof=1), "mean", "total_return" (ranked by the sum
    of log(1 + r)), or a callable rows x N -> N. NaN metrics (e.g. zero std) rank below all others.

    Cap: when C(S, S/2) > ``max_combinations``, exactly that many distinct combinations are
    drawn uniformly without replacement (numpy Generator seeded by ``seed``, ranks in
    lexicographic order), so the result is deterministic. S <= 64.
    """
    r = np.asarray(returns_matrix, dtype=float)
    s = int(n_splits)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"returns_matrix must be T x N with N >= 2 trials, got shape {r.shape}")
    if s != n_splits or s < 2 or s % 2 or s > 64:
        raise ValueError(f"n_splits must be an even whole number in [2, 64], got {n_splits}")
    rows = r.shape[0] // s
    if rows * s // 2 < 2:
        raise ValueError(f"{r.shape[0]} rows are too few for {s} blocks (each half needs >= 2 rows)")
    blocks = r[r.shape[0] - rows * s:].reshape(s, rows, r.shape[1])
    member = _combinations(s, max_combinations, seed)
    score = _block_scorer(blocks, metric)
    logits = np.empty(len(member))
    n = r.shape[1]
    for lo in range(0, len(member), _CHUNK):
        m = member[lo:lo + _CHUNK]
        is_, oos = score(m), score(~m)
        best = np.argmax(is_, axis=1)  # first of equal maxima
        star = oos[np.arange(len(m)), best][:, None]
        rank = (oos < star).sum(axis=1) + ((oos == star).sum(axis=1) + 1) / 2
        w = rank / (n + 1)
        logits[lo:lo + len(m)] = np.log(w / (1 - w))
    return PBOResult(float(np.mean(logits <= 0)), logits, len(member))


def _combinations(s: int, cap: int, seed: int) -> np.ndarray:
    """Boolean C x S membership of the in-sample halves: all of them, or a seeded sample of cap."""
    k, total = s // 2, math.comb(s, s // 2)
    if total <= cap:
        combos = itertools.combinations(range(s), k)
    else:
        ranks = np.sort(np.random.default_rng(seed).choice(total, size=cap, replace=False))
        combos = (_unrank(int(x), s, k) for x in ranks)
    out = []
    for c in combos:
        row = np.zeros(s, dtype=bool)
        row[list(c)] = True
        out.append(row)
    return np.array(out)


def _unrank(rank: int, n: int, k: int) -> list[int]:
    """The rank-th k-subset of range(n) in lexicographic order (combinatorial number system)."""
    out, c = [], 0
    for i in range(k):
        while (count := math.comb(n - c - 1, k - i - 1)) <= rank:
            rank -= count
            c += 1
        out.append(c)
        c += 1
    return out


def _block_scorer(blocks: np.ndarray, metric: Metric) -> Callable[[np.ndarray], np.ndarray]:
    """A function: membership (C x S bool) -> metric of the selected blocks' rows (C x N)."""
    s, rows, _ = blocks.shape
    if callable(metric):
        def custom(m: np.ndarray) -> np.ndarray:
            out = np.array([metric(blocks[sel].reshape(-1, blocks.shape[2])) for sel in m], dtype=float)
            return np.where(np.isnan(out), -np.inf, out)
        return custom
    if metric == "total_return":
        if (blocks < -1).any():
            raise ValueError("total_return: a return below -100% has no compounded value")
        with np.errstate(divide="ignore"):
            logs = np.log1p(blocks).sum(axis=1)  # S x N; -inf where equity was wiped out
        return lambda m: m.astype(float) @ np.where(np.isneginf(logs), -1e300, logs)
    if metric not in ("sharpe", "mean"):
        raise ValueError(f"metric {metric!r} is not 'sharpe', 'mean', 'total_return' or a callable")
    mu = blocks.mean(axis=(0, 1))  # centre per trial so the sum-of-squares variance stays exact
    centred = blocks - mu
    sums, sq = centred.sum(axis=1), (centred ** 2).sum(axis=1)  # S x N

    def score(m: np.ndarray) -> np.ndarray:
        mf = m.astype(float)
        n = mf.sum(axis=1, keepdims=True) * rows
        mean_c = (mf @ sums) / n
        if metric == "mean":
            return mean_c + mu
        var = np.maximum((mf @ sq - n * mean_c ** 2) / (n - 1), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            sr = (mean_c + mu) / np.sqrt(var)
        return np.where(np.isfinite(sr), sr, -np.inf)

    return score


def neighbourhood_stability(objective_grid: np.ndarray, chosen_index: tuple[int, ...], *,
                            diagonals: bool = True) -> float:
    """How much of the chosen point's objective its immediate grid neighbours keep, in [0, 1].

    Definition: v = grid[chosen_index]; neighbours = the points one step away on any set of axes
    (the 3^k - 1 surrounding points; with ``diagonals=False`` only the 2k along single axes),
    fewer at edges and corners. Each neighbour u scores max(0, 1 - |u - v| / |v|): 1 when equal,
    0 when it differs by |v| or more in either direction (so a sign flip scores 0, and negative
    objectives are handled by the same relative distance). Stability = the mean score over the
    neighbours whose value is not NaN (+-inf neighbours score 0). 1 = a flat plateau, ~0 = an
    isolated spike. Edge cases: v == 0 -> a neighbour scores 1 if it is 0 too, else 0; NaN when v
    is NaN or infinite, or no neighbour has a value (a one-point grid, or all neighbours NaN).
    """
    grid = np.asarray(objective_grid, dtype=float)
    idx = tuple(int(i) for i in chosen_index)
    if grid.ndim == 0 or len(idx) != grid.ndim:
        raise ValueError(f"chosen_index {chosen_index} needs one index per grid axis ({grid.ndim})")
    if any(not 0 <= i < n for i, n in zip(idx, grid.shape)):
        raise ValueError(f"chosen_index {chosen_index} is outside the grid of shape {grid.shape}")
    v = grid[idx]
    if not np.isfinite(v):
        return float("nan")
    window = tuple(slice(max(i - 1, 0), i + 2) for i in idx)
    block = grid[window]
    offsets = np.indices(block.shape) - np.array([i - w.start for i, w in zip(idx, window)]).reshape(
        (-1,) + (1,) * grid.ndim)
    steps = np.abs(offsets).sum(axis=0)
    is_neighbour = (steps > 0) if diagonals else (steps == 1)
    u = block[is_neighbour & ~np.isnan(block)]
    if not len(u):
        return float("nan")
    if v == 0:
        scores = (u == 0).astype(float)
    else:
        with np.errstate(invalid="ignore", over="ignore"):  # overflow -> inf -> score 0
            scores = np.maximum(0.0, 1.0 - np.abs(u - v) / abs(v))
        scores = np.nan_to_num(scores, nan=0.0)
    return float(scores.mean())


def point_stability(points, values: np.ndarray, chosen: int) -> float:
    """``neighbourhood_stability`` of row ``chosen`` of a sweep's rows: ``points`` (a DataFrame, one
    column per swept dimension, one row per combination) laid out as a grid of the dimensions that
    vary, ``values`` the objective per row. NaN when no dimension varies (no neighbours)."""
    axes = [c for c in points.columns if points[c].nunique() > 1]
    if not axes:
        return float("nan")
    levels = [np.sort(points[a].unique()) for a in axes]
    grid = np.full([len(v) for v in levels], np.nan)
    pos = tuple(np.searchsorted(v, points[a].to_numpy()) for a, v in zip(axes, levels))
    grid[pos] = np.asarray(values, dtype=float)
    return neighbourhood_stability(grid, tuple(int(p[chosen]) for p in pos))
