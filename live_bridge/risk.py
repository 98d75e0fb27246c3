"""Pre-trade risk: the limits of STRATEGY_DEFAULTS.md, checked before every order leaves the process.

``RiskManager.check`` is pure: it reads a proposal and a snapshot of the world (``RiskContext``)
and returns a ``Verdict``; it sends, cancels and stores nothing. Every rejection names its rule
(``Verdict.rule``) and says why in numbers, so a blocked order in the log explains itself.

Orders that *reduce* the broker's position are always allowed: a risk system that can block a
flatten turns a bad day into a worse one. An order reduces risk when it is opposite to the net
position and no larger than it; an exit-kind intent (``exit``/``stop``/``target``/``flatten`` in
its client order id) larger than the position is trimmed to it, never turned into a new position.

Portfolio rules: a strategy's entries fit its capital budget (``RiskLimits.strategy_budgets``:
trimmed to fit, refused below one share), and an entry may not be the 4th member of a correlated
group: the entry plus the open positions and pending entries whose daily returns correlate with its
own above 0.7 (``correlation.py``; a symbol without the history is not guessed at: the verdict says so).

The limits, sizing, rounding and the day's halts (``RiskLimits``, ``size``, ``DayState``) are
``risk_limits.py``, re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache

from .correlation import Correlations
from .ids import parse_client_order_id
from .ports import TERMINAL_STATUSES, Account, MarketClock, OrderAck, OrderIntent, Position, sign
from .risk_limits import (ACCOUNT, DEFAULT_BUDGETS, DayState, HaltEvent, RiskLimits, day_loss_message,
                          drawdown_factor, orders_in_last_minute, round_price, size, strategy_loss_message)

__all__ = ["ACCOUNT", "DEFAULT_BUDGETS", "RULES", "Correlations", "DayState", "HaltEvent", "Proposal", "RiskContext",
           "RiskLimits", "RiskManager", "Verdict", "drawdown_factor", "orders_in_last_minute", "round_price", "size"]

_EPS = 1e-9

# --- the pre-trade check --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Proposal:
    """An order intent with what the check needs beyond it: a reference price, a stop, a quote."""

    intent: OrderIntent
    price: float  # last trade or bar close: values the position and the exposure
    stop_loss: float | None = None  # the protective stop an entry will carry (None: default stop)
    bid: float | None = None
    ask: float | None = None


@dataclass(frozen=True, slots=True)
class RiskContext:
    """A snapshot of the world at decision time. ``recent_orders``: send times of every order.

    ``strategy_positions``: strategy -> symbol -> what that strategy holds (the state store's
    books), valued at the broker's mark: the budget rule's exposure. ``marks``: symbol -> last
    price, which values a pending market entry on a symbol not held. ``correlations``: daily-return
    correlations as of the session (None: the correlated-positions rule is skipped, and says so).
    """

    account: Account
    positions: Mapping[str, Position]
    open_orders: Sequence[OrderAck]
    day: DayState
    peak_equity: float
    clock: MarketClock
    recent_orders: Sequence[datetime] = ()
    sectors: Mapping[str, str] = field(default_factory=dict)  # symbol -> sector, for the sector limit
    strategy_positions: Mapping[str, Mapping[str, Position]] = field(default_factory=dict)
    marks: Mapping[str, float] = field(default_factory=dict)
    correlations: Correlations | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of ``RiskManager.check``. When allowed, send ``verdict.order(intent)``, not the intent.

    ``qty`` and the prices are the adjusted ones (rounded prices, whole shares, an exit trimmed to
    the position). ``stop_loss`` is the protective stop to place once an entry fills.
    ``cancel_first`` lists broker order ids to cancel before sending (Alpaca rejects an order facing
    an opposite-side open order as a potential wash trade, and a sell beyond the shares held by
    other open sells); on a rejected entry it names the orders that block it.
    """

    allowed: bool
    rule: str | None
    message: str
    qty: float
    limit_price: float | None
    stop_price: float | None
    stop_loss: float | None = None
    reduces_risk: bool = False
    cancel_first: tuple[str, ...] = ()

    def order(self, intent: OrderIntent) -> OrderIntent:
        """The intent with this verdict's adjusted quantity and prices."""
        if not self.allowed:
            raise ValueError(f"{intent.client_order_id} was rejected by rule {self.rule}: {self.message}")
        return replace(intent, qty=self.qty, limit_price=self.limit_price, stop_price=self.stop_price)


@dataclass(frozen=True, slots=True)
class _Adjust:
    """What an adjusting rule says when it lets an entry through: a trimmed qty (or None) and a note."""

    qty: float | None
    note: str


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the entry rules read: the proposal, the context, and the adjusted order."""

    p: Proposal
    ctx: RiskContext
    limits: RiskLimits
    qty: float
    stop_loss: float | None
    others: tuple[OrderAck, ...]  # other open orders on the symbol
    memo: dict = field(default_factory=dict)  # what several rules compute once (kept by replace())

    @property
    def projected_qty(self) -> float:
        """The symbol's position if this order and the pending entries on it all fill."""
        pos = _pos_qty(self.ctx, self.p.intent.symbol)
        pending = sum(sign(o.side) * o.remaining_qty for o in self.others if sign(o.side) * pos >= 0)
        return pos + pending + sign(self.p.intent.side) * self.qty


class RiskManager:
    """Checks proposals against one ``RiskLimits``. Stateless: the state lives in the context."""

    def __init__(self, limits: RiskLimits | None = None) -> None:
        self.limits = limits or RiskLimits()

    def check(self, proposal: Proposal, ctx: RiskContext) -> Verdict:
        """Allow, adjust or reject one proposal; a rejection names the first rule it breaks."""
        it = proposal.intent
        if not proposal.price > 0:
            raise ValueError(f"{it.client_order_id}: reference price must be positive, got {proposal.price}")
        limit = round_price(it.limit_price, it.side) if it.limit_price is not None else None
        stop = round_price(it.stop_price, it.side) if it.stop_price is not None else None
        pos = _pos_qty(ctx, it.symbol)
        others = tuple(o for o in ctx.open_orders if o.symbol == it.symbol and not o.is_terminal
                       and o.client_order_id != it.client_order_id)  # a resend is not its own blocker
        parsed = parse_client_order_id(it.client_order_id)
        declared_exit = parsed is not None and parsed.is_exit
        if pos * it.signed_qty < 0 and (it.qty <= abs(pos) + _EPS or declared_exit):
            qty = min(it.qty, abs(pos))
            note = f"reduces the {pos:g} {it.symbol} position: exempt from entry rules"
            if qty < it.qty:
                note += f"; qty {it.qty:g} trimmed to the position {qty:g}"
            cancels = _exit_cancels(it, qty, pos, others)
            return Verdict(True, None, note, qty, limit, stop, None, True, cancels)
        if declared_exit:
            msg = (f"{parsed.intent} order {it.side} {it.qty:g} {it.symbol} would not reduce the position "
                   f"({pos:g}); refusing to open one")
            return Verdict(False, "not_reducing", msg, it.qty, limit, stop)
        return self._check_entry(proposal, ctx, limit, stop, others)

    def _check_entry(self, p: Proposal, ctx: RiskContext, limit: float | None, stop: float | None,
                     others: tuple[OrderAck, ...]) -> Verdict:
        it, notes = p.intent, []
        stop_loss = p.stop_loss
        if stop_loss is None and self.limits.require_stop and self.limits.default_stop_pct is not None:
            stop_loss = p.price * (1 - sign(it.side) * self.limits.default_stop_pct)
            notes.append(f"default stop {self.limits.default_stop_pct:.2%}")
        if stop_loss is not None and stop_loss > 0:
            stop_loss = round_price(stop_loss, "sell" if it.side == "buy" else "buy")
        fractional_ok = it.type == "market" and it.time_in_force == "day" and it.side == "buy"
        qty = it.qty if fractional_ok else float(math.floor(it.qty + _EPS))
        if qty != it.qty:
            notes.append(f"qty {it.qty:g} -> {qty:g} whole shares")
        e = _Entry(p, ctx, self.limits, qty, stop_loss, others)
        for rule, test in _ENTRY_RULES:
            out = test(e)
            if isinstance(out, _Adjust):  # passes, trimmed or with a note (a rule skipped says why)
                notes.append(f"{rule}: {out.note}")
                if out.qty is not None:
                    e = replace(e, qty=out.qty)
            elif out:
                blockers = tuple(o.id for o in others if o.side != it.side) if rule == "wash_trade" else ()
                return Verdict(False, rule, out, it.qty, limit, stop, stop_loss, False, blockers)
        return Verdict(True, None, "; ".join(["ok", *notes]), e.qty, limit, stop, stop_loss)


def _pos_qty(ctx: RiskContext, symbol: str) -> float:
    pos = ctx.positions.get(symbol)
    return pos.qty if pos is not None else 0.0


def _exit_cancels(it: OrderIntent, qty: float, pos: float, others: tuple[OrderAck, ...]) -> tuple[str, ...]:
    # Alpaca: an opposite-side open order is a potential wash trade (422), and open sells hold the
    # shares they may sell, so an exit beyond the unheld qty is refused (403): cancel those first.
    opposite = [o.id for o in others if o.side != it.side]
    same = [o for o in others if o.side == it.side]
    held = sum(o.remaining_qty for o in same)
    return tuple(opposite + ([o.id for o in same] if held + qty > abs(pos) + _EPS else []))


def _daily_loss(e: _Entry) -> str | None:
    day, clock = e.ctx.day, e.ctx.clock
    if day.session != clock.session:
        return f"day state is for {day.session} but the clock says {clock.session}: roll it first"
    if day.halted:
        return f"account halted: {day.halted}"
    return day_loss_message(day, e.ctx.account.equity, e.limits)


def _strategy_loss(e: _Entry) -> str | None:
    strategy = e.p.intent.strategy
    if reason := e.ctx.day.disabled.get(strategy):
        return f"strategy {strategy} is off: {reason}"
    return strategy_loss_message(e.ctx.day, strategy, e.limits)


def _market_hours(e: _Entry) -> str | None:
    c = e.ctx.clock
    if not c.is_open and not e.limits.queue_for_next_open:
        return f"market closed at {c.timestamp:%Y-%m-%d %H:%M} UTC (opens {c.next_open:%Y-%m-%d %H:%M} UTC)"
    return None


def _entry_cutoff(e: _Entry) -> str | None:
    c, minutes = e.ctx.clock, e.limits.no_new_entries_minutes
    if e.limits.queue_for_next_open and not c.is_open:
        return None  # a queued order fills at the next open, not in the last minutes of this session
    left = (c.next_close - c.timestamp).total_seconds() / 60
    if left < minutes:
        return (f"no new entries in the last {minutes:g} min: {left:.1f} min to the close "
                f"at {c.next_close:%H:%M} UTC")
    return None


def _rate_limit(e: _Entry) -> str | None:
    n, cap = orders_in_last_minute(e.ctx.recent_orders, e.ctx.clock.timestamp), e.limits.max_orders_per_minute
    return f"{n} orders sent in the last minute >= limit {cap}" if n >= cap else None


def _require_stop(e: _Entry) -> str | None:
    it, stop = e.p.intent, e.stop_loss
    if stop is None:
        return "entry without a stop loss (require_stop is on and default_stop_pct is None)" \
            if e.limits.require_stop else None
    if not stop > 0:
        return f"stop loss {stop:g} must be positive"
    if sign(it.side) * (e.p.price - stop) <= 0:
        where = "below" if it.side == "buy" else "above"
        return f"stop loss {stop:g} is not {where} the {it.side} price {e.p.price:g}"
    return None


def _spread(e: _Entry) -> str | None:
    bid, ask = e.p.bid, e.p.ask
    if bid is None or ask is None:
        return None
    if not 0 < bid <= ask:
        return f"crossed or empty quote: bid {bid:g} ask {ask:g}"
    spread = (ask - bid) / ((ask + bid) / 2)
    return f"spread {spread:.2%} > {e.limits.max_spread:.2%} (bid {bid:g} ask {ask:g})" \
        if spread > e.limits.max_spread + _EPS else None


def _wash_trade(e: _Entry) -> str | None:
    it = e.p.intent
    ids = [o.id for o in e.others if o.side != it.side]
    if ids:
        return f"opposite-side open orders on {it.symbol} must be cancelled first: {', '.join(ids)}"
    return None


def _fractional(e: _Entry) -> str | None:
    it = e.p.intent
    if e.qty <= 0:
        return f"qty {it.qty:g} is 0 whole shares (only market/day buys may be fractional)"
    return None


def _equity(e: _Entry) -> float:
    return e.ctx.account.equity


def _position_cap(e: _Entry) -> str | None:
    it, equity = e.p.intent, _equity(e)
    factor = drawdown_factor(equity, e.ctx.peak_equity, e.limits)
    cap = e.limits.max_position_pct * factor
    share = abs(e.projected_qty) * e.p.price / equity if equity > 0 else math.inf
    if share > cap + _EPS:
        why = f" ({e.limits.max_position_pct:.2f} halved in drawdown)" if factor < 1 else ""
        return f"{it.symbol} position {share:.2f} of equity > cap {cap:.2f}{why} after this order"
    return None


def _gross_exposure(e: _Entry) -> str | None:
    it, ctx, equity = e.p.intent, e.ctx, _equity(e)
    gross = abs(e.projected_qty) * e.p.price
    gross += sum(abs(pos.market_value) for sym, pos in ctx.positions.items() if sym != it.symbol)
    for o in ctx.open_orders:  # pending entries on other symbols count as if filled
        pos = _pos_qty(ctx, o.symbol)
        if o.symbol != it.symbol and not o.is_terminal and sign(o.side) * pos >= 0:
            mark = abs(ctx.positions[o.symbol].market_value / pos) if pos else 0.0
            ref = o.limit_price or o.stop_price or mark  # an open market order: value it at the mark
            gross += o.remaining_qty * ref
    ratio = gross / equity if equity > 0 else math.inf
    if ratio > e.limits.max_gross_exposure + _EPS:
        return f"gross exposure {ratio:.2f} > {e.limits.max_gross_exposure:.2f} after this order"
    return None


def _sector(e: _Entry) -> str | None:
    it, ctx = e.p.intent, e.ctx
    sector = ctx.sectors.get(it.symbol)
    if sector is None or _pos_qty(ctx, it.symbol) != 0:
        return None  # unknown sector, or adding to a position already counted
    held = sorted(s for s, pos in ctx.positions.items() if pos.qty != 0 and ctx.sectors.get(s) == sector)
    cap = e.limits.max_positions_per_sector
    if len(held) >= cap:
        return f"{len(held)} positions in sector {sector} already ({', '.join(held)}); limit {cap}"
    return None


@lru_cache(maxsize=16384)
def _intent_of(cid: str, strategy: str) -> tuple[str, bool] | None:
    """(intent, made by ``strategy``) of a tradelab client order id; cached: the same ids every check."""
    parsed = parse_client_order_id(cid, (strategy,))
    return None if parsed is None else (parsed.intent, parsed.strategy == strategy)


def _pending_entries(e: _Entry) -> list[tuple[OrderAck, bool]]:
    """Open entry orders on other symbols or on this one (not this order), and whether each is the strategy's."""
    return _pending(e)[0]


def _pending(e: _Entry) -> tuple[list[tuple[OrderAck, bool]], dict[str, float]]:
    """The open entries (with: is it the strategy's), and the strategy's pending exits per symbol: a
    rotation's exit and entry go out on one bar, and the exit frees the budget the entry uses."""
    if (out := e.memo.get("pending")) is not None:
        return out
    it, entries, exits = e.p.intent, [], {}
    for o in e.ctx.open_orders:
        if o.status not in TERMINAL_STATUSES and o.client_order_id != it.client_order_id:
            kind = _intent_of(o.client_order_id, it.strategy)
            if kind is not None and kind[0] == "entry":
                entries.append((o, kind[1]))
            elif kind is not None and kind[1] and kind[0] in ("exit", "flatten"):  # not stops: protective
                exits[o.symbol] = exits.get(o.symbol, 0.0) + o.remaining_qty
    e.memo["pending"] = out = (entries, exits)
    return out


def _order_value(o: OrderAck, e: _Entry) -> float:
    """An open order's notional: its limit or stop, else the symbol's mark (the proposal's own price)."""
    if o.limit_price or o.stop_price:
        return o.remaining_qty * (o.limit_price or o.stop_price)
    pos = e.ctx.positions.get(o.symbol)
    mark = e.p.price if o.symbol == e.p.intent.symbol else e.ctx.marks.get(o.symbol) \
        or (abs(pos.market_value / pos.qty) if pos is not None and pos.qty else 0.0)
    return o.remaining_qty * mark


def _strategy_budget(e: _Entry) -> str | _Adjust | None:
    it, equity, price = e.p.intent, _equity(e), e.p.price
    share = e.limits.budget_of(it.strategy)
    held, (entries, exits) = e.ctx.strategy_positions.get(it.strategy, {}), _pending(e)
    used = sum(abs(pos.market_value) * max(0.0, 1 - exits.get(sym, 0.0) / abs(pos.qty))
               for sym, pos in held.items() if sym != it.symbol and pos.qty)
    if it.symbol in held:  # its own position at today's price (a flip: net of the exit sent before it)
        used += max(0.0, abs(held[it.symbol].qty) - exits.get(it.symbol, 0.0)) * price
    used += sum(_order_value(o, e) for o, mine in entries if mine)
    budget = share * equity
    if used + e.qty * price <= budget + _EPS:
        return None
    room = budget - used
    fits = math.floor(room / price + _EPS) if room > 0 else 0
    numbers = (f"{it.strategy} exposure {used:,.2f} (positions net of pending exits, and pending entries) + this order "
               f"{e.qty * price:,.2f} > budget {share:.2f} x equity {equity:,.2f} = {budget:,.2f}")
    if fits < 1:
        return f"{numbers}: room {max(room, 0):,.2f} buys no share at {price:g}"
    return _Adjust(float(fits), f"qty {e.qty:g} -> {fits:g}: {numbers}")


def _correlated(e: _Entry) -> str | _Adjust | None:
    it, ctx, corr, lim = e.p.intent, e.ctx, e.ctx.correlations, e.limits
    if _pos_qty(ctx, it.symbol) != 0:
        return None  # adding to a position: already a member of its group
    if corr is None:
        return _Adjust(None, "not checked: no daily returns in the risk context")
    if why := corr.why_not(it.symbol):
        return _Adjust(None, f"not checked: {why}")
    members = {s for s, pos in ctx.positions.items() if pos.qty != 0}
    members |= {o.symbol for o, _ in _pending_entries(e)}
    members.discard(it.symbol)
    found, unmeasured = corr.with_others(it.symbol, sorted(members))
    group = sorted(((c, s) for s, c in found.items() if c > lim.correlation_threshold), reverse=True)
    if len(group) + 1 > lim.max_correlated:
        names = ", ".join(f"{s} {c:.2f}" for c, s in group)
        return (f"{it.symbol} would be position {len(group) + 1} of a correlated group ({corr.days}-day daily "
                f"return correlation > {lim.correlation_threshold:g} with it: {names}); limit {lim.max_correlated}")
    if unmeasured:  # counted as uncorrelated: said, not silent
        return _Adjust(None, f"not measured, counted as uncorrelated: {', '.join(unmeasured)} (too little history)")
    return None


def _buying_power(e: _Entry) -> str | None:
    notional, bp = e.qty * e.p.price, e.ctx.account.buying_power
    return f"order notional {notional:,.2f} > buying power {bp:,.2f}" if notional > bp + _EPS else None


#: The entry rules in the order they are tried; the first that objects names the rejection.
_ENTRY_RULES: tuple[tuple[str, Callable[[_Entry], str | _Adjust | None]], ...] = (
    ("daily_loss", _daily_loss),
    ("strategy_loss", _strategy_loss),
    ("market_hours", _market_hours),
    ("entry_cutoff", _entry_cutoff),
    ("rate_limit", _rate_limit),
    ("require_stop", _require_stop),
    ("spread", _spread),
    ("wash_trade", _wash_trade),
    ("fractional", _fractional),
    ("strategy_budget", _strategy_budget),  # trims: before the rules that read the qty
    ("position_cap", _position_cap),
    ("gross_exposure", _gross_exposure),
    ("sector", _sector),
    ("correlated_positions", _correlated),
    ("buying_power", _buying_power),
)
RULES = tuple(name for name, _ in _ENTRY_RULES) + ("not_reducing",)
