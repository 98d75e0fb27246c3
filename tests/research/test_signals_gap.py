"""gap on hand-made sessions: gap-and-go, gap-fill, the time stop and the sessions it must skip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from research.bars import Bars
from research.signals import gap
from research.signals.gap import Gap


def intraday(*sessions: tuple[int, list[tuple[float, float, float, float]]], first_bar: int = 0) -> Bars:
    """Bars from (session id, [(open, high, low, close), ...]) pairs, one bar per minute from the open."""
    rows, sess, pos, left = [], [], [], []
    for sid, bars in sessions:
        k = len(bars)
        rows += bars
        sess += [sid] * k
        pos += list(range(first_bar, first_bar + k))
        left += list(range(k - 1, -1, -1))
    o, h, lo, c = (np.asarray(x, dtype=np.float64) for x in zip(*rows))
    i = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return Bars(o, h, lo, c, np.full(len(c), 1000.0), i(sess), i(pos), i(left))


def on(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


def flat(price: float, k: int) -> list[tuple[float, float, float, float]]:
    return [(price, price, price, price)] * k


PREV = (7, flat(100.0, 3))  # the previous session closes at 100; its bars are t = 0..2
# Gap-and-go: open 103 (+3%). confirm 2 minutes, time stop at minute 6. t = 3 + minute.
#  min  open   high   low    close   notes
#  0    103    104    102.5  103.5   opening range: high 104.2, low 102.5
#  1    103.5  104.2  103    104
#  2    104    104.1  103.8  104.1   not above 104.2
#  3    104.1  104.6  104    104.5   above the range, lows never <= 100 -> LONG ENTRY (t = 6)
#  4    104.5  104.8  104.3  104.7
#  5    104.7  105    104.6  104.9
#  6    104.9  105    104.8  104.95  minute >= 6: time stop -> LONG EXIT (t = 9)
#  7    104.95 105    104.9  105     done for the session
GO_UP = (8, [(103, 104, 102.5, 103.5), (103.5, 104.2, 103, 104), (104, 104.1, 103.8, 104.1),
             (104.1, 104.6, 104, 104.5), (104.5, 104.8, 104.3, 104.7), (104.7, 105, 104.6, 104.9),
             (104.9, 105, 104.8, 104.95), (104.95, 105, 104.9, 105)])
GO = Gap(mode="go", min_gap=0.02, confirm_minutes=2, exit_minute=6)


def test_gap_and_go_long_with_time_stop() -> None:
    sig = gap.signals(intraday(PREV, GO_UP), GO)
    assert on(sig.long_entry) == [6]
    assert on(sig.long_exit) == [9]
    assert not sig.short_entry.any() and not sig.short_exit.any()


def test_gap_and_go_exits_when_the_range_low_breaks() -> None:
    bars = GO_UP[1][:4] + [(104.5, 104.5, 102, 102.4)] + GO_UP[1][5:]  # close 102.4 < range low 102.5
    sig = gap.signals(intraday(PREV, (8, bars)), GO)
    assert on(sig.long_entry) == [6] and on(sig.long_exit) == [7]  # minute 5 closes above the range
    # again, but one trade per session: no second entry


def test_gap_too_small_or_gap_filled_means_no_trade() -> None:
    assert not any(a.any() for a in gap.signals(intraday(PREV, GO_UP), replace(GO, min_gap=0.04)))
    filled = [(103, 104, 99.9, 103.5)] + GO_UP[1][1:]  # the first minute trades through 100
    assert not any(a.any() for a in gap.signals(intraday(PREV, (8, filled)), GO))


def test_gap_down_go_needs_short() -> None:
    down = (8, [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in GO_UP[1]])  # opens 97: -3%
    assert not any(a.any() for a in gap.signals(intraday(PREV, down), GO))
    sig = gap.signals(intraday(PREV, down), replace(GO, short=True))
    assert on(sig.short_entry) == [6] and on(sig.short_exit) == [9]
    assert not sig.long_entry.any()


# Gap-fill: open 103, target = 103 - 0.5 * 3 = 101.5; fade after minute 3.
#  min  open   high   low    close   notes
#  0    103    103.5  102.8  103.2   opening range: high 103.6, low 102.8
#  1    103.2  103.6  102.9  103.0
#  2    103.0  103.1  102.5  102.6   below the range but before minute 3
#  3    102.6  102.7  102.2  102.4   101.5 < 102.4 < 102.8 -> SHORT ENTRY (t = 6); stop level 103.6
#  4    102.4  102.5  101.8  102.0
#  5    102.0  102.1  101.3  101.4   close <= 101.5: half the gap filled -> SHORT EXIT (t = 8)
#  6    101.4  101.5  101.0  101.2
FILL_UP = (8, [(103, 103.5, 102.8, 103.2), (103.2, 103.6, 102.9, 103.0), (103.0, 103.1, 102.5, 102.6),
               (102.6, 102.7, 102.2, 102.4), (102.4, 102.5, 101.8, 102.0), (102.0, 102.1, 101.3, 101.4),
               (101.4, 101.5, 101.0, 101.2)])
FILL = Gap(mode="fill", min_gap=0.02, confirm_minutes=2, fade_after=3, exit_minute=6, short=True)


def test_gap_fill_short_until_half_filled() -> None:
    sig = gap.signals(intraday(PREV, FILL_UP), FILL)
    assert on(sig.short_entry) == [6] and on(sig.short_exit) == [8]
    assert not sig.long_entry.any() and not sig.long_exit.any()


def test_gap_fill_waits_for_fade_after_and_needs_short() -> None:
    assert not any(a.any() for a in gap.signals(intraday(PREV, FILL_UP), replace(FILL, short=False)))
    sig = gap.signals(intraday(PREV, FILL_UP), replace(FILL, fade_after=4))
    assert on(sig.short_entry) == [7] and on(sig.short_exit) == [8]  # minute 4 closes 102.0


def test_gap_fill_stop_at_the_gap_extreme() -> None:
    bars = FILL_UP[1][:4] + [(102.4, 103.8, 102.3, 103.7)] + FILL_UP[1][5:]  # back above high 103.6
    sig = gap.signals(intraday(PREV, (8, bars)), FILL)
    assert on(sig.short_entry) == [6] and on(sig.short_exit) == [7]


def test_gap_down_fill_is_a_long() -> None:
    down = (8, [(200 - o, 200 - lo, 200 - h, 200 - c) for o, h, lo, c in FILL_UP[1]])  # opens 97
    sig = gap.signals(intraday(PREV, down), replace(FILL, short=False))
    assert on(sig.long_entry) == [6] and on(sig.long_exit) == [8]


def test_skipped_sessions() -> None:
    # first session of the data, a missing session in between, a missing first minute
    assert not any(a.any() for a in gap.signals(intraday(GO_UP), GO))
    assert not any(a.any() for a in gap.signals(intraday((6, flat(100.0, 3)), GO_UP), GO))
    late = intraday(PREV, GO_UP)
    late.bar_in_session[3:] += 1
    assert not any(a.any() for a in gap.signals(late, GO))


def test_next_session_is_judged_on_its_own_gap() -> None:
    again = (9, GO_UP[1])  # opens 103 vs the previous close 105: -1.9%, below min_gap
    sig = gap.signals(intraday(PREV, GO_UP, again), GO)
    assert on(sig.long_entry) == [6]
    sig = gap.signals(intraday(PREV, GO_UP, again), replace(GO, min_gap=0.015, short=True))
    assert on(sig.long_entry) == [6] and on(sig.short_entry) == []  # gap down, but 103 never < range low


def test_strategy_is_intraday() -> None:
    assert gap.STRATEGY.intraday


@pytest.mark.parametrize("kw, msg", [({"mode": "fade"}, "mode"), ({"min_gap": 0.0}, "min_gap"),
                                     ({"confirm_minutes": 90}, "confirm_minutes < exit_minute"),
                                     ({"mode": "fill", "fade_after": 3}, "fade_after"),
                                     ({"fill_target": 1.5}, "fill_target")])
def test_invalid_params(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        Gap(**kw)
