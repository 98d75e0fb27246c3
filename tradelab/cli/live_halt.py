"""``tradelab live halt``: the one command that must never crash, and works with the broker unreachable.

It writes the HALT file first (``live_bridge.runner_halts``), so a running runner trades no more from
its next poll, then flattens the account by whichever path keeps the runner's books right:

* **a runner holds the state folder** (its store's lock): the runner flattens with its own orders,
  which its store attributes to the strategies; this command waits up to ``--wait`` for HALT to say
  done and reports what the runner did;
* **no runner, but a state store**: this command runs the runner's own flatten (``flatten_pass``)
  on that store, so the fills of its orders are booked for the strategies when the runner next starts;
* **no state at all**: Alpaca's cancel-all and close-all.

Every broker call is retried with backoff, never past ``--wait``; a 4xx (bad keys) is not retried.
Exit codes: 0 halted (every order cancelled, a closing order for every position); 3 not confirmed
(the broker out of reach or refusing the keys, or the runner still at it): HALT stays pending and
whoever runs next flattens; 4 partly done, what is still open is listed; 2 bad arguments.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from data_lake import LakeError

from .ui import err, out

HALT_EXIT_UNREACHABLE, HALT_EXIT_PARTIAL = 3, 4
STATE_DIR = Path("runs/live")


def halt(url: Annotated[str | None, typer.Option(help="Broker URL override (the simulator).")] = None,
         live: Annotated[bool, typer.Option("--live", help="Halt the live account (needs TRADELAB_LIVE=1).")] = False,
         state_dir: Annotated[Path, typer.Option(help="The runner's folder.")] = STATE_DIR,
         wait: Annotated[float, typer.Option("--wait", help="Seconds to keep trying an unreachable broker "
                                                           "(0 to 3600).")] = 30.0) -> None:
    """Stop the runner (HALT file, first), then cancel every order and close every position.

    Exit codes: 0 halted: every order cancelled and a closing order sent for every position (HALT
    says flatten done); 3 not confirmed: the broker was not reachable within --wait or refused the
    keys (or a running runner is still flattening): HALT stays pending, and the runner flattens the
    account with its own orders once the broker answers; 4 partly done: what is still open is
    listed; 2 bad arguments (nothing done).
    """
    from live_bridge.control import cli_who, log_action, new_halt
    from live_bridge.runner_halts import CLI_WAIT_MAX
    from live_bridge.state import StateError, StateStore

    from .live import _keys

    if live and os.environ.get("TRADELAB_LIVE") != "1":
        raise LakeError("--live needs TRADELAB_LIVE=1 as well")
    if not (math.isfinite(wait) and 0 <= wait <= 3600):
        raise LakeError(f"--wait must be a finite number of seconds from 0 to 3600, got {wait}")
    store, runner = None, False
    if (state_dir / "state.db").exists():
        try:
            store = StateStore(state_dir / "state.db")  # held till the end: no runner starts meanwhile
        except StateError:
            runner = True  # a runner holds it: the flatten is its to do
        except Exception as exc:  # a damaged store: flatten without it, and say so
            err.print(f"warning: {state_dir / 'state.db'} cannot be opened ({exc}); halting without it",
                      markup=False, highlight=False)
    # until cli_until this command works on the broker: a runner waits, never flattening at the same time
    until = None if runner else pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=min(wait + 120, CLI_WAIT_MAX))
    try:
        try:
            log_action(state_dir, "halt", cli_who("tradelab live halt"), outcome="accepted")
            path, body = new_halt(state_dir, "tradelab live halt", until)  # shared with the dashboard's API
        except OSError as exc:
            raise LakeError(f"cannot write {state_dir / 'HALT'} ({exc.strerror or exc}): nothing was done") from None
        _say(f"HALT written ({path}, flatten pending): the runner, if running, trades no more from its next poll")
        body["cli_until"] = None  # from here on, every rewrite hands the broker back to the runner
        if runner:
            _hand_off(path, wait)
        try:
            key, secret = _keys()
        except LakeError as exc:
            _unreachable(path, body, f"broker not contacted: {exc}")
        make = lambda t: _broker(key, secret, live, url, t)  # noqa: E731
        if store is not None:
            _flatten_with_store(path, body, store, make, time.monotonic() + wait, wait)
        report, error = _flatten(make, time.monotonic() + wait)
    finally:
        if store is not None:
            store.close()
    if report is None:
        why = "refused the request" if _refused(error) else f"not reachable within {wait:g}s"
        _unreachable(path, body, f"broker {why}: {type(error).__name__}: {error}")
    code = _report(report)
    n = len(report["closing"])
    if code == 0:
        body.update(flatten="done", flattened_at=pd.Timestamp.now(tz="UTC").isoformat(),
                    cancelled=len(report["cancelled"] or ()),
                    closing_orders=[{"symbol": o.symbol, "side": o.side, "qty": o.qty}
                                    for o in report["closing"]])
        _rewrite(path, body)
        _say(f"halt: {n} closing orders sent; every order cancelled and every position has a closing order; "
             f"HALT says flatten done (remove {path} to resume trading)")
        return
    _rewrite(path, body)
    _say(f"halt: {n} closing orders sent; PARTLY DONE (exit {code}): what is still open is listed above; HALT "
         "stays pending: the runner, if running, cancels and flattens the rest itself")
    raise typer.Exit(code)


def _hand_off(path: Path, wait: float) -> None:
    """A runner holds the state: it flattens with its own orders. Wait for HALT to say done (exit 0), or
    report that it is still at it (exit 3); never touch the broker from here."""
    from live_bridge.runner_halts import read_halt

    _say(f"a runner holds {path.parent}: it cancels every order and flattens every position with its own "
         f"orders; waiting up to {wait:g}s for it")
    end = time.monotonic() + wait
    while True:
        h = read_halt(path.parent)
        if h is not None and h.done:
            b = h.body
            _say(f"orders cancelled: {b.get('cancelled', 'unknown')}")
            _say("closing orders sent: " + (", ".join(b.get("flatten_orders") or []) or "none (nothing was held)"))
            _say(f"halt: {len(b.get('flatten_orders') or [])} closing orders sent by the runner; HALT says flatten "
                 f"done (remove {path} to resume trading)")
            raise typer.Exit(0)
        if time.monotonic() > end:
            break
        time.sleep(0.25)
    try:
        state = json.loads((path.parent / "status.json").read_text()).get("halting") or {}
    except (OSError, ValueError):
        state = {}
    _say(f"not confirmed within {wait:g}s: the runner is {state.get('state', 'about to flatten')}"
         + (f" ({'; '.join(state['problems'])})" if state.get("problems") else "")
         + "; HALT stays pending and the runner keeps trying (tradelab live status shows it)")
    raise typer.Exit(HALT_EXIT_UNREACHABLE)


def _flatten_with_store(path: Path, body: dict, store, make, deadline: float, wait: float) -> None:
    """No runner, but its store: the runner's own flatten (``flatten_pass``), retried until ``deadline``,
    so the store books the flatten orders' fills for the strategies; exits 0, 3 or 4."""
    from live_bridge.runner_halts import flatten_pass, read_halt, record_flatten

    halt = read_halt(path.parent)
    done, error = _retry(lambda t: flatten_pass(make(t), store, halt), deadline)
    while done is not None and not done.complete and time.monotonic() < deadline:
        time.sleep(1.0)
        done, error = _retry(lambda t: flatten_pass(make(t), store, halt), deadline)
    if done is None:
        why = "refused the request" if _refused(error) else f"not reachable within {wait:g}s"
        _unreachable(path, body, f"broker {why}: {type(error).__name__}: {error}")
    _say(f"orders cancelled: {len(done.cancelled)}"
         + (f" ({', '.join(f'{o.symbol} {o.type} {o.side}' for o in done.cancelled)})" if done.cancelled else ""))
    _say("closing orders sent: " + (", ".join(f"{o.symbol} {o.side} {o.qty:g} ({o.strategy})" for o in done.sent)
                                    or "none (nothing was held)")
         + (f"; already working: {', '.join(done.working)}" if done.working else ""))
    if not done.complete:
        _say("still open: " + "; ".join(done.problems))
        _say(f"halt: PARTLY DONE (exit {HALT_EXIT_PARTIAL}); HALT stays pending: the runner flattens the rest "
             "when it starts")
        raise typer.Exit(HALT_EXIT_PARTIAL)
    record_flatten(path.parent, store, halt, done, "tradelab live halt")
    _say(f"halt: {len(done.sent)} closing orders sent under the runner's ids (its store books their fills); "
         f"HALT says flatten done (remove {path} to resume trading)")
    raise typer.Exit(0)


def _say(line: str) -> None:
    out.print(line, markup=False, highlight=False, soft_wrap=True)


def _broker(key: str, secret: str, live: bool, url: str | None, timeout: float):
    """A broker client that tries each call once (the retries are _retry's, bounded by --wait)."""
    from live_bridge.alpaca import AlpacaBroker

    return AlpacaBroker(key, secret, paper=not live, url_override=url, retry_attempts=0, retry_wait=0.0,
                        timeout=timeout)


def _refused(error: BaseException | None) -> bool:
    """A 4xx other than 429 (bad keys, say): trying again cannot help."""
    status = getattr(error, "status", None)
    return isinstance(status, int) and 400 <= status < 500 and status != 429


def _retry(call, deadline: float):
    """``call(timeout)`` until it answers or ``deadline`` passes, backing off 1, 2, 4, 8 ... s (never past
    the deadline): (its answer, None), or (None, the last error). A refusal is not tried again."""
    import requests

    from live_bridge.ports import BrokerError

    delay = 1.0
    while True:
        try:
            return call(min(10.0, max(1.0, deadline - time.monotonic()))), None
        except (BrokerError, OSError, TimeoutError, requests.RequestException, ValueError) as exc:
            error = exc  # ValueError: an answer that is not Alpaca's (a wrong --url)
        left = deadline - time.monotonic()
        if _refused(error) or left <= 0:
            return None, error
        time.sleep(min(delay, left))
        delay *= 2


def _flatten(make, deadline: float) -> tuple[dict | None, BaseException | None]:
    """Cancel all and close all (``AlpacaBroker.close_all``), then read positions and open orders back:
    (what happened, None), or (None, the error) when the broker never answered in time. The calls after
    the first answer get 30 s more each."""
    from live_bridge.ports import BrokerError

    before, error = _retry(lambda t: make(t).open_orders(), deadline)
    if error is not None:
        return None, error

    def close_all(t):
        try:
            return make(t).close_all(), None
        except BrokerError as exc:
            if exc.status != 207:  # 207: some positions were refused, the others got their orders
                raise
            return None, exc.message

    answer, error = _retry(close_all, max(deadline, time.monotonic() + 30))
    closing, refused = answer or (None, f"close_all not confirmed ({type(error).__name__}: {error})")
    after, unread = _retry(lambda t: ((b := make(t)).positions(), b.open_orders()), time.monotonic() + 30)
    r = {"closing": closing or [], "refused": refused, "after": after, "unread": unread,
         "cancelled": before if answer is not None else None}
    if after is not None:
        r["cancelled"] = [o for o in before if o.id not in {x.id for x in after[1]}]
        if closing is None:  # the closing orders of a close_all that was refused in part: the new ones
            r["closing"] = [o for o in after[1] if o.id not in {x.id for x in before} and o.symbol in after[0]
                            and o.side == ("sell" if after[0][o.symbol].qty > 0 else "buy")]
    return r, None


def _report(r: dict) -> int:
    """Print what was done and what is still open, one line each; the exit code (0, or 4: partly done)."""
    done = r["cancelled"]
    _say("orders cancelled: " + ("unknown" if done is None else f"{len(done)}" + (
        f" ({', '.join(f'{o.symbol} {o.type} {o.side}' for o in done)})" if done else "")))
    _say("closing orders sent: " + (", ".join(f"{o.symbol} {o.side} {o.qty:g}" for o in r["closing"])
                                    or ("none (no position was open)" if not r["refused"] else "none")))
    if r["refused"]:
        _say(f"refused by the broker: {r['refused']}")
    if r["after"] is None:
        _say(f"still open: unknown (positions and orders could not be read back: {r['unread']})")
        return HALT_EXIT_PARTIAL if r["refused"] else 0
    positions, orders = r["after"]
    closing = {o.id for o in r["closing"]}
    left, bad = [], bool(r["refused"])
    for sym, p in sorted(positions.items()):
        side = "sell" if p.qty > 0 else "buy"
        short = abs(p.qty) - sum(o.remaining_qty for o in orders
                                 if o.id in closing and (o.symbol, o.side) == (sym, side))
        bad |= short > 1e-9
        left.append(f"{sym} {p.qty:g} ({'NO closing order' if short > 1e-9 else 'closing order working'})")
    others = [o for o in orders if o.id not in closing]
    bad |= bool(others)
    left += [f"order {o.symbol} {o.type} {o.side} {o.qty:g} ({o.status}, not cancelled)" for o in others]
    _say("still open: " + ("; ".join(left) or "nothing"))
    return HALT_EXIT_PARTIAL if bad else 0


def _unreachable(path: Path, body: dict, why: str):
    """Exit 3: HALT stays pending, for the runner to flatten; nothing was cancelled or closed here."""
    _rewrite(path, body)
    _say(why)
    _say("orders cancelled: none confirmed; closing orders sent: none confirmed")
    _say(f"halt: 0 closing orders sent; HALT ({path}) says flatten pending: the runner, if running, stops "
         "trading at its next poll and flattens the account itself when the broker answers. Run this again, "
         "or check the account at the broker")
    raise typer.Exit(HALT_EXIT_UNREACHABLE)


def _rewrite(path: Path, body: dict) -> None:
    from live_bridge.runner_halts import write_halt

    try:
        write_halt(path.parent, body)
    except OSError as exc:
        err.print(f"warning: {path} not rewritten ({exc.strerror or exc})", markup=False, highlight=False)


