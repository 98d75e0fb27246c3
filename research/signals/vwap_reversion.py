"""vwap_reversion (intraday): fade stretched moves away from the session VWAP, on volume.

Definition. Everything resets at each session's first bar (a session's signals use that session's
bars only); "the last w bars" below means bars of t's own session, so a statistic exists once the
session has that many bars:
* vwap_t: cumulative VWAP of the typical price (h+l+c)/3 since the session open
  (``research.kernels.indicators.session_vwap_nb``); d_t = close_t - vwap_t.
* sd_t: the dispersion of close about VWAP over the last ``window`` bars, t included:
  ``scale="rms"`` (default): sqrt(mean(d^2)), the spread around VWAP itself;
  ``scale="std"``: the population std (ddof 0) of d about its own window mean.
  z_t = d_t / sd_t. z is NaN while fewer than ``window`` bars of the session exist and where
  sd_t <= 1e-9 * close_t (a flat window: no scale to measure a stretch against).
* vm_t: mean volume of the ``window`` bars before t; volume confirmed: volume_t >= vol_k * vm_t.
* long entry at t: bar_in_session_t >= warmup_bars, z_t <= -entry_z and volume confirmed.
* long exit at t: z_t >= -exit_z (back within exit_z of VWAP, or overshot past it).
* short (when ``short``), the mirror: entry z_t >= entry_z with volume confirmed (same warm-up);
  exit z_t <= exit_z.
Why rms: d is persistent (price wanders away from VWAP for many bars), so its std about its own
window mean is small next to d and the centred z sits beyond +-2 on ~60% of random-walk minutes;
about VWAP, |z| >= 2 is a ~4% event, what "2 sigma from VWAP" means. |z| <= sqrt(window) with rms.
Requires 0 <= exit_z < entry_z, so no bar is both an entry and an exit of one side. Entries need
bar_in_session >= max(warmup_bars, window); use with ``ExitRules(flat_at_close=True)`` (the
signals never carry a position across sessions themselves). The 0.5% stop and 1% target of the
defaults are ``ExitRules(stop_loss=0.005, take_profit=0.01)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..bars import Bars
from ..kernels.indicators import session_vwap_nb
from .base import Signals, Strategy


@dataclass(frozen=True, slots=True)
class VwapReversion:
    window: int = 30
    entry_z: float = 2.0
    exit_z: float = 0.5
    vol_k: float = 1.0
    warmup_bars: int = 30
    scale: str = "rms"  # "rms" (about VWAP) or "std" (about the window mean of close - VWAP)
    short: bool = False

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"vwap_reversion window must be >= 2 bars, got {self.window}")
        if not (0.0 <= self.exit_z < self.entry_z):
            raise ValueError(f"vwap_reversion needs 0 <= exit_z < entry_z, got exit_z={self.exit_z}, "
                             f"entry_z={self.entry_z}")
        if not (self.vol_k >= 0.0):
            raise ValueError(f"vwap_reversion vol_k (volume multiple) must be >= 0, got {self.vol_k}")
        if self.scale not in ("rms", "std"):
            raise ValueError(f"vwap_reversion scale must be 'rms' or 'std', got {self.scale!r}")
        if self.warmup_bars < 0:
            raise ValueError(f"vwap_reversion warmup_bars must be >= 0, got {self.warmup_bars}")


GRID = {
    "window": (10, 20, 30, 40, 50),
    "entry_z": (1.5, 1.75, 2.0, 2.25, 2.5),
    "exit_z": (0.0, 0.25, 0.5, 0.75, 1.0),
    "vol_k": (0.5, 0.75, 1.0, 1.25, 1.5),
}


@njit(cache=True)
def session_dev_zscore_nb(close, vwap, session, window, center):
    """z_t = (close_t - vwap_t) / rms (center: std) of close - vwap over the session's last window bars."""
    n = close.shape[0]
    z = np.full(n, np.nan)
    k = 0  # bars of t's session so far, t included
    for t in range(n):
        k = k + 1 if t > 0 and session[t] == session[t - 1] else 1
        if k < window:
            continue
        m = 0.0
        if center:
            for j in range(t - window + 1, t + 1):
                m += close[j] - vwap[j]
            m /= window
        v = 0.0
        for j in range(t - window + 1, t + 1):
            e = close[j] - vwap[j] - m
            v += e * e
        sd = np.sqrt(v / window)
        if sd > 1e-9 * abs(close[t]):  # below that it is rounding noise of a flat window
            z[t] = (close[t] - vwap[t]) / sd
    return z


@njit(cache=True)
def session_mean_before_nb(x, session, window):
    """Mean of x over the window bars before t within t's session (NaN until there are window)."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    s = 0.0
    k = 0  # bars of t's session before t
    for t in range(n):
        if t == 0 or session[t] != session[t - 1]:
            s = 0.0
            k = 0
        if k >= window:
            out[t] = s / window
        s += x[t]
        if k >= window:
            s -= x[t - window]
        k += 1
    return out


def signals(bars: Bars, p: VwapReversion) -> Signals:
    """VWAP-stretch entries on volume, reversion exits (see the module docstring)."""
    vwap = session_vwap_nb(bars.high, bars.low, bars.close, bars.volume, bars.session)
    z = session_dev_zscore_nb(bars.close, vwap, bars.session, p.window, p.scale == "std")
    vm = session_mean_before_nb(bars.volume, bars.session, p.window)
    ok = (bars.bar_in_session >= p.warmup_bars) & (bars.volume >= p.vol_k * vm)  # NaN -> False
    le = ok & (z <= -p.entry_z)
    lx = z >= -p.exit_z
    if p.short:
        return Signals(le, lx, ok & (z >= p.entry_z), z <= p.exit_z)
    none = np.zeros(len(bars), dtype=np.bool_)
    return Signals(le, lx, none, none.copy())


def params_to_array(p: VwapReversion) -> np.ndarray:
    """The params as the float64 row ``signals_nb`` reads: window, entry_z, exit_z, vol_k,
    warmup_bars, scale ("std" 1, "rms" 0), short (0/1)."""
    return np.array([p.window, p.entry_z, p.exit_z, p.vol_k, p.warmup_bars, p.scale == "std", p.short],
                    dtype=np.float64)


@njit(cache=True)
def signals_nb(open_, high, low, close, volume, session, bar_in_session, bars_left, p):
    """``signals`` for the sweep's fused kernel: p = ``params_to_array(params)``; same output."""
    window = np.int64(p[0])
    vwap = session_vwap_nb(high, low, close, volume, session)
    z = session_dev_zscore_nb(close, vwap, session, window, p[5] != 0.0)
    vm = session_mean_before_nb(volume, session, window)
    ok = (bar_in_session >= np.int64(p[4])) & (volume >= p[3] * vm)
    le = ok & (z <= -p[1])
    lx = z >= -p[2]
    if p[6] != 0.0:
        return le, lx, ok & (z >= p[1]), z <= p[2]
    return le, lx, np.zeros(close.shape[0], dtype=np.bool_), np.zeros(close.shape[0], dtype=np.bool_)


STRATEGY = Strategy("vwap_reversion", VwapReversion, GRID, signals, intraday=True,
                    params_to_array=params_to_array, signals_nb=signals_nb)
