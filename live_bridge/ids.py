"""Deterministic client order ids: the same decision always gets the same id.

Why deterministic: the runner records an intent, then submits it. If it crashes in between (or
after the broker accepted the order but before the answer was stored), the restarted process
recomputes the decision from the same bar and gets the *same* id, so it can ask the broker
``order_by_client_id`` before resending, and a resend is refused by Alpaca as a duplicate (422)
instead of doubling the position. Nothing here depends on the process: no ``hash()`` (salted per
process), no clock, no counter.

Format (at most ``MAX_LEN`` = 48 characters; Alpaca allows 128)::

    tl-<strategy>-<symbol>-<YYYYMMDDTHHMM UTC>-<intent>-<seq>-<hash8>
    tl-smacross-AAPL-20240102T1530-entry-0-1f3a9c0b

``hash8`` is the first 8 hex digits of a SHA-256 over all the fields at full precision (the bar
time to the microsecond), so when a long strategy name is truncated to fit, or two bars fall in the
same minute, the ids still differ. Only the strategy name is ever truncated; the symbol, time,
intent and seq are kept whole so that ``parse_client_order_id`` gets them back exactly.

Characters: fields take ``A-Z a-z 0-9 _ .`` only. ``-`` separates fields, and anything else
(spaces, ``/``, ``?``, ``&``, ``%``, ``#``) would need escaping in the query string of Alpaca's
``orders:by_client_order_id`` lookup, so it is refused rather than encoded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PREFIX = "tl"
MAX_LEN = 48
MIN_STRATEGY_CHARS = 3  # below this the prefix stops being readable; refuse instead
MAX_SEQ = 999
#: Intents that reduce or close a position; the risk manager never blocks these.
EXIT_INTENTS = frozenset({"exit", "stop", "target", "flatten"})
ENTRY_INTENTS = frozenset({"entry"})

_FIELD = re.compile(r"[A-Za-z0-9_.]+")
_INTENT = re.compile(r"[a-z][a-z0-9_]{0,11}")
_STAMP = "%Y%m%dT%H%M"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID = re.compile(
    rf"{PREFIX}-(?P<strategy>[A-Za-z0-9_.]+)-(?P<symbol>[A-Za-z0-9_.]+)-(?P<stamp>\d{{8}}T\d{{4}})"
    r"-(?P<intent>[a-z][a-z0-9_]{0,11})-(?P<seq>\d{1,3})-(?P<digest>[0-9a-f]{8})"
)


@dataclass(frozen=True, slots=True)
class ParsedOrderId:
    """The fields read back from a tradelab client order id."""

    strategy: str  # possibly a prefix of the real name: see ``maybe_truncated``
    symbol: str
    bar_time: datetime  # UTC, to the minute (the id's readable stamp)
    intent: str
    seq: int
    digest: str
    maybe_truncated: bool  # the id is MAX_LEN long and the strategy was not resolved to a known name

    @property
    def is_exit(self) -> bool:
        """True for intents that reduce a position (exit, stop, target, flatten)."""
        return self.intent in EXIT_INTENTS


def _check_field(name: str, value: str) -> None:
    if not isinstance(value, str) or not _FIELD.fullmatch(value):
        raise ValueError(
            f"{name} {value!r} has characters a client_order_id cannot carry: use A-Z a-z 0-9 _ . only"
        )


def _utc(bar_time: datetime) -> datetime:
    if not isinstance(bar_time, datetime) or bar_time.tzinfo is None:
        raise ValueError(f"bar_time {bar_time!r} must be a timezone-aware datetime (UTC)")
    return bar_time.astimezone(UTC)


def _digest(strategy: str, symbol: str, bar_time: datetime, intent: str, seq: int) -> str:
    # Microseconds since the epoch: one canonical spelling of the instant whatever its timezone.
    micros = (bar_time - _EPOCH) // timedelta(microseconds=1)
    payload = "\x1f".join((PREFIX, strategy, symbol, str(micros), intent, str(seq)))
    return hashlib.sha256(payload.encode()).hexdigest()[:8]


def client_order_id(strategy: str, symbol: str, bar_time: datetime, intent: str, seq: int = 0) -> str:
    """The id of one decision: stable across processes, unique per (strategy, symbol, bar, intent, seq).

    ``seq`` tells apart several orders of one kind on one bar (a scale-in, a re-placed stop).
    Raises ValueError on characters Alpaca would not take or fields too long to fit in MAX_LEN.
    """
    _check_field("strategy", strategy)
    _check_field("symbol", symbol)
    if not isinstance(intent, str) or not _INTENT.fullmatch(intent):
        raise ValueError(f"intent {intent!r} must be 1-12 lower-case letters, digits or _ (e.g. 'entry')")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"seq must be an int in [0, {MAX_SEQ}], got {seq!r}")
    t = _utc(bar_time)
    tail = f"-{symbol}-{t.strftime(_STAMP)}-{intent}-{seq}-{_digest(strategy, symbol, t, intent, seq)}"
    room = MAX_LEN - len(PREFIX) - 1 - len(tail)
    if room < MIN_STRATEGY_CHARS:
        raise ValueError(
            f"symbol {symbol!r} and intent {intent!r} leave {room} characters for the strategy name "
            f"(need {MIN_STRATEGY_CHARS}) in a {MAX_LEN}-character client_order_id"
        )
    return f"{PREFIX}-{strategy[:room]}{tail}"


def parse_client_order_id(cid: str, strategies: Iterable[str] = ()) -> ParsedOrderId | None:
    """The fields of a tradelab id, or None for an id tradelab did not make (a manual order).

    A long strategy name is truncated in the id; pass the known ``strategies`` to get the full
    name back: a known name is accepted when it equals the id's strategy field, or extends it and
    regenerates the exact id (this needs a minute-aligned bar time, which every lake bar is).
    """
    strategies = tuple(strategies)
    m = _ID.fullmatch(cid) if isinstance(cid, str) else None
    if m is None:
        return None
    bar_time = datetime.strptime(m["stamp"], _STAMP).replace(tzinfo=UTC)
    symbol, intent, seq, strategy = m["symbol"], m["intent"], int(m["seq"]), m["strategy"]
    maybe_truncated = len(cid) == MAX_LEN
    # Regeneration is the proof; a bare name match is the fallback (a bar time with seconds).
    full = [s for s in strategies
            if s.startswith(strategy) and _regenerates(cid, s, symbol, bar_time, intent, seq)]
    if len(full) == 1:
        strategy, maybe_truncated = full[0], False
    elif strategy in strategies:
        maybe_truncated = False
    return ParsedOrderId(strategy, symbol, bar_time, intent, seq, m["digest"], maybe_truncated)


def _regenerates(cid: str, strategy: str, symbol: str, bar_time: datetime, intent: str, seq: int) -> bool:
    try:
        return client_order_id(strategy, symbol, bar_time, intent, seq) == cid
    except ValueError:
        return False
