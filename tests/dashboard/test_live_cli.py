"""`tradelab dashboard` as a user runs it: on the demo's newest replay with `--replay latest`, a free
port printed with `--port 0`, the token never printed, and one-line refusals (a non-loopback address
without a token, no replay to show, a bad port)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradelab.cli import app

URL = re.compile(r"dashboard at (http://127\.0\.0\.1:\d+/)")


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, ["dashboard", *args], env=env)


def _start(cwd: Path, env: dict, *args: str) -> tuple[subprocess.Popen, str, Path]:
    log = cwd / "dashboard.log"
    proc = subprocess.Popen([sys.executable, "-m", "tradelab", "dashboard", "--port", "0", *args], cwd=cwd, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115 - the child holds it
    end = time.monotonic() + 60
    while not (found := URL.search(log.read_text())):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"tradelab dashboard did not start ({proc.poll()}):\n{log.read_text()}")
        time.sleep(0.05)
    return proc, found.group(1), log


def test_replay_latest_serves_the_newest_replay_on_a_free_port_without_printing_the_token(replay_world, tmp_path):
    live = tmp_path / "runs" / "live"
    (live / "parity-20120101T000000").mkdir(parents=True)  # an older replay (empty): not the one shown
    (live / "parity-20120101T000000" / "decisions.jsonl").write_text("")
    shutil.copytree(replay_world.state_dir, live / "parity-20121109T000000")
    shutil.copytree(replay_world.params_dir, tmp_path / "params")
    token = "tok-" + os.urandom(8).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELAB_", "APCA_"))}
    proc, url, log = _start(tmp_path, {**env, "TRADELAB_DASHBOARD_TOKEN": token}, "--replay", "latest")
    try:
        snap = json.loads(urllib.request.urlopen(url + "live/snapshot.json", timeout=10).read())
        page = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        proc.terminate()
        proc.wait(10)

    assert Path(snap["folder"]).name == "parity-20121109T000000"
    assert [p["symbol"] for p in snap["positions"]] == ["MSFT"] and snap["entries"]["rows"]
    assert "Live · tradelab" in page and token not in page
    assert token not in log.read_text() and "token set" in log.read_text()


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--host", "0.0.0.0"], {}, "error: --host 0.0.0.0 listens beyond this machine: set TRADELAB_DASHBOARD_TOKEN"),
    (["--host", "0.0.0.0"], {"TRADELAB_DASHBOARD_TOKEN": "short"}, "error: TRADELAB_DASHBOARD_TOKEN must be at least"),
    (["--replay", "latest"], {}, "error: --replay latest: no runs/live/parity-* folder"),
    (["--replay", "nowhere"], {}, "error: --replay nowhere: no state.db or decisions.jsonl there"),
    (["--port", "70000"], {}, "error: --port must be between 0 and 65535"),
    (["--refresh", "nan"], {}, "error: --refresh must be between 0.05 and 60 seconds"),
])
def test_bad_options_are_refused_in_one_line_before_listening(args, env, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    r = run(*args, "--port", "0", env=env) if "--port" not in args else run(*args, env=env)

    assert r.exit_code == 2
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    assert "dashboard at" not in r.stdout


def test_the_control_token_comes_from_the_environment_or_a_dot_env_the_environment_first(tmp_path, monkeypatch):
    from tradelab.cli.ui import secret_env

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRADELAB_DASHBOARD_TOKEN", raising=False)
    assert secret_env("TRADELAB_DASHBOARD_TOKEN") is None
    (tmp_path / ".env").write_text("TRADELAB_DASHBOARD_TOKEN=from-the-dot-env-file-123\n")

    assert secret_env("TRADELAB_DASHBOARD_TOKEN") == "from-the-dot-env-file-123"
    monkeypatch.setenv("TRADELAB_DASHBOARD_TOKEN", "from-the-environment-456")
    assert secret_env("TRADELAB_DASHBOARD_TOKEN") == "from-the-environment-456"
