"""Where an order fills inside one bar: the project's single fill convention, as pure functions.

The convention is the one ``research/exits.py`` uses for backtests, so a strategy sees the same
fills in a sweep and against the simulator:

* a market order placed while bar t is the last closed bar fills at bar t+1's open;
* a stop triggers when the bar's high (buy) / low (sell) reaches its stop price and fills at the
  stop price, or at the open when the bar opens beyond it (a gap);
* a limit fills at its limit price when the bar's low (buy) / high (sell) reaches it, or at the
  open when the bar opens better than the limit;
* touching a level counts (``<=`` / ``>=``), as in the backtest kernel;
* inside a bar, stops are matched before limits: when a stop and a take-profit of one position
  both lie inside the bar, the stop is assumed hit first (the conservative reading of an unknown
  path), and the take-profit is then cancelled as its one-cancels-other sibling.

A stop_limit whose stop triggers inside the bar fills at the stop price only if the limit allows
it (buy: limit >= stop); otherwise it rests as a limit from the next bar on (the path after the
trigger is unknown). A triggered stop whose fill was cut short by the volume cap fills the rest
as a market order at the next open.
"""

from __future__ import annotations

from typing import NamedTuple

STOP_FIRST, LIMIT_LATER = 0, 1


class Decision(NamedTuple):
    """The fill price (None: no fill in this pass) and whether the stop has now triggered."""

    price: float | None
    triggered: bool


def _through(buy: bool, price: float, level: float) -> bool:
    """A buy stop / sell limit level is reached from below, a sell stop / buy limit from above."""
    return price >= level if buy else price <= level


def _better(buy: bool, price: float, limit: float) -> bool:
    """The price is at or better than the limit for this side."""
    return price <= limit if buy else price >= limit


def at_open(kind: str, buy: bool, limit: float | None, stop: float | None, triggered: bool,
            o: float) -> Decision:
    """The fill at the bar's open, if the order is marketable there."""
    if kind == "market" or (kind == "stop" and triggered):
        return Decision(o, triggered)
    if kind == "limit":
        return Decision(o if _better(buy, o, limit) else None, False)
    if kind == "stop":
        return Decision(o, True) if _through(buy, o, stop) else Decision(None, False)
    # stop_limit
    if triggered or _through(buy, o, stop):
        return Decision(o if _better(buy, o, limit) else None, True)
    return Decision(None, False)


def inside(kind: str, buy: bool, limit: float | None, stop: float | None, triggered: bool,
           high: float, low: float) -> Decision:
    """The fill inside the bar (after the open), if its range reaches the order's level."""
    if kind == "market" or (kind == "stop" and triggered):
        return Decision(None, triggered)  # market-like: only ever fills at an open
    extreme_for_stop = high if buy else low
    extreme_for_limit = low if buy else high
    if kind == "limit" or (kind == "stop_limit" and triggered):
        return Decision(limit if _better(buy, extreme_for_limit, limit) else None, triggered)
    if not _through(buy, extreme_for_stop, stop):
        return Decision(None, False)
    if kind == "stop":
        return Decision(stop, True)
    return Decision(stop if _better(buy, stop, limit) else None, True)


def priority(kind: str, triggered: bool) -> int:
    """Stops (untriggered stop / stop_limit) are matched before limits inside a bar."""
    if kind == "limit" or (kind == "stop_limit" and triggered):
        return LIMIT_LATER
    return STOP_FIRST


def slipped(price: float, buy: bool, slippage: float) -> float:
    """The price moved against the trader by ``slippage`` (a fraction)."""
    return price * (1.0 + slippage) if buy else price * (1.0 - slippage)
