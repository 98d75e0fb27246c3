"""Broker calls off the decision thread: one symbol's calls in order, different symbols in parallel.

The runner decides on one worker thread; a REST round trip (5 ms on loopback, more to Alpaca) must
not make the next symbol's decision wait. ``Sender.call(symbol, op, args, done)`` runs the broker
operation ``op`` (``OPS``: an order with the cancels that must precede it, or a cancel) after every
earlier call of the same symbol has finished (a stop's cancel before the exit that replaces it, an
exit before a re-entry), and hands ``done(result, error)`` the outcome; the runner's ``done`` puts it
back on its own queue, so the state store keeps one writer.

Two executors with that one interface:

* ``Sender``: a thread pool in the runner's process (tests, replays, any broker).
* ``ProcessSender``: the same pool in a child process with its own broker, built from the broker's
  ``spawn_spec()``. alpaca-py spends ~2 ms of CPU building and parsing each order request; in the
  runner's process that CPU holds the GIL the next symbols' decisions need (bench/live.py measured
  it as most of the tail of a bar with orders). The live daemon uses it. If the child dies, its
  calls in flight fail as "no answer" (status 0: the intents stay open and are looked up by id, as
  after any timeout) and the next call starts a new child.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from .ports import BrokerError, OrderAck, OrderIntent, SpawnSpec

log = logging.getLogger(__name__)
Done = Callable[[object, BaseException | None], None]


def submit(broker: Any, order: OrderIntent, cancels: tuple[str, ...] = ()) -> OrderAck:
    """Cancel ``cancels`` (broker ids, or ``pending:<client_order_id>`` for orders sent a moment ago),
    then send ``order`` (idempotent by client_order_id: a resend returns the same order)."""
    for oid in cancels:  # wash-trade avoidance: the opposite open orders go first
        if oid.startswith("pending:"):  # still in flight a moment ago: by its client_order_id
            found = broker.order_by_client_id(oid.removeprefix("pending:"))
            if found is None or found.is_terminal:
                continue
            oid = found.id
        broker.cancel(oid)
    return broker.submit(order)


def cancel(broker: Any, order: OrderAck) -> None:
    """Cancel an open order; one sent a moment ago (id ``pending:...``) is found by its client_order_id."""
    oid = order.id
    if oid.startswith("pending:"):
        found = broker.order_by_client_id(order.client_order_id)
        if found is None or found.is_terminal:
            return
        oid = found.id
    broker.cancel(oid)


OPS: dict[str, Callable[..., object]] = {"submit": submit, "cancel": cancel}


class Sender:
    """A per-symbol serial, cross-symbol parallel executor of broker calls (see the module docstring)."""

    def __init__(self, broker: Any, workers: int = 4) -> None:
        self.broker = broker
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sender")
        self._last: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        ready = threading.Barrier(workers + 1)  # start every thread now, not on the first order's path
        for _ in range(workers):
            self._pool.submit(ready.wait, 10)
        ready.wait(10)

    def call(self, symbol: str, op: str, args: tuple, done: Done) -> None:
        """Run ``OPS[op](broker, *args)`` after the symbol's earlier calls; then ``done(result, None)``
        or ``done(None, error)``."""
        fn = OPS[op]
        with self._lock:
            prev = self._last.get(symbol)
            prev = None if prev is None or prev.done() else prev
            self._pending += 1

        def run() -> None:
            if prev is not None:
                wait([prev])  # submitted earlier, so already running or ahead in the pool's FIFO queue
            try:
                try:
                    result, error = fn(self.broker, *args), None
                except BaseException as exc:  # noqa: BLE001 - handed to done, which logs it
                    result, error = None, exc
                done(result, error)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

        with self._lock:
            self._last[symbol] = self._pool.submit(run)

    @property
    def pending(self) -> int:
        return self._pending

    def drain(self, timeout: float) -> bool:
        """Wait until every call has finished (its ``done`` included); False on timeout."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = end - time.monotonic()
                if left <= 0 or not self._idle.wait(left):
                    return self._pending == 0
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.drain(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _portable(err: BaseException) -> BaseException:
    """An exception that survives the pipe: BrokerErrors as they are, anything else as a RuntimeError."""
    if isinstance(err, BrokerError):
        return err
    return RuntimeError(f"{type(err).__name__}: {err}")


def _child(conn: Any, spec: SpawnSpec, workers: int) -> None:
    """The sender process: its own broker, a ``Sender`` over it, calls in from the pipe, answers out.

    It ends when the runner says so (None) or dies (the read fails), after the calls it already
    took have been answered or have failed."""
    factory, args, kwargs = spec
    broker = factory(*args, **kwargs)
    sender = Sender(broker, workers)
    out = threading.Lock()

    def answer(token: int, result: object, err: BaseException | None) -> None:
        with out:
            try:
                conn.send((token, result, None if err is None else _portable(err)))
            except (OSError, EOFError, BrokenPipeError):
                pass  # the runner is gone; its successor looks every intent up by client_order_id

    try:
        broker.clock()  # the connection is opened now, not on the first order's path
    except Exception as exc:  # noqa: BLE001 - the first real call reports it
        log.warning("sender process: broker not answering yet: %s", exc)
    with out:
        conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:  # the runner is closing
            break
        token, symbol, op, call_args = msg
        sender.call(symbol, op, call_args, lambda r, e, t=token: answer(t, r, e))
    sender.close(30)


class ProcessSender:
    """``Sender``'s interface over a child process holding its own broker (see the module docstring).

    ``spec`` is ``(factory, args, kwargs)``, picklable (``Broker.spawn_spec()``); the keys in it
    cross to the child through the pipe, never through its command line or environment.
    """

    def __init__(self, spec: SpawnSpec, workers: int = 4, start_timeout: float = 60.0) -> None:
        self._spec, self._workers, self._start_timeout = spec, workers, start_timeout
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiting: dict[int, tuple[Done, Any]] = {}  # token -> (done, the child's pipe it went to)
        self._token = 0
        self._proc: Any = None
        self._conn: Any = None
        self.restarts = -1  # children started after the first
        self._spawn()

    def _spawn(self) -> None:
        """Start a child (spawned, not forked: the runner has threads, and a fork copies their locks)."""
        ctx = mp.get_context("spawn")
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(theirs, self._spec, self._workers), name="tradelab-sender",
                           daemon=True)
        proc.start()
        theirs.close()
        if not mine.poll(self._start_timeout):
            proc.kill()
            raise BrokerError(0, None, f"the sender process did not start within {self._start_timeout:g} s")
        try:
            mine.recv()  # "ready"
        except EOFError:
            raise BrokerError(0, None, f"the sender process exited at start (exit code {proc.exitcode})") from None
        self._proc, self._conn = proc, mine
        self.restarts += 1
        if self.restarts:
            log.warning("sender process started again (pid %s): the previous one exited", proc.pid)
        threading.Thread(target=self._read, args=(mine, proc), name="sender-answers", daemon=True).start()

    def _read(self, conn: Any, proc: Any) -> None:
        while True:
            try:
                token, result, err = conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                done, _ = self._waiting.pop(token, (None, None))
            if done is not None:
                self._finish(done, result, err)
        # the child is gone: what it had not answered fails as "no answer" (looked up by id later)
        proc.join(1)
        with self._lock:
            lost = [t for t, (_, c) in self._waiting.items() if c is conn]
            lost = [self._waiting.pop(t)[0] for t in lost]
            if self._conn is conn:
                self._conn = None
        if lost:
            log.warning("sender process exited (code %s) with %d calls unanswered", proc.exitcode, len(lost))
        for done in lost:
            self._finish(done, None, BrokerError(0, None, "no answer: the sender process exited"))

    def _finish(self, done: Done, result: object, err: BaseException | None) -> None:
        try:
            done(result, err)
        finally:
            with self._lock:
                self._idle.notify_all()

    def call(self, symbol: str, op: str, args: tuple, done: Done) -> None:
        """As ``Sender.call``; the call runs in the child (started again if it has died)."""
        if op not in OPS:
            raise ValueError(f"unknown broker operation {op!r}")
        if self._conn is None:
            self._spawn()
        with self._lock:
            self._token += 1
            token, conn = self._token, self._conn
            self._waiting[token] = (done, conn)
            try:
                conn.send((token, symbol, op, args))
                return
            except (OSError, EOFError, AttributeError):  # AttributeError: it died between the two lines
                self._waiting.pop(token, None)
        self._finish(done, None, BrokerError(0, None, "no answer: the sender process exited"))

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def drain(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        with self._lock:
            while self._waiting:
                left = end - time.monotonic()
                if left <= 0 or not self._idle.wait(left):
                    return not self._waiting
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.drain(timeout)
        with self._lock:
            conn, proc, self._conn = self._conn, self._proc, None
        if conn is not None:
            try:
                conn.send(None)  # the child finishes what it took and exits
            except (OSError, EOFError):
                pass
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(1)
        if conn is not None:
            conn.close()
