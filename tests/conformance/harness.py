"""Official Alpaca clients other than alpaca-py, installed once into a cache and driven over JSON lines.

Two clients, each in its own runtime so that neither touches our virtualenv:

* ``js``: ``@alpacahq/alpaca-trade-api`` (pinned in js/package-lock.json), installed with ``npm ci``
  into ``~/.cache/tradelab/conformance/js-<hash>``; js/driver.mjs runs there under node >= 20;
* ``alpaca-trade-api``: the legacy Python SDK (pinned in legacy/requirements.txt; its pins clash
  with ours) in a virtualenv at ``~/.cache/tradelab/conformance/legacy-<hash>``; legacy/driver.py.

``<hash>`` is that of the pin files and the runtime's version, so a new pin (or a node or Python
upgrade) installs afresh and an unchanged one is reused.
An install is built in a temporary folder and renamed when complete, under a file lock, so two
runs never see half an install. What cannot be had (no node, no registry) skips with the reason.
The simulator is served as ``tradelab sim`` serves it: trading, bars and both streams in one app.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from simulator import (
    SimBroker, BrokerConfig, ReplayClock, SimulatorState, StreamControl, serve, streams_router,
)
from simulator.trading import broker_app

HERE = Path(__file__).parent
KEY, SECRET = "conformance-key", "conformance-secret"
CALL_TIMEOUT = 30.0  # seconds for one driver call (a stream's auth waits up to 10 s inside it)
INSTALL_TIMEOUT = 600


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tradelab" / "conformance"


def _digest(files: list[Path], runtime: str) -> str:
    h = hashlib.sha256(runtime.encode())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


@contextmanager
def _locked(name: str):
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)


_FAILED: dict[str, str] = {}  # installs that failed in this run: their tests skip at once


def _install(name: str, pins: list[Path], runtime: str, build) -> Path:
    """The cached install ``name-<hash of pins and runtime>``, built by ``build(folder)`` if missing; skip
    if it fails. ``runtime`` (node's or Python's version) is hashed too: an upgrade installs afresh."""
    target = cache_root() / f"{name}-{_digest(pins, runtime)}"
    if (target / ".complete").exists():
        return target
    if name in _FAILED:
        pytest.skip(_FAILED[name])
    with _locked(name) as root:
        if (target / ".complete").exists():  # another run built it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=root))
        try:
            problem = build(tmp)
            if problem:
                _FAILED[name] = f"{name}: {problem}"
                pytest.skip(_FAILED[name])
            (tmp / ".complete").touch()
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _tail(proc: subprocess.CompletedProcess) -> str:
    """The line of an install's output that says what went wrong (npm ends on its log's path)."""
    lines = [x for x in (proc.stderr or proc.stdout or "").strip().splitlines() if "complete log" not in x]
    errors = [x for x in lines if "error" in x.lower()]
    return (errors or lines or [f"exit status {proc.returncode}"])[0]


def js_install() -> Path:
    """node_modules holding the pinned JS SDK (skips without node >= 20, npm or the npm registry)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("the JS SDK needs node >= 20 and npm on PATH")
    major = _run([node, "--version"]).stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 20:
        pytest.skip(f"the JS SDK needs node >= 20 (found {major or 'none'})")
    pins = [HERE / "js" / "package.json", HERE / "js" / "package-lock.json"]

    def build(folder: Path) -> str | None:
        for f in pins:
            shutil.copy(f, folder)
        try:
            done = _run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=folder)
        except subprocess.TimeoutExpired:
            return "npm ci timed out (no npm registry?)"
        return None if done.returncode == 0 else f"npm ci failed (offline or no registry?): {_tail(done)}"

    return _install("js", pins, f"node {major}", build)


def legacy_install() -> Path:
    """A virtualenv holding the legacy alpaca-trade-api SDK (skips if pip cannot reach its registry)."""
    pins = [HERE / "legacy" / "requirements.txt"]

    def build(folder: Path) -> str | None:
        made = _run([sys.executable, "-m", "venv", str(folder / "venv")])
        if made.returncode != 0:
            return f"could not make a virtualenv: {_tail(made)}"
        pip = [str(folder / "venv" / "bin" / "python"), "-m", "pip", "install", "-q",
               "--disable-pip-version-check"]
        try:
            done = _run([*pip, "-r", str(pins[0])])
        except subprocess.TimeoutExpired:
            return "pip install timed out (no package index?)"
        return None if done.returncode == 0 else f"pip install failed (offline or no index?): {_tail(done)}"

    return _install("legacy", pins, f"python {sys.version_info[:2]}", build)


class DriverError(AssertionError):
    """The driver process died or did not answer in time."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An error a client raised, as that client parsed it."""

    name: str
    status: int | None
    code: int | str | None
    message: str


class Driver:
    """One client process; ``call(op, **args)`` returns the SDK's parsed result or a :class:`Refusal`."""

    def __init__(self, cmd: list[str], cwd: Path, sim_url: str, env: dict[str, str] | None = None) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")
        child_env = {**os.environ, "SIM_URL": sim_url, "SIM_KEY": KEY, "SIM_SECRET": SECRET, **(env or {})}
        self._proc = subprocess.Popen(cmd, cwd=cwd, env=child_env, text=True, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr)
        self._answers: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="conformance-driver", daemon=True)
        self._reader.start()
        self._next = 0

    def _read(self) -> None:
        for line in self._proc.stdout:
            self._answers.put(json.loads(line))
        self._answers.put(None)  # the process ended

    def call(self, op: str, **args: Any) -> Any:
        self._next += 1
        try:
            self._proc.stdin.write(json.dumps({"id": self._next, "op": op, "args": args}) + "\n")
            self._proc.stdin.flush()
            answer = self._answers.get(timeout=CALL_TIMEOUT)
        except (BrokenPipeError, queue.Empty):
            answer = None
        if answer is None or answer.get("id") != self._next:
            raise DriverError(f"{op}: no answer from the client; its stderr:\n{self.stderr()[-3000:]}")
        if "error" in answer:
            return Refusal(**answer["error"])
        return answer["ok"]

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def close(self) -> None:
        """End the client (closing its stdin ends both drivers), killing it if it lingers."""
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._reader.join(timeout=5)
        self._stderr.close()


def start_driver(client: str, sim_url: str) -> Driver:
    if client == "js":
        folder = js_install()
        shutil.copy(HERE / "js" / "driver.mjs", folder / "driver.mjs")  # ESM resolves the SDK from there
        return Driver([shutil.which("node"), "driver.mjs"], folder, sim_url)
    folder = legacy_install()
    python = str(folder / "venv" / "bin" / "python")
    return Driver([python, str(HERE / "legacy" / "driver.py")], folder, sim_url,
                  env={"APCA_API_DATA_URL": sim_url, "APCA_RETRY_MAX": "0"})


@dataclass
class Sim:
    """A served simulator (as ``tradelab sim`` builds it) and what it published, for the assertions."""

    url: str
    clock: ReplayClock
    broker: SimBroker
    app: Any
    published: list[tuple[str, dict]]


def lake_frames(minutes: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Two symbols with only the columns `tradelab sim` reads (no vwap, no trade count); MSFT's volume is
    split-adjusted (x1.5 + 0.25, so fractional)."""
    cols = ["ts", "open", "high", "low", "close", "volume"]
    msft = minutes[cols].copy()
    msft["volume"] = msft["volume"] * 1.5 + 0.25
    msft[["open", "high", "low", "close"]] *= 3
    return {"AAPL": minutes[cols].copy(), "MSFT": msft}


@contextmanager
def simulator(frames: dict[str, pd.DataFrame], max_page_size: int = 100):
    clock = ReplayClock(frames, "1Min")
    broker = SimBroker(clock, BrokerConfig(cash=100_000))
    state = SimulatorState(api_key=KEY, secret_key=SECRET)
    app = broker_app(clock, broker, state=state, max_page_size=max_page_size,
                     routers=[streams_router(state, clock.hub, StreamControl())])
    published: list[tuple[str, dict]] = []
    clock.hub.taps.append(lambda kind, event: published.append((kind, event)))
    with serve(app) as server:
        yield Sim(server.url, clock, broker, app, published)
