"""The order senders: thread pool and child process, with the real alpaca-py client against the simulator."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import pytest

from live_bridge.alpaca import AlpacaBroker
from live_bridge.ports import BrokerError, OrderAck
from live_bridge.sender import ProcessSender, Sender
from tests.live_bridge.test_alpaca_adapter import KEY, SECRET, buy, eventually, simulator


class Answers:
    """done callbacks that keep (result, error) per name, in arrival order."""

    def __init__(self) -> None:
        self.got: dict[str, tuple[object, BaseException | None]] = {}
        self.order: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, name: str):
        def done(result, err):
            with self.lock:
                self.got[name] = (result, err)
                self.order.append(name)
        return done


def test_broker_error_crosses_a_pipe_whole():
    err = pickle.loads(pickle.dumps(BrokerError(403, 40310000, "insufficient buying power")))
    assert (type(err), err.status, err.code, err.message) == (BrokerError, 403, 40310000, "insufficient buying power")


@pytest.mark.parametrize("kind", ["process", "threads"])
def test_sender_sends_cancels_and_reports_refusals(kind):
    with simulator() as s:
        sender = ProcessSender(s.broker.spawn_spec(), 2) if kind == "process" else Sender(s.broker, 2)
        try:
            a = Answers()
            sender.call("AAPL", "submit", (buy("t-1", 5, type="limit", limit_price=50.0),), a("limit"))
            # sent a moment ago: cancelled by its client_order_id, after the submit (same symbol: in order)
            pending = OrderAck("pending:t-1", "t-1", "AAPL", "buy", 5, 0.0, None, "pending_new", "limit", None, 50.0,
                               s.clock.now.to_pydatetime())
            sender.call("AAPL", "cancel", (pending,), a("cancel"))
            sender.call("AAPL", "submit", (buy("t-2", 1, type="limit", limit_price=50.001),), a("sub-penny"))
            sender.call("AAPL", "submit", (buy("t-3", 10_000_000),), a("too big"))
            assert sender.drain(30)
            ack, err = a.got["limit"]
            assert err is None and ack.client_order_id == "t-1" and ack.status in ("new", "accepted")
            assert a.got["cancel"][1] is None
            assert s.broker.order_by_client_id("t-1").status == "canceled"
            for name, status in (("sub-penny", 422), ("too big", 403)):
                res, err = a.got[name]
                assert res is None and isinstance(err, BrokerError) and err.status == status, (name, err)
            assert a.order[:2] == ["limit", "cancel"]
        finally:
            sender.close(10)


def test_process_sender_child_holds_no_key_on_its_command_line_and_ends_with_the_pipe():
    with simulator() as s:
        sender = ProcessSender(s.broker.spawn_spec(), 1)
        pid = sender._proc.pid
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        environ = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        assert KEY not in cmdline and SECRET not in cmdline
        assert SECRET not in environ
        sender.close(10)
        assert sender._proc.exitcode == 0


class HeldBroker(AlpacaBroker):
    """A broker whose orders wait while ``hold_file`` exists (a call in flight, on demand)."""

    def __init__(self, *args, hold_file: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._hold = hold_file

    def submit(self, order):
        while os.path.exists(self._hold):
            time.sleep(0.01)
        return super().submit(order)


def test_a_dead_sender_process_fails_its_calls_as_unanswered_and_the_next_call_starts_a_new_one(tmp_path):
    hold = tmp_path / "hold"
    with simulator() as s:
        spec = (HeldBroker, (KEY, SECRET), {"url_override": s.url, "retry_wait": 0, "timeout": 5,
                                            "hold_file": str(hold)})
        sender = ProcessSender(spec, 1)
        try:
            first = sender._proc.pid
            a = Answers()
            hold.touch()
            sender.call("AAPL", "submit", (buy("k-1", 1),), a("lost"))
            time.sleep(0.3)
            os.kill(first, signal.SIGKILL)  # with the order in flight
            eventually(lambda: "lost" in a.got, timeout=10, what="the lost call to fail")
            res, err = a.got["lost"]
            assert res is None and isinstance(err, BrokerError) and err.status == 0 and "sender process" in str(err)
            assert s.broker.order_by_client_id("k-1") is None
            hold.unlink()
            sender.call("AAPL", "submit", (buy("k-2", 1),), a("next"))
            assert sender.drain(30)
            assert sender._proc.pid != first and sender.restarts == 1
            ack, err = a.got["next"]
            assert err is None and ack.client_order_id == "k-2"
        finally:
            sender.close(10)


def test_a_killed_runner_leaves_no_sender_process_behind(tmp_path):
    import subprocess
    import sys

    with simulator() as s:
        code = ("import sys, time; sys.path.insert(0, %r)\n"
                "from live_bridge.alpaca import AlpacaBroker\n"
                "from live_bridge.sender import ProcessSender\n"
                "if __name__ == '__main__':\n"
                "    p = ProcessSender(AlpacaBroker(%r, %r, url_override=%r, retry_wait=0).spawn_spec(), 1)\n"
                "    print(p._proc.pid, flush=True)\n"
                "    time.sleep(60)\n") % (str(os.getcwd()), KEY, SECRET, s.url)
        script = tmp_path / "runner.py"
        script.write_text(code)
        runner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        child = int(runner.stdout.readline())
        os.kill(runner.pid, signal.SIGKILL)  # the runner dies; its end of the pipe closes with it
        runner.wait(10)

        def gone() -> bool:
            try:
                state = open(f"/proc/{child}/stat").read().split(")")[-1].split()[0]
            except FileNotFoundError:
                return True
            return state == "Z"  # exited, waiting for init to reap it

        eventually(gone, timeout=15, what="the orphaned sender process to exit")


def test_a_sender_process_needs_a_broker_that_can_be_built_again_in_it(tmp_path):
    from live_bridge.runner import Runner, RunnerConfig
    from live_bridge.state import StateStore
    from tests.kit import entry, params_file

    class InProcess:  # a test double: its state lives in this process, so it cannot be spawned
        def spawn_spec(self) -> None:
            return None

    with StateStore(tmp_path / "state.db") as store:
        with pytest.raises(ValueError, match=r"spawn_spec\(\) is None"):
            Runner(InProcess(), params_file([entry()]), {}, {}, store, RunnerConfig(sender_process=True))
        Runner(InProcess(), params_file([entry()]), {}, {}, store, RunnerConfig())  # threads: any broker
