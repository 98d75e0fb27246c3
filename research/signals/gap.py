"""gap (intraday, 1Min bars): gap-and-go, or fade the gap until it half fills.

Times count bars of the session (``bar_in_session``), which are minutes on the 1Min bars this
strategy is for: ``exit_minute=90`` is the bar opening at 11:00 ET.

Definition. For a session whose first bar (bar_in_session 0) is present and whose previous bar
belongs to the previous NYSE session (otherwise the session is skipped):
* pc = that previous bar's close, o0 = the first bar's open, gap = o0 / pc - 1; the session trades
  only if |gap| >= min_gap, in direction g = sign(gap).
* opening range: orh / orl = max high / min low of the bars with bar_in_session < confirm_minutes.
* hi_t / lo_t: the session's highest high / lowest low through t.
* mode "go" (trade side g): entry at the first bar t with confirm_minutes <= b_t < exit_minute
  where the gap holds beyond the range: g = +1: close_t > orh and lo_t > pc (the gap never
  filled); g = -1: close_t < orl and hi_t < pc. Invalidation level: orl (long) / orh (short).
* mode "fill" (trade side -g): target = o0 - fill_target * (o0 - pc). Entry at the first bar t
  with fade_after <= b_t < exit_minute where price has started filling past the range but not yet
  reached the target: g = +1 (short): target < close_t < orl; g = -1 (long): orh < close_t < target.
  Invalidation level: the gap extreme so far, hi_t (short) / lo_t (long) at the entry bar.
* exit: at the first bar u after the entry bar (same session) where b_u >= exit_minute (the time
  stop), or the close is beyond the invalidation level (long: close_u < level; short: close_u >
  level), or (fill) the target is reached (long: close_u >= target; short: close_u <= target).
At most one trade per session; a side that needs shorting is skipped unless ``short``. Use with
``ExitRules(flat_at_close=True)``; the 2R target of gap-and-go is an ``ExitRules`` take-profit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..bars import Bars
from .base import Signals, Strategy

MODES = ("go", "fill")


@dataclass(frozen=True, slots=True)
class Gap:
    mode: str = "go"
    min_gap: float = 0.02
    confirm_minutes: int = 5
    fade_after: int = 15
    exit_minute: int = 90
    fill_target: float = 0.5
    short: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"gap mode must be 'go' or 'fill', got {self.mode!r}")
        if not (0.0 < self.min_gap < 1.0):
            raise ValueError(f"gap min_gap must be a fraction in (0, 1), got {self.min_gap}")
        if not (1 <= self.confirm_minutes < self.exit_minute):
            raise ValueError(f"gap needs 1 <= confirm_minutes < exit_minute, got confirm_minutes="
                             f"{self.confirm_minutes}, exit_minute={self.exit_minute}")
        if self.mode == "fill" and not (self.confirm_minutes <= self.fade_after < self.exit_minute):
            raise ValueError(f"gap fill needs confirm_minutes <= fade_after < exit_minute, got "
                             f"confirm_minutes={self.confirm_minutes}, fade_after={self.fade_after}, "
                             f"exit_minute={self.exit_minute}")
        if not (0.0 < self.fill_target <= 1.0):
            raise ValueError(f"gap fill_target must be a share of the gap in (0, 1], got {self.fill_target}")


GRID = {
    "mode": MODES,
    "min_gap": (0.01, 0.015, 0.02, 0.025, 0.03),
    "confirm_minutes": (3, 5, 7),
    "fade_after": (10, 15, 20),
    "exit_minute": (60, 90, 120),
}


@njit(cache=True)
def gap_nb(open_, high, low, close, session, bar_in_session, min_gap, confirm, fade_after,
           exit_minute, fill_target, fill, allow_short):
    """Entries and exits of the gap strategy (fill: fade mode, else go); see the module docstring."""
    n = close.shape[0]
    le = np.zeros(n, dtype=np.bool_)
    lx = np.zeros(n, dtype=np.bool_)
    se = np.zeros(n, dtype=np.bool_)
    sx = np.zeros(n, dtype=np.bool_)
    g = 0  # gap direction of the current session (0: no trade this session)
    side = 0
    state = 0  # 0 waiting for an entry, 1 entry signalled, 2 done for the session
    pc = o0 = target = level = 0.0
    orh = hi = -np.inf
    orl = lo = np.inf
    for t in range(n):
        b = bar_in_session[t]
        if t == 0 or session[t] != session[t - 1]:
            g = 0
            state = 0
            orh = hi = -np.inf
            orl = lo = np.inf
            if t > 0 and b == 0 and session[t - 1] == session[t] - 1:
                pc = close[t - 1]
                o0 = open_[t]
                if abs(o0 / pc - 1.0) >= min_gap:
                    g = 1 if o0 > pc else -1
            side = -g if fill else g
            target = o0 - fill_target * (o0 - pc)
            if side == -1 and not allow_short:
                g = 0
        if g == 0 or state == 2:
            continue
        hi = max(hi, high[t])
        lo = min(lo, low[t])
        if b < confirm:
            orh = max(orh, high[t])
            orl = min(orl, low[t])
            continue
        c = close[t]
        if state == 1:
            out = b >= exit_minute
            if side == 1:
                out = out or c < level or (fill and c >= target)
                lx[t] = out
            else:
                out = out or c > level or (fill and c <= target)
                sx[t] = out
            if out:
                state = 2
            continue
        if b >= exit_minute:
            state = 2
            continue
        go = False
        if not fill:
            if g == 1:
                go = c > orh and lo > pc
                level = orl
            else:
                go = c < orl and hi < pc
                level = orh
        elif b >= fade_after:
            if g == 1:
                go = target < c < orl
                level = hi
            else:
                go = orh < c < target
                level = lo
        if go:
            state = 1
            if side == 1:
                le[t] = True
            else:
                se[t] = True
    return le, lx, se, sx


def signals(bars: Bars, p: Gap) -> Signals:
    """Gap-and-go or gap-fill entries with time-stop exits (see the module docstring)."""
    return Signals(*gap_nb(bars.open, bars.high, bars.low, bars.close, bars.session, bars.bar_in_session,
                           p.min_gap, p.confirm_minutes, p.fade_after, p.exit_minute, p.fill_target,
                           p.mode == "fill", p.short))


def params_to_array(p: Gap) -> np.ndarray:
    """The params as the float64 row ``signals_nb`` reads: fill (mode "fill" 1, "go" 0), min_gap,
    confirm_minutes, fade_after, exit_minute, fill_target, short (0/1)."""
    return np.array([p.mode == "fill", p.min_gap, p.confirm_minutes, p.fade_after, p.exit_minute,
                     p.fill_target, p.short], dtype=np.float64)


@njit(cache=True)
def signals_nb(open_, high, low, close, volume, session, bar_in_session, bars_left, p):
    """``signals`` for the sweep's fused kernel: p = ``params_to_array(params)``; same output."""
    return gap_nb(open_, high, low, close, session, bar_in_session, p[1], np.int64(p[2]), np.int64(p[3]),
                  np.int64(p[4]), p[5], p[0] != 0.0, p[6] != 0.0)


STRATEGY = Strategy("gap", Gap, GRID, signals, intraday=True,
                    params_to_array=params_to_array, signals_nb=signals_nb)
