"""Seeded synthetic minute bars on real NYSE sessions, for tests, demos and benchmarks.

The generator works in two layers, so that what a test checks at the daily level (regimes, gaps,
the session's open and close) never depends on the minute draws:

1. A daily plan: two persistent Markov chains (trend: up / down / range, volatility: calm /
   volatile), a fat-tailed overnight gap, and the session's open-to-close log return. Trending
   days drift, ranging days revert to a slowly moving anchor, volatile days have 2.5x the sigma.
   ``synthetic_regimes`` returns these labels, the ground truth for a regime detector.
2. Minute bars (one numba kernel): a Brownian bridge from the session's open to its planned
   close, with U-shaped volatility and volume profiles, wicks, a VWAP inside each bar and a trade
   count, priced in cents.

Each (symbol, seed) pair owns its own PCG64 streams (seeded from ``seed`` and the CRC-32 of the
symbol, never Python's salted ``hash``): the same (symbol, seed, days, end) give bit-identical bars
on a given numpy / numba build. The first session of the window is where the series starts, so
another ``days`` or ``end`` gives another series.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache

import numpy as np
import pandas as pd
from numba import njit
from numpy.random import PCG64, Generator

from ..calendar import Sessions, nyse
from ..schema import TIMEFRAMES, Adjustment, BarMeta, Feed, LakeError, check_symbol, check_timeframe

SOURCE = "synthetic"
TREND_LABELS = ("up", "down", "range")
VOL_LABELS = ("calm", "volatile")

# Daily transition matrices (rows: from, columns: to). Trends end more often in a range than in
# the opposite trend; volatile spells are shorter than calm ones (~67% of days are calm).
TREND_P = np.array([[0.975, 0.010, 0.015], [0.010, 0.975, 0.015], [0.0125, 0.0125, 0.975]])
VOL_P = np.array([[0.98, 0.02], [0.04, 0.96]])
VOLATILE_X = 2.5  # sigma multiplier of a volatile day
DRIFT_K = 0.3  # a trending day drifts DRIFT_K daily sigmas
RANGE_K = 0.35  # share of the distance to the anchor a ranging day closes
ANCHOR_ALPHA = 0.05  # how fast the range anchor follows the close (EMA weight per day)
PULL_K = 0.004  # faint daily pull to the start price, so long runs stay in a sane price band
GAP_K = 0.5  # overnight gap sigma as a share of the day's sigma (Student t, 3 dof)
# Wick sizes are standard exponential draws; a 4096-quantile table indexed by 12 random bits is
# as good for a wick and much cheaper than a log per bar.
EXP_TABLE = -np.log((np.arange(4096) + 0.5) / 4096)


def synthetic_meta() -> BarMeta:
    """Provenance of synthetic bars."""
    return BarMeta(source=SOURCE, feed=Feed.SYNTHETIC, adjustment=Adjustment.RAW)


def synthetic_bars(
    symbol: str,
    days: int,
    seed: int,
    *,
    end: str = "2025-12-31",
    timeframe: str = "1Min",
    start_price: float | None = None,
) -> pd.DataFrame:
    """Synthetic bars of the last ``days`` NYSE sessions up to ``end`` as a lake-ready frame."""
    arrays = synthetic_arrays(symbol, days, seed, end=end, timeframe=timeframe, start_price=start_price)
    frame = pd.DataFrame({k: v for k, v in arrays.items() if k != "ts"})
    frame.insert(0, "ts", pd.DatetimeIndex(arrays["ts"].view("datetime64[us]"), tz="UTC"))
    return frame


def synthetic_arrays(
    symbol: str,
    days: int,
    seed: int,
    *,
    end: str = "2025-12-31",
    timeframe: str = "1Min",
    start_price: float | None = None,
) -> dict[str, np.ndarray]:
    """The same bars as numpy arrays (ts as int64 UTC microseconds): the fast path."""
    timeframe = check_timeframe(timeframe)
    sessions, daily_rng, minute_rng = _setup(symbol, days, seed, end)
    plan = _daily_plan(sessions, daily_rng, start_price)
    n_min = sessions.minutes()
    # The minute draws: one normal per bar for the path, 64 raw bits per bar for the rest.
    z = minute_rng.standard_normal(int(n_min.sum()))
    bits = minute_rng.bit_generator.random_raw(len(z))
    rows, vol_prof, volu_prof = _profiles(n_min)
    ts, o, h, low, c, v, vwap, tc = minute_bars_nb(
        sessions.open_us, n_min, rows, vol_prof, volu_prof, plan["x_open"], plan["ret"],
        plan["sigma_in"], plan["vol_per_min"], plan["trade_size"], z, bits, EXP_TABLE,
    )
    out = {"ts": ts, "open": o, "high": h, "low": low, "close": c, "volume": v, "vwap": vwap,
           "trade_count": tc}
    return out if timeframe == "1Min" else _aggregate(out, sessions, n_min, TIMEFRAMES[timeframe])


def synthetic_regimes(symbol: str, days: int, seed: int, *, end: str = "2025-12-31") -> pd.DataFrame:
    """The regime the generator used for each session: date, trend (up/down/range), vol (calm/volatile)."""
    sessions, daily_rng, _ = _setup(symbol, days, seed, end)
    plan = _daily_plan(sessions, daily_rng, None)
    return pd.DataFrame(
        {
            "date": sessions.dates,
            "trend": np.asarray(TREND_LABELS, dtype=object)[plan["trend"]],
            "vol": np.asarray(VOL_LABELS, dtype=object)[plan["vol"]],
        }
    )


# ---------------------------------------------------------------- daily plan
def _setup(symbol: str, days: int, seed: int, end: str) -> tuple[Sessions, Generator, Generator]:
    """The sessions to cover and two independent streams (daily, minute) for (symbol, seed)."""
    symbol = check_symbol(symbol)
    if days < 1:
        raise LakeError(f"days must be at least 1, got {days}")
    if seed < 0:
        raise LakeError(f"seed must be a non-negative integer, got {seed}")
    sessions = nyse().slice(None, end)
    if len(sessions) < days:
        raise LakeError(f"only {len(sessions)} NYSE sessions end by {end}; asked for {days}")
    sessions = sessions.slice(sessions.dates[-days], None)
    daily, minute = np.random.SeedSequence([seed, zlib.crc32(symbol.encode())]).spawn(2)
    return sessions, Generator(PCG64(daily)), Generator(PCG64(minute))


def _daily_plan(sessions: Sessions, rng: Generator, start_price: float | None) -> dict[str, np.ndarray]:
    """Regimes, sigmas, gaps and open/close log prices of every session (all draws fixed order)."""
    n = len(sessions)
    # Per-symbol character, drawn even when start_price is given so the other draws do not move.
    # Start price 20-400, daily sigma 0.8-1.6% when calm, 0.3-20M shares a day.
    low, high = [math.log(20), 0.008, math.log(3e5)], [math.log(400), 0.016, math.log(2e7)]
    price_draw, base_sigma, adv = rng.uniform(low, high)
    if start_price is not None and not start_price > 0:
        raise LakeError(f"start_price must be positive, got {start_price}")
    x0 = math.log(start_price if start_price is not None else round(math.exp(price_draw), 2))
    trend = markov_chain_nb(TREND_P, rng.random(n), int(rng.integers(3)))
    vol = markov_chain_nb(VOL_P, rng.random(n), int(rng.random() < 0.33))
    eps, t3, vnoise = rng.standard_normal(n), rng.standard_t(3, n), rng.standard_normal(n)
    size = rng.uniform(80, 250, n)

    sigma = base_sigma * np.where(vol == 1, VOLATILE_X, 1.0)
    sigma_in = sigma * np.sqrt(sessions.minutes() / 390.0)  # a half day moves less
    gap = GAP_K * sigma / math.sqrt(3.0) * np.clip(t3, -15.0, 15.0)
    x_open, ret = daily_path_nb(trend, sigma, sigma_in, eps, gap, x0, DRIFT_K, RANGE_K, ANCHOR_ALPHA, PULL_K)
    # Volume per minute before the intraday profile; volatile days trade more. 1.32 is the mean of
    # the kernel's per-bar multiplier (1 + 0.4|z|), so ``adv`` stays the average daily volume.
    vol_per_min = math.exp(adv) / 390.0 / 1.32 * np.exp(0.25 * vnoise) * np.where(vol == 1, 1.8, 1.0)
    return {
        "trend": trend, "vol": vol, "x_open": x_open, "ret": ret, "sigma_in": sigma_in,
        "vol_per_min": vol_per_min, "trade_size": size,
    }


@njit(cache=True)
def markov_chain_nb(p: np.ndarray, u: np.ndarray, s0: int) -> np.ndarray:
    """States of a Markov chain with transition matrix ``p``, driven by uniforms ``u``."""
    out = np.empty(len(u), np.int64)
    s = s0
    for i in range(len(u)):
        if i > 0:
            acc, nxt = 0.0, p.shape[1] - 1
            for j in range(p.shape[1]):
                acc += p[s, j]
                if u[i] < acc:
                    nxt = j
                    break
            s = nxt
        out[i] = s
    return out


@njit(cache=True)
def daily_path_nb(trend, sigma, sigma_in, eps, gap, x0, drift_k, range_k, alpha, pull):
    """Open log price and open-to-close log return of each session under its trend regime."""
    n = len(trend)
    x_open, ret = np.empty(n), np.empty(n)
    x, anchor = x0, x0
    for d in range(n):
        xo = x0 if d == 0 else x + gap[d]
        if trend[d] == 2:  # range: revert toward an anchor set when the range began
            if d == 0 or trend[d - 1] != 2:
                anchor = xo
            mu = -range_k * (xo - anchor)
        else:
            mu = drift_k * sigma[d] * (1.0 if trend[d] == 0 else -1.0)
        r = mu - pull * (xo - x0) + sigma_in[d] * eps[d]
        x_open[d], ret[d] = xo, r
        x = xo + r
        anchor += alpha * (x - anchor)
    return x_open, ret


# ---------------------------------------------------------------- minute bars
def _u_shape(k: np.ndarray, n: int, head: float, tail: float, tau_head: float, tau_tail: float) -> np.ndarray:
    return 1.0 + head * np.exp(-k / tau_head) + tail * np.exp(-(n - 1 - k) / tau_tail)


@lru_cache(maxsize=16)
def _profile(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sigma weights (squares sum to 1) and volume weights of a session of ``n`` minutes."""
    k = np.arange(n, dtype=np.float64)
    w = _u_shape(k, n, 1.6, 0.6, 20.0, 15.0)  # the open is wilder than the close
    return w / np.sqrt(np.sum(w * w)), _u_shape(k, n, 3.0, 2.5, 25.0, 20.0) / 1.5


def _profiles(n_min: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per session a row into the two profile tables, one row per distinct session length."""
    lengths, rows = np.unique(n_min, return_inverse=True)
    shape = (len(lengths), int(lengths.max()))
    vol_prof, volu_prof = np.zeros(shape), np.zeros(shape)
    for i, n in enumerate(lengths.tolist()):
        vol_prof[i, :n], volu_prof[i, :n] = _profile(n)
    return rows.astype(np.int64), vol_prof, volu_prof


@njit(cache=True)
def _cents(x: float) -> float:
    return max(math.floor(x * 100.0 + 0.5), 1.0) / 100.0


@njit(cache=True)
def minute_bars_nb(open_us, n_min, rows, vol_prof, volu_prof, x_open, ret, sigma, vol_per_min, trade_size,
                   z, bits, exp_table):
    """Minute OHLCV bars: per session a bridge from the open to the planned close, priced in cents.

    ``z`` (one normal per bar) drives the path; ``bits`` (64 random bits per bar) the wicks, the
    volume noise and the vwap. Bars of session ``d`` start at ``open_us[d]``, one a minute.
    """
    total = n_min.sum()
    ts = np.empty(total, np.int64)
    o, h, lo, c = np.empty(total), np.empty(total), np.empty(total), np.empty(total)
    v, vwap, tc = np.empty(total), np.empty(total), np.empty(total, np.int64)
    m12, m20, scale20 = np.uint64(0xFFF), np.uint64(0xFFFFF), 2.0**-20
    pos = 0
    for d in range(len(n_min)):
        n, row, s = n_min[d], rows[d], sigma[d]
        w_end = 0.0
        for k in range(n):
            w_end += s * vol_prof[row, k] * z[pos + k]
        corr = ret[d] - w_end  # spread over the session in proportion to variance: a bridge
        prev = _cents(math.exp(x_open[d]))
        w, var = 0.0, 0.0
        for k in range(n):
            i = pos + k
            sk = s * vol_prof[row, k]
            w += sk * z[i]
            var += vol_prof[row, k] * vol_prof[row, k]
            b = bits[i]  # 64 random bits: 12 + 12 for the wicks, 20 for volume, 20 for the vwap
            e_hi, e_lo = exp_table[b >> np.uint64(52)], exp_table[(b >> np.uint64(40)) & m12]
            u_vol = (float((b >> np.uint64(20)) & m20) + 0.5) * scale20
            u_vwap = (float(b & m20) + 0.5) * scale20
            close = _cents(math.exp(x_open[d] + w + var * corr))
            top, bot = max(prev, close), min(prev, close)
            # Wicks: exponential excursions past the body, rounded outward so the body stays inside.
            hi = max(_cents(top * (1.0 + 0.6 * sk * e_hi)), top)
            low = min(_cents(bot * (1.0 - 0.6 * sk * e_lo)), bot)
            ts[i] = open_us[d] + k * 60_000_000
            o[i], h[i], lo[i], c[i] = prev, hi, low, close
            typical = 0.25 * (prev + hi + low + close) + 0.3 * (hi - low) * (u_vwap - 0.5)
            vwap[i] = min(hi, max(low, typical))
            # Volume follows the U profile and rises with the size of the move (|z|).
            vol = vol_per_min[d] * volu_prof[row, k] * (0.6 + 0.8 * u_vol) * (1.0 + 0.4 * abs(z[i]))
            v[i] = max(math.floor(vol + 0.5), 1.0)
            tc[i] = max(int(v[i] / trade_size[d] + 0.5), 1)
            prev = close
        pos += n
    return ts, o, h, lo, c, v, vwap, tc


def _aggregate(bars: dict[str, np.ndarray], sessions: Sessions, n_min: np.ndarray,
               minutes: int) -> dict[str, np.ndarray]:
    """Roll contiguous minute bars up to ``minutes`` bars on the session grid (0 = one per session).

    Private and minimal on purpose: the generator's minutes have no holes, so a bar's group is
    just its minute-of-session divided by ``minutes``. ``data_lake/resample.py`` is the general tool.
    """
    session_start = np.concatenate([[0], np.cumsum(n_min)[:-1]])
    if minutes == 0:
        starts = session_start
    else:
        k = np.arange(int(n_min.sum())) - np.repeat(session_start, n_min)
        starts = np.flatnonzero(k % minutes == 0)
    ends = np.append(starts[1:], len(bars["ts"])) - 1
    vol = np.add.reduceat(bars["volume"], starts)
    high, low = np.maximum.reduceat(bars["high"], starts), np.minimum.reduceat(bars["low"], starts)
    return {
        "ts": sessions.day_us.copy() if minutes == 0 else bars["ts"][starts],
        "open": bars["open"][starts],
        "high": high,
        "low": low,
        "close": bars["close"][ends],
        "volume": vol,
        "vwap": np.clip(np.add.reduceat(bars["vwap"] * bars["volume"], starts) / vol, low, high),
        "trade_count": np.add.reduceat(bars["trade_count"], starts),
    }


__all__ = ["synthetic_arrays", "synthetic_bars", "synthetic_meta", "synthetic_regimes"]
