"""A tiny headless-Chromium driver for tests: does an HTML page render, and without console errors?

It speaks the Chrome DevTools Protocol over one websocket (``websockets.sync``) to a Chromium it
starts on a free port (``--remote-debugging-port=0``; the port is read from Chromium's "DevTools
listening on ws://..." line). A page target is created and attached in flat mode, so every
command carries a ``sessionId`` and the browser socket is the only connection. Errors are
collected from uncaught exceptions, ``console.error`` and the browser log (e.g. a failed load).

``Chromium.open(url)`` keeps a page open for tests that drive it (the dashboard): ``evaluate`` a JS
expression, ``wait`` until one is truthy, ``click`` a selector, and read the ``errors`` so far.

Plots are counted on plotly's own markers: ``.plotly-graph-div`` is in the page source for each
figure, and a rendered one holds a ``.main-svg``. Chromium missing means skip locally, but fail
in CI (``CI=true``): the Makefile's ``test`` target installs it there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.sync.client import connect

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", "--disable-quic",
         "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions")
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
COUNT_JS = """JSON.stringify({
  plots: document.querySelectorAll('.plotly-graph-div').length,
  rendered: [...document.querySelectorAll('.plotly-graph-div')].filter(d => d.querySelector('.main-svg')).length,
  title: document.title})"""


@dataclass(frozen=True)
class PageCheck:
    """What the browser saw: plot divs, how many rendered an SVG, errors, title, seconds taken."""

    plots: int
    rendered: int
    errors: list[str]
    title: str
    seconds: float


def chromium_path() -> str:
    """The Chromium executable; skips the test if there is none, unless in CI (then it fails)."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("chromium is not installed (CI=true: `make test` should have installed it)")
    pytest.skip("chromium is not installed (`apt-get install chromium`, or run `make test`)")


class _Cdp:
    """One DevTools websocket: numbered commands, with events buffered while awaiting replies."""

    def __init__(self, url: str, deadline: float) -> None:
        self.deadline, self.next_id = deadline, 0
        self.events: list[dict] = []
        self.ws = connect(url, proxy=None, max_size=None, compression=None, open_timeout=self._left())

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("headless chromium: the page check ran out of time")
        return left

    def _read(self) -> dict:
        try:
            return json.loads(self.ws.recv(timeout=self._left()))
        except TimeoutError:
            raise TimeoutError("headless chromium: the page check ran out of time") from None

    def send(self, method: str, session: str | None = None, **params: object) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        self.ws.send(json.dumps({**msg, "sessionId": session} if session else msg))
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"CDP {method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def drain(self, seconds: float) -> None:
        """Keep buffering events for ``seconds`` (late errors from timers, promises)."""
        end = min(time.monotonic() + seconds, self.deadline)
        while (left := end - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return


def _errors(events: list[dict]) -> list[str]:
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            out.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                    for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
    return out


class Chromium:
    """A headless Chromium process, killed (with its children) on exit from the ``with`` block."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def __enter__(self) -> Chromium:
        exe = chromium_path()
        self.profile = tempfile.mkdtemp(prefix="tradelab-chromium-")
        self.log = open(Path(self.profile) / "stderr.log", "w+b")  # a file: a full pipe would block it
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.profile}/p",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=self.log,
                                     start_new_session=True)  # its own process group, for the kill
        try:
            self.url = self._devtools_url(time.monotonic() + self.timeout)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _devtools_url(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            self.log.seek(0)
            text = self.log.read().decode(errors="replace")
            if found := LISTENING.search(text):
                return found.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited ({self.proc.returncode}) before DevTools started:\n{text}")
            time.sleep(0.05)
        raise TimeoutError(f"chromium did not start DevTools within {self.timeout:.0f}s")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group we started: browser and its children
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)  # a dying child may still be writing to it

    def check(self, page: str | Path, settle: float = 2.0) -> PageCheck:
        """Load ``page`` (a file), wait for load and plots (up to ``settle`` s after load), report."""
        started = time.monotonic()
        cdp = _Cdp(self.url, started + self.timeout)
        try:
            target = cdp.send("Target.createTarget", url="about:blank")["targetId"]
            session = cdp.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                cdp.send(f"{domain}.enable", session)
            nav = cdp.send("Page.navigate", session, url=Path(page).resolve().as_uri())
            if nav.get("errorText"):
                raise RuntimeError(f"chromium could not open {page}: {nav['errorText']}")
            cdp.wait_for("Page.loadEventFired")
            counts, end = {}, min(time.monotonic() + settle, cdp.deadline)
            while True:  # plotly renders from inline scripts, but some of it after load: poll briefly
                result = cdp.send("Runtime.evaluate", session, expression=COUNT_JS, returnByValue=True)
                counts = json.loads(result["result"]["value"])
                if counts["rendered"] >= counts["plots"] or time.monotonic() >= end:
                    break
                time.sleep(0.05)
            cdp.drain(0.2)
        finally:
            cdp.ws.close()
        return PageCheck(counts["plots"], counts["rendered"], _errors(cdp.events), counts["title"],
                         round(time.monotonic() - started, 2))

    def open(self, url: str | Path, timeout: float | None = None) -> Page:
        """A new tab on ``url`` (an http URL or a file), loaded; use it as a context manager."""
        url = str(url) if "://" in str(url) else Path(url).resolve().as_uri()
        return Page(self, url, timeout or self.timeout)


class Page:
    """One open tab of a ``Chromium`` (from ``Chromium.open``): evaluate, wait, click, errors."""

    def __init__(self, browser: Chromium, url: str, timeout: float) -> None:
        self.timeout = timeout
        self.cdp = _Cdp(browser.url, time.monotonic() + timeout)
        self.target = self.cdp.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.cdp.send("Target.attachToTarget", targetId=self.target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.cdp.send(f"{domain}.enable", self.session)
        nav = self.cdp.send("Page.navigate", self.session, url=url)
        if nav.get("errorText"):
            raise RuntimeError(f"chromium could not open {url}: {nav['errorText']}")
        self.cdp.wait_for("Page.loadEventFired")

    def _renew(self) -> None:
        """Each call gets the page's whole timeout (a long test drives one page for a while)."""
        self.cdp.deadline = max(self.cdp.deadline, time.monotonic() + self.timeout)

    def evaluate(self, expression: str) -> object:
        """The value of a JS expression in the page (JSON-able; awaited if it is a promise)."""
        self._renew()
        result = self.cdp.send("Runtime.evaluate", self.session, expression=expression, returnByValue=True,
                               awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS {expression[:80]!r} threw: {result['exceptionDetails'].get('text')} "
                               f"{result['result'].get('description', '')}")
        return result["result"].get("value")

    def wait(self, condition: str, timeout: float = 10.0, what: str = "") -> object:
        """Poll a JS expression until it is truthy; its value (TimeoutError naming it otherwise)."""
        end = time.monotonic() + timeout
        while True:
            value = self.evaluate(condition)
            if value:
                return value
            if time.monotonic() >= end:
                raise TimeoutError(f"waited {timeout:g}s for {what or condition}; last value {value!r}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """Click the first element matching a CSS selector (its ``click()``: events as a user's)."""
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                              "if (!e) return false; e.click(); return true; })()")
        if not found:
            raise LookupError(f"no element matches {selector!r}")

    @property
    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and browser log errors seen so far."""
        self._renew()
        self.cdp.drain(0.05)
        return _errors(self.cdp.events)

    def close(self) -> None:
        """Close the tab (its connections end: a page's event stream too) and the socket."""
        try:
            self._renew()
            self.cdp.send("Target.closeTarget", targetId=self.target)
        except (RuntimeError, TimeoutError, OSError):
            pass  # the browser is gone already
        finally:
            self.cdp.ws.close()

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_page(page: str | Path, timeout: float = 30.0, settle: float = 2.0) -> PageCheck:
    """Start a headless Chromium, check one page in it, and stop the browser."""
    with Chromium(timeout) as browser:
        return browser.check(page, settle)
