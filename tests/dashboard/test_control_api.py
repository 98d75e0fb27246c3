"""The control API's security and its actions without a running runner: the real app served on a loopback
port (uvicorn in a thread), asked over HTTP. A refused request leaves no trace (no HALT, RELOAD or
decision line); an accepted or validated-and-refused one leaves one decision line saying who and when;
the token is never in an answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from dashboard import DashboardConfig, create_app
from dashboard.security import COOKIE, check_bind, install
from live_bridge.runner_halts import read_halt, write_halt
from research.params import ExitRulesModel, dumps
from tests.kit import entry, params_file
from tests.soak.kit import hermetic_env

TOKEN = "tok-" + "x7" * 12


@contextmanager
def served(cfg: DashboardConfig):
    from simulator.server import serve

    app = create_app(cfg)
    install(app, cfg)
    with serve(app, host="127.0.0.1", port=0) as server:
        yield server.url


def call(url: str, path: str, body: dict | None = None, method: str = "POST", **headers: str):
    """(status, JSON answer or text, headers) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw, hdrs = r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), exc.headers
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(), hdrs


def csrf_cookie(url: str) -> str:
    """The CSRF token the dashboard gives a browser (its cookie)."""
    _, _, hdrs = call(url, "/api/status", method="GET")
    cookie = hdrs["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    return cookie.split(";")[0].split("=", 1)[1]


def lines(state: Path) -> list[dict]:
    path = state / "decisions.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture()
def folder(tmp_path) -> DashboardConfig:
    state = tmp_path / "runs" / "live"
    state.mkdir(parents=True)
    return DashboardConfig(state_dir=state, params_dir=tmp_path / "params", runs_dir=tmp_path / "runs",
                           lake=tmp_path / "lake", token=TOKEN)


def test_unauthenticated_wrong_token_csrf_and_cross_origin_requests_are_refused_and_leave_no_trace(folder):
    state = folder.state_dir
    with served(folder) as url:
        host = url.split("//")[1]
        assert call(url, "/api/halt", {})[0] == 401
        assert call(url, "/api/flatten", {"symbol": "AAPL"})[0] == 401
        assert call(url, "/api/halt", {}, Authorization="Bearer " + TOKEN[:-1] + "y")[0] == 403
        assert call(url, "/api/halt", {}, Authorization="Basic " + TOKEN)[0] == 401
        auth = {"Authorization": "Bearer " + TOKEN}
        cookie = csrf_cookie(url)
        browser = {**auth, "Cookie": f"{COOKIE}={cookie}", "Origin": url}
        status, answer, _ = call(url, "/api/halt", {}, **browser)  # a browser's request without its CSRF token
        assert (status, answer["detail"]) == (403, "missing or wrong CSRF token (reload the page)")
        assert call(url, "/api/halt", {}, **browser, **{"X-CSRF-Token": "A" * 43})[0] == 403
        assert call(url, "/api/halt", {}, **{**auth, "Origin": url, "X-CSRF-Token": cookie})[0] == 403  # no cookie
        evil = call(url, "/api/halt", {}, **{**browser, "X-CSRF-Token": cookie, "Origin": "http://evil.example"})
        assert evil[:2] == (403, {"detail": "cross-origin control request refused"})
        assert call(url, "/api/halt", {}, **auth, **{"Sec-Fetch-Site": "cross-site"})[0] == 403
        assert call(url, "/api/halt", {}, **auth, **{"Referer": "http://evil.example/x"})[0] == 403
        assert call(url, "/api/status", method="GET", Host="evil.example:" + host.split(":")[1])[0] == 421  # rebinding
        assert not (state / "HALT").exists() and lines(state) == []

        status, answer, hdrs = call(url, "/api/halt", {"wait": 0}, **browser, **{"X-CSRF-Token": cookie})
    assert status == 200 and answer["flatten"] == "pending" and "no runner is running" in answer["message"]
    assert read_halt(state).by == "tradelab dashboard API (dashboard from 127.0.0.1)"
    [line] = lines(state)
    assert (line["event"], line["action"], line["outcome"]) == ("control", "halt", "accepted")
    assert line["who"]["via"] == "dashboard" and line["who"]["client"] == "127.0.0.1" and line["who"]["kind"] == "browser"
    assert line["at"].startswith("20") and TOKEN not in (state / "decisions.jsonl").read_text()
    assert hdrs["cache-control"] == "no-store"


def test_no_token_configured_means_control_is_off_and_the_status_says_so(folder, tmp_path):
    off = DashboardConfig(state_dir=folder.state_dir, params_dir=folder.params_dir, lake=folder.lake)
    with served(off) as url:
        status, answer, hdrs = call(url, "/api/halt", {}, Authorization="Bearer " + TOKEN)
        st = call(url, "/api/status", method="GET")[1]
        page = urllib.request.urlopen(url + "/", timeout=30)
        csp, frame, sniff = (page.headers[h] for h in ("content-security-policy", "x-frame-options",
                                                       "x-content-type-options"))
        shown = page.read().decode()
    assert status == 403 and "control is off" in answer["detail"]
    assert st["control"] == {"enabled": False, "reason": "no control token is configured "
                                                         "(TRADELAB_DASHBOARD_TOKEN): control is refused"}
    assert csp.startswith("default-src 'self'") and "frame-ancestors 'none'" in csp and frame == "DENY"
    assert sniff == "nosniff" and hdrs["x-frame-options"] == "DENY"
    assert 'id="control-off"' in shown and 'id="btn-halt"' in shown
    assert not (folder.state_dir / "HALT").exists() and lines(folder.state_dir) == []
    with served(folder) as url:  # configured: said enabled, never shown
        raw = urllib.request.urlopen(url + "/api/status", timeout=30).read().decode()
        page = urllib.request.urlopen(url + "/", timeout=30).read().decode()
    assert json.loads(raw)["control"]["enabled"] is True and TOKEN not in raw + page and "control-off" not in page


def test_a_bind_beyond_loopback_needs_a_token_of_some_length():
    check_bind(DashboardConfig())  # loopback, no token: fine (control is off)
    check_bind(DashboardConfig(host="0.0.0.0", token=TOKEN))
    with pytest.raises(ValueError, match="--host 0.0.0.0 listens beyond this machine: set TRADELAB_DASHBOARD_TOKEN"):
        check_bind(DashboardConfig(host="0.0.0.0"))
    with pytest.raises(ValueError, match="at least 16 characters"):
        check_bind(DashboardConfig(host="192.168.1.5", token="short"))


def test_resume_is_refused_until_the_halt_is_flattened_and_every_try_is_logged(folder):
    state = folder.state_dir
    auth = {"Authorization": "Bearer " + TOKEN}
    with served(folder) as url:
        none = call(url, "/api/resume", {}, **auth)
        write_halt(state, {"halted_at": "2012-06-20T20:00:00+00:00", "by": "tradelab live halt", "flatten": "pending"})
        pending = call(url, "/api/resume", {}, **auth)
        write_halt(state, {**read_halt(state).body, "flatten": "done", "by": "runner", "flatten_orders": ["x"]})
        done = call(url, "/api/resume", {}, **auth, **{"User-Agent": "tradelab-cli/control"})
        status = call(url, "/api/status", method="GET")[1]
    assert none[:2] == (409, {"detail": "not halted: there is no HALT file to resume from"})
    assert pending[0] == 409 and "still pending" in pending[1]["detail"]
    assert done[0] == 200 and "next session's open" in done[1]["message"]
    halt = read_halt(state)
    assert halt.done and halt.body["resume"]["by"] == "tradelab dashboard API (cli from 127.0.0.1)"
    assert status["halt"]["resume"] == halt.body["resume"] and status["halt"]["flatten_orders"] == ["x"]
    got = [(x["action"], x["outcome"], x["who"]["via"]) for x in lines(state)]
    assert got == [("resume", "refused", "dashboard"), ("resume", "refused", "dashboard"), ("resume", "accepted", "cli")]
    assert lines(state)[0]["reason"] == "not halted: there is no HALT file to resume from"


def test_reload_refuses_a_file_the_runner_would_refuse_with_the_reason(folder):
    from pipeline.params_store import install as install_params

    state = folder.state_dir
    bare = params_file([entry(symbol="AAPL", exit_rules=ExitRulesModel(stop_loss=0.0, take_profit=0.05))])
    install_params(bare, folder.params_dir)
    auth = {"Authorization": "Bearer " + TOKEN}
    with served(folder) as url:
        refused = call(url, "/api/reload", {}, **auth)
        (folder.params_dir / "current.json").write_bytes(dumps(params_file([entry(symbol="AAPL")])))
        ok = call(url, "/api/reload", {}, **auth)
    assert refused[0] == 422 and "take_profit but no stop_loss or trailing_stop: sma_cross AAPL" in refused[1]["detail"]
    first = lines(state)[0]
    assert (first["action"], first["outcome"]) == ("reload", "refused") and "take_profit" in first["reason"]
    assert ok[0] == 200 and (state / "RELOAD").exists() and ok[1]["sha256"]
    assert [x["outcome"] for x in lines(state)] == ["refused", "accepted"]


def test_flatten_refuses_a_bad_or_unheld_symbol_and_needs_a_running_runner(copy_world):
    cfg = copy_world.config(token=TOKEN)
    state = cfg.state_dir
    auth = {"Authorization": "Bearer " + TOKEN}
    with served(cfg) as url:
        no_runner = call(url, "/api/flatten", {"symbol": "MSFT"}, **auth)
        (state / "status.json").write_text(json.dumps({"pid": os.getpid(), "stopped": False}))  # "running"
        bad = call(url, "/api/flatten", {"symbol": "../HALT"}, **auth)
        unheld = call(url, "/api/flatten", {"symbol": "IBM"}, **auth)
        missing = call(url, "/api/flatten", {}, **auth)
    assert no_runner[0] == 409 and "no runner is running" in no_runner[1]["detail"]
    assert bad[0] == 422 and bad[1]["detail"].startswith("not a symbol: '../HALT'")
    assert unheld[:2] == (422, {"detail": "IBM: not held by the runner's strategies (held: MSFT)"})
    assert missing[0] == 422
    assert not (state / "control").exists()
    assert [(x["action"], x["outcome"], x["symbol"]) for x in lines(state) if x["event"] == "control"] == \
        [("flatten", "refused", "MSFT"), ("flatten", "refused", "../HALT"), ("flatten", "refused", "IBM"),
         ("flatten", "refused", "None")]


def test_the_cli_calls_the_api_with_the_token_from_the_environment(folder):
    env = hermetic_env("k", "s")
    with served(folder) as url:
        no_token = subprocess.run([sys.executable, "-m", "tradelab", "live", "control", "halt", "--url", url],
                                  env=env, capture_output=True, text=True, timeout=60)
        wrong = subprocess.run([sys.executable, "-m", "tradelab", "live", "control", "halt", "--url", url],
                               env={**env, "TRADELAB_DASHBOARD_TOKEN": "n" * 20}, capture_output=True, text=True,
                               timeout=60)
        ok = subprocess.run([sys.executable, "-m", "tradelab", "live", "control", "halt", "--url", url, "--wait", "0"],
                            env={**env, "TRADELAB_DASHBOARD_TOKEN": TOKEN}, capture_output=True, text=True, timeout=60)
    assert no_token.returncode == 2 and no_token.stderr.strip() == \
        "error: set TRADELAB_DASHBOARD_TOKEN (the dashboard's control token)"
    assert wrong.returncode == 2 and wrong.stderr.strip() == "error: halt refused (403): wrong control token"
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["flatten"] == "pending" and TOKEN not in ok.stdout + ok.stderr
    [line] = lines(folder.state_dir)
    assert line["who"]["via"] == "cli" and line["who"]["agent"] == "tradelab-cli/control"
