"""Steering a running runner from outside it: the control actions the dashboard's API and the CLI share.

The runner is steered through files in its folder, never through a socket of its own: a runner that
is down, restarting or stuck misses nothing, and the state store keeps its one writer. Every action
asked is one JSON line of the decision log (``log_action``: who, how, when), appended with one
``O_APPEND`` write, before anything is done; the runner's own lines (its flatten, its reload or its
refusal) follow.

* **halt**: the HALT file (``runner_halts``), as ``tradelab live halt`` writes it. A running runner
  trades no more from its next poll and flattens with its own orders; without one, the next start
  flattens and exits (or ``tradelab live halt`` flattens at once: it holds the broker keys).
* **resume at the next session**: only on a HALT whose flatten is done. The HALT gets a ``resume``
  entry; a runner started then waits, while the broker's clock says the market is open, for the
  close, removes HALT and trades: its first orders fill at the next session's open (the decision
  path models the halt: no entry in the halt's session), never mid-session.
* **reload**: the params file checked the way the runner's reload checks it (``check_params``), then
  the RELOAD file; a refused file is answered with the reason, and the runner keeps the one in force.
* **flatten one symbol**: a request in the inbox (``control/<id>.json``) the daemon polls
  (``serve_inbox``). The runner, on its worker thread, stores an entry block for the symbol and the
  session, cancels the symbol's orders and closes its position with its own flatten order (the store
  books the fill to the strategies; a netted symbol's by a stored plan), then answers in
  ``control/<id>.done``. ``EntryBlocks`` refuses new entries on the symbol until the next session.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from datetime import date
from pathlib import Path

import logging

import pandas as pd

from .risk import RiskManager, Verdict
from .runner_halts import HaltFile, read_halt, write_halt

log = logging.getLogger("live_bridge.runner")
INBOX = "control"  # the folder of requests in the runner's folder
STALE = 120.0  # seconds: a request older than this when the daemon finds it is refused, not acted on
SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,14}$")
BLOCK = "symbol:"  # the halt scope of a symbol flattened by hand (the store's halts table)


class ControlError(ValueError):
    """A control action refused: the message says why, in one line (``status``: the HTTP status)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


# --- who asked, and the decision log ---------------------------------------------------------------
def log_action(state_dir: Path, action: str, who: dict, **detail) -> dict:
    """Append one ``control`` line (who asked, how, when) to the decision log with one O_APPEND write:
    a reader never sees half of it, nor the runner's own lines cut by it."""
    now = pd.Timestamp.now(tz="UTC").isoformat()
    line = {"event": "control", "action": action, "who": who, "at": now, **detail, "logged_at": now}
    data = (json.dumps(line, default=str) + "\n").encode()
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(state_dir) / "decisions.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return line


def cli_who(command: str) -> dict:
    """Who asked, for a command run on this machine: the command and the local user."""
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = None
    return {"via": "cli", "client": "local", "agent": command, "user": user}


def runner_running(state_dir: Path) -> bool:
    """True when ``status.json`` names a live process that has not stopped (its pid answers)."""
    try:
        body = json.loads((Path(state_dir) / "status.json").read_text())
        pid = int(body.get("pid") or 0)
        if pid <= 0 or body.get("stopped"):
            return False
        os.kill(pid, 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return True


# --- halt and resume -------------------------------------------------------------------------------
def new_halt(state_dir: Path, by: str, cli_until: pd.Timestamp | None = None) -> tuple[Path, dict]:
    """Write a pending HALT (``runner_halts`` says what it means): (its path, its body). ``cli_until``:
    the caller works on the broker itself until then (``tradelab live halt`` with no runner)."""
    body = {"halted_at": pd.Timestamp.now(tz="UTC").isoformat(), "by": by, "flatten": "pending",
            "cli_until": None if cli_until is None else cli_until.isoformat()}
    return write_halt(state_dir, body), body


def ask_halt(state_dir: Path, by: str, wait: float = 10.0) -> dict:
    """Halt like ``tradelab live halt`` with a runner running: HALT first, and the runner flattens with
    its own orders (waited for up to ``wait`` seconds). Never touches the broker from here."""
    halt = read_halt(state_dir)
    if halt is None:
        new_halt(state_dir, by)
        halt = read_halt(state_dir)
    running = runner_running(state_dir)
    end = time.monotonic() + max(0.0, wait)
    while running and not halt.done and time.monotonic() < end:
        time.sleep(0.1)
        halt = read_halt(state_dir) or halt
    return halt_report(halt, running)


def halt_report(halt: HaltFile, running: bool) -> dict:
    """What a HALT says, for an answer: its state and, once done, the orders the flatten sent."""
    out = {"halted_at": halt.halted_at.isoformat(), "asked_by": halt.body.get("requested_by", halt.by),
           "flatten": halt.flatten, "runner_running": running}
    if halt.done:
        out["flatten_orders"] = list(halt.body.get("flatten_orders") or [])
        out["cancelled"] = halt.body.get("cancelled")
        out["message"] = "halted: every order cancelled and every position has a closing order"
    elif running:
        out["message"] = "HALT written: the runner trades no more and is flattening with its own orders"
    else:
        out["message"] = ("HALT written, flatten pending: no runner is running; the next `tradelab live` start "
                          "flattens with the runner's own orders and exits, or run `tradelab live halt` now")
    return out


def check_resume(state_dir: Path) -> HaltFile:
    """The HALT a resume applies to: one whose flatten is done (ControlError otherwise)."""
    halt = read_halt(state_dir)
    if halt is None:
        raise ControlError("not halted: there is no HALT file to resume from")
    if not halt.done:
        raise ControlError("the HALT's flatten is still pending: resume only once every position has a "
                           "closing order (HALT says flatten done)")
    return halt


def ask_resume(state_dir: Path, by: str) -> dict:
    """Mark a done HALT to resume at the next session (module docstring); refused otherwise."""
    halt = check_resume(state_dir)
    if halt.body.get("resume"):
        return {"resume": halt.body["resume"], "message": "resume was asked already"}
    resume = {"asked_at": pd.Timestamp.now(tz="UTC").isoformat(), "by": by}
    write_halt(state_dir, {**halt.body, "resume": resume})
    return {"resume": resume, "message": "resume asked: a `tradelab live` started now waits for the market to "
                                         "be closed, then trades from the next session's open"}


def resume_asked(halt: HaltFile | None) -> bool:
    """A done HALT that was asked to resume at the next session."""
    return halt is not None and halt.done and bool(halt.body.get("resume"))


def wait_for_resume(state_dir: Path, clock, stop, poll: float) -> bool:
    """At a start on a resumed HALT: wait while the market is open (``clock()``: the broker's), then
    remove HALT; False when stopped first. A HALT rewritten meanwhile (a new halt) is left for the
    caller, who reads it again. The decision line says who asked and when."""
    while True:
        halt = read_halt(state_dir)
        if not resume_asked(halt):
            return True
        if not clock().is_open:
            break
        if stop.wait(max(poll, 0.05)):
            return False
    log_action(state_dir, "resumed", {"via": "runner"}, asked=halt.body.get("resume"),
               halted_at=halt.halted_at.isoformat())
    (Path(state_dir) / "HALT").unlink(missing_ok=True)
    return True


# --- reload ------------------------------------------------------------------------------------------
def check_params(params_path: Path, state_dir: Path, lake_root: Path | None):
    """The params file the runner would take, checked as its reload checks it (``load``, the epochs'
    sleeves, ``check_sleeves``): the ParamsFile, or ControlError (422) naming the reason."""
    from research.params import load, loads

    from .runner_params import check_sleeves
    from .sleeves import sleeves_over
    from .state import StateStore

    try:
        pf = load(params_path)
    except (OSError, ValueError) as exc:
        raise ControlError(f"{params_path}: {exc}", 422) from None
    epochs = []
    if (Path(state_dir) / "state.db").exists():
        with StateStore(Path(state_dir) / "state.db", read_only=True) as store:
            epochs = [(f, loads(text, f"state epoch {sha[:12]}")) for f, sha, text, _ in store.epochs()]
    if epochs and pf.data.timeframe != epochs[-1][1].data.timeframe:
        raise ControlError(f"{params_path} trades {pf.data.timeframe}, the runner {epochs[-1][1].data.timeframe}: "
                           "restart the runner to change timeframe", 422)
    try:
        sls = sleeves_over([*epochs, ((epochs[-1][0] + 1) if epochs else 0, pf)])
        benches = {s.benchmark for s in sls if s.by_regime}
        have = {b for b in benches if lake_root is not None and _has_daily(lake_root, b)}
        check_sleeves(sls, dict.fromkeys(have))
    except ValueError as exc:
        raise ControlError(f"{params_path}: {exc}", 422) from None
    return pf


def _has_daily(root: Path, symbol: str) -> bool:
    from data_lake import Lake

    try:
        return bool(Lake(root).files(symbol, "1Day"))
    except Exception:  # no lake, or not one: the benchmark counts as missing
        return False


def ask_reload(state_dir: Path, params_path: Path, lake_root: Path | None) -> dict:
    """Check the params file, then the RELOAD file (the runner reads the file again at its next poll)."""
    pf = check_params(params_path, state_dir, lake_root)
    (Path(state_dir) / "RELOAD").write_text(f"asked at {pd.Timestamp.now(tz='UTC').isoformat()}\n")
    return {"params": str(params_path), "sha256": pf.sha256(), "runner_running": runner_running(state_dir),
            "message": "params checked; the runner reads them at its next poll"}


# --- flatten one symbol: the request, and the daemon's side -------------------------------------------
def held_symbols(state_dir: Path) -> dict[str, dict[str, float]]:
    """symbol -> {strategy: qty} the state store says the runner's strategies hold (read-only)."""
    from .state import EXTERNAL, StateStore

    db = Path(state_dir) / "state.db"
    if not db.exists():
        return {}
    with StateStore(db, read_only=True) as store:
        out: dict[str, dict[str, float]] = {}
        for (strategy, symbol), p in store.positions().items():
            if p.qty and strategy != EXTERNAL:
                out.setdefault(symbol, {})[strategy] = p.qty
    return out


def check_flatten(state_dir: Path, symbol: object) -> dict[str, float]:
    """A symbol the running runner's strategies hold: {strategy: qty} (ControlError otherwise)."""
    if not isinstance(symbol, str) or not SYMBOL.match(symbol):
        raise ControlError(f"not a symbol: {str(symbol)[:20]!r} (capital letters, digits and dots)", 422)
    if not runner_running(state_dir):
        raise ControlError("no runner is running: flatten one symbol needs a running `tradelab live`")
    held = held_symbols(state_dir)
    if symbol not in held:
        raise ControlError(f"{symbol}: not held by the runner's strategies (held: {', '.join(sorted(held)) or 'nothing'})",
                           422)
    return held[symbol]


def ask_flatten(state_dir: Path, symbol: str, who: dict, wait: float = 10.0) -> dict:
    """Ask the running runner to flatten ``symbol`` (checked: ``check_flatten``; a request in its inbox);
    its answer, waited for up to ``wait`` seconds (``{"state": "asked"}`` if none by then)."""
    held = check_flatten(state_dir, symbol)
    rid = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
    inbox = Path(state_dir) / INBOX
    inbox.mkdir(exist_ok=True)
    req = {"id": rid, "action": "flatten", "symbol": symbol, "asked_at": pd.Timestamp.now(tz="UTC").isoformat(),
           "who": who, "held": held}
    tmp = inbox / f".{rid}.tmp"
    tmp.write_text(json.dumps(req))
    tmp.rename(inbox / f"{rid}.json")  # the daemon sees the whole request or none
    end = time.monotonic() + max(0.0, wait)
    done = inbox / f"{rid}.done"
    while time.monotonic() < end and not done.exists():
        time.sleep(0.05)
    try:
        return {"id": rid, **json.loads(done.read_text())}
    except (OSError, ValueError):
        return {"id": rid, "state": "asked", "message": f"asked; the runner has not answered within {wait:g}s"}


def serve_inbox(state_dir: Path, runner) -> int:
    """The daemon's poll: hand each new request to the runner's worker (``on_worker``); a request that
    waited past ``STALE`` seconds (asked while no runner ran) is answered as refused. How many taken."""
    inbox = Path(state_dir) / INBOX
    if not inbox.is_dir():
        return 0
    n = 0
    for path in sorted(inbox.glob("*.json")):
        taken = path.with_suffix(".taken")
        try:
            path.rename(taken)  # once: a second poll does not see it again
            req = json.loads(taken.read_text())
        except (OSError, ValueError):
            continue
        n += 1
        age = (pd.Timestamp.now(tz="UTC") - pd.Timestamp(req.get("asked_at"))).total_seconds()
        if req.get("action") != "flatten" or not SYMBOL.match(str(req.get("symbol", ""))):
            _answer(taken, {"state": "refused", "message": "unknown request"})
        elif age > STALE:
            _answer(taken, {"state": "refused", "message": f"asked {age:.0f}s ago (stale): ask again"})
        else:
            on_worker(runner, ("control", req["id"]), lambda r=req, t=taken: flatten_symbol(runner, r, t))
    return n


def _answer(taken: Path, body: dict) -> None:
    tmp = taken.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, default=str))
    tmp.rename(taken.with_suffix(".done"))


def on_worker(runner, key: tuple, fn) -> None:
    """Run ``fn`` on the runner's worker thread (the store's one writer), in turn with the bars and
    fills queued before it; a broker out of reach runs it again when it answers (``Runner._try``,
    under ``key``). ``fn`` raises nothing else."""
    from .runner_orders import Work

    runner._q.put(Work("call", lambda: runner._try(key, fn, "a control request")))


def flatten_symbol(runner, req: dict, taken: Path) -> None:
    """On the worker: block the symbol's entries for the session, cancel its orders, close it with the
    runner's own flatten order (``runner_halts``' ids, owner and netted plan); answer and log it."""
    from .ports import BrokerError
    from .runner_halts import _flatten_plan, _next_flatten, _owners
    from .runner_orders import _pending

    sym = req["symbol"]
    line = {"event": "flatten_symbol", "symbol": sym, "request": req["id"], "who": req.get("who")}
    try:
        ctx = runner._context()  # fresh: account, clock, positions, open orders
        at = ctx.clock.timestamp
        reason = f"flatten {sym} asked {req['asked_at']}"
        if isinstance(runner.risk, EntryBlocks):
            runner.risk.block(ctx.clock.session, sym)
        runner.store.record_halt(ctx.clock.session, BLOCK + sym, reason, at=at)
        pos = ctx.positions.get(sym)
        if pos is None or not pos.qty:
            line.update(state="done", orders=[], message=f"{sym}: nothing held at the broker; no entry this session")
        else:
            listed = {o.client_order_id for o in ctx.open_orders if o.symbol == sym}
            cancels = tuple(o.id for o in ctx.open_orders if o.symbol == sym and not o.is_terminal
                            and o.parent not in listed and not o.id.startswith("pending:"))
            side = "sell" if pos.qty > 0 else "buy"
            owner = _owners(runner.store).get((sym, side))
            if owner is None:
                raise ValueError(f"{sym}: no strategy of the runner holds the broker's {pos.qty:g}")
            stamp = pd.Timestamp(at).to_pydatetime().replace(second=0, microsecond=0)
            order = _next_flatten(runner.broker, runner.store, owner, sym, side, abs(pos.qty), stamp, reason)
            _flatten_plan(runner.store, order)
            runner.store.record_intent(order)
            runner._inflight[order.client_order_id] = _pending(order, at)
            runner._dispatch(order, cancels)
            runner._ctx = None
            line.update(state="done", orders=[order.client_order_id], cancelled=list(cancels),
                        message=f"{sym}: {side} {abs(pos.qty):g} sent ({owner}, {order.client_order_id}), "
                                f"{len(cancels)} orders cancelled first; no entry this session")
    except BrokerError as err:
        if err.status == 0 or err.status == 429 or err.status >= 500:
            raise  # the broker out of reach: the worker runs this again when idle
        line.update(state="refused", message=f"{sym}: refused by the broker: {err}")
    except Exception as exc:  # never kills the worker: refused, said why
        line.update(state="refused", message=f"{sym}: {type(exc).__name__}: {exc}")
    try:  # (on the worker's idle path: nothing may escape)
        runner._write(line)
        _answer(taken, {k: v for k, v in line.items() if k not in ("event", "who")})
    except Exception:
        log.exception("control: the answer to %s was not written", req["id"])


class EntryBlocks(RiskManager):
    """The runner's risk check, plus: no new entry on a symbol flattened by hand, until the next
    session (the blocks of the store's halts, scope ``symbol:<SYM>``, so a restart keeps them)."""

    def __init__(self, limits, store=None) -> None:
        super().__init__(limits)
        self.blocked: set[tuple[date, str]] = set()
        if store is not None:
            self.blocked = {(h.day, h.scope[len(BLOCK):]) for h in store.recent_halts(200)
                            if h.scope.startswith(BLOCK)}

    def block(self, session: date, symbol: str) -> None:
        self.blocked.add((session, symbol))

    def check(self, proposal, ctx) -> Verdict:
        v = super().check(proposal, ctx)
        it = proposal.intent
        if not v.allowed:
            return v
        if not v.reduces_risk and (ctx.clock.session, it.symbol) in self.blocked:
            return Verdict(False, "symbol_flattened", f"{it.symbol} was flattened by hand this session "
                           f"({ctx.clock.session}): no new entry until the next session", it.qty,
                           v.limit_price, v.stop_price)
        if it.type == "stop" and any(o.symbol == it.symbol and not o.is_terminal and _flatten_id(o.client_order_id)
                                     for o in ctx.open_orders):  # a stop now would outlive the position
            return Verdict(False, "flatten_working", f"a flatten order of {it.symbol} is working: no new stop",
                           it.qty, v.limit_price, v.stop_price)
        return v


def _flatten_id(cid: str) -> bool:
    from .ids import parse_client_order_id

    parsed = parse_client_order_id(cid)
    return parsed is not None and parsed.intent == "flatten"
