"""vwap_reversion on a hand-computed session: VWAP, the per-session z-score, volume confirmation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from research.bars import Bars
from research.signals import vwap_reversion
from research.signals.vwap_reversion import VwapReversion, session_dev_zscore_nb


def intraday(close, volume, sessions: int = 1) -> Bars:
    """``sessions`` copies of one session whose bars have high = low = close (typical price = close)."""
    c = np.tile(np.asarray(close, dtype=np.float64), sessions)
    k = len(close)
    pos = np.tile(np.arange(k, dtype=np.int64), sessions)
    return Bars(c.copy(), c.copy(), c.copy(), c, np.tile(np.asarray(volume, float), sessions),
                np.repeat(np.arange(sessions, dtype=np.int64), k), pos, k - 1 - pos)


def on(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


# window 3, warmup_bars 3, vol_k 1, entry 1.5, exit 0.5. With d = [0, 0, x] over a 3-bar window,
# rms = |x| / sqrt(3), so z = +-sqrt(3) = +-1.732 whatever x (centred std: |x| * sqrt(2) / 3, z = +-2.121).
#  t  close  vol  VWAP                      d = close - VWAP   z
#  0  100    100  100                       0                  NaN (fewer than 3 bars)
#  1  100    100  100                       0                  NaN
#  2  100    100  100                       0                  NaN (flat window: sd 0)
#  3  100    100  100                       0                  NaN
#  4  94     200  (40000 + 18800)/600 = 98  -4                 -1.73, vol 200 >= mean 100 -> LONG ENTRY
#  5  98     100  68600/700 = 98            0                  0     -> long exit
#  6  98     100  98                        0                  0     -> long exit (window -4, 0, 0)
#  7  98     100  98                        0                  NaN (flat)
#  8  102    200  108600/1100 = 98.727      3.27               +1.73, vol 200 >= 100 -> SHORT ENTRY
CLOSE = [100, 100, 100, 100, 94, 98, 98, 98, 102]
VOL = [100, 100, 100, 100, 200, 100, 100, 100, 200]
P = VwapReversion(window=3, entry_z=1.5, exit_z=0.5, vol_k=1.0, warmup_bars=3, short=True)


def test_hand_fixture() -> None:
    sig = vwap_reversion.signals(intraday(CLOSE, VOL), P)
    assert on(sig.long_entry) == [4]
    assert on(sig.long_exit) == [5, 6, 8]  # z >= -0.5 (overshooting to +1.73 exits a long too)
    assert on(sig.short_entry) == [8]
    assert on(sig.short_exit) == [4, 5, 6]  # z <= 0.5


@pytest.mark.parametrize("center, peak", [(False, 3**0.5), (True, 1.5 * 2**0.5)])
def test_zscore_values(center: bool, peak: float) -> None:
    b = intraday(CLOSE, VOL)
    vwap = np.array([100, 100, 100, 100, 98, 98, 98, 98, 108600 / 1100])
    z = session_dev_zscore_nb(b.close, vwap, b.session, 3, center)
    assert np.isnan(z[[0, 1, 2, 3, 7]]).all()
    np.testing.assert_allclose(z[[4, 5, 6, 8]], [-peak, 0.0, 0.0, peak], atol=1e-12)


def test_centred_scale_reaches_further() -> None:
    sig = vwap_reversion.signals(intraday(CLOSE, VOL), replace(P, entry_z=2.0))
    assert on(sig.long_entry) == [] and on(sig.short_entry) == []  # rms: |z| <= sqrt(3) < 2
    sig = vwap_reversion.signals(intraday(CLOSE, VOL), replace(P, entry_z=2.0, scale="std"))
    assert on(sig.long_entry) == [4] and on(sig.short_entry) == [8]


def test_session_warmup_blocks_early_entries() -> None:
    sig = vwap_reversion.signals(intraday(CLOSE, VOL), replace(P, warmup_bars=5))
    assert on(sig.long_entry) == [] and on(sig.short_entry) == [8]


def test_volume_confirmation() -> None:
    sig = vwap_reversion.signals(intraday(CLOSE, VOL), replace(P, vol_k=2.5))
    assert on(sig.long_entry) == [] and on(sig.short_entry) == []
    assert on(sig.long_exit) == [5, 6, 8]  # exits do not need volume


def test_everything_resets_each_session() -> None:
    k = len(CLOSE)
    sig = vwap_reversion.signals(intraday(CLOSE, VOL, sessions=3), P)
    assert on(sig.long_entry) == [4, 4 + k, 4 + 2 * k]
    assert on(sig.short_entry) == [8, 8 + k, 8 + 2 * k]


def test_mirrored_prices_swap_sides() -> None:
    sig = vwap_reversion.signals(intraday(200 - np.asarray(CLOSE, float), VOL), P)
    assert on(sig.short_entry) == [4] and on(sig.long_entry) == [8]


def test_long_only_by_default() -> None:
    sig = vwap_reversion.signals(intraday(CLOSE, VOL), VwapReversion(window=3, entry_z=1.5, warmup_bars=3))
    assert on(sig.long_entry) == [4] and not sig.short_entry.any() and not sig.short_exit.any()


def test_strategy_is_intraday() -> None:
    assert vwap_reversion.STRATEGY.intraday


@pytest.mark.parametrize("kw, msg", [({"window": 1}, "window"), ({"exit_z": 2.0}, "exit_z < entry_z"),
                                     ({"vol_k": -1.0}, "vol_k"), ({"warmup_bars": -1}, "warmup_bars"),
                                     ({"scale": "mad"}, "scale")])
def test_invalid_params(kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        VwapReversion(**kw)
