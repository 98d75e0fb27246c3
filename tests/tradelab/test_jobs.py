"""Scheduled jobs as cron runs them: tiny fixture notebooks through papermill and a real kernel.

The fixtures in ``fixtures/`` stand in for the nightly and weekend notebooks: ``job_ok`` writes the
parameters it received into ``run_dir``, ``job_fail`` divides by zero in its third cell, ``job_sleep``
holds the lock long enough for a second run to be refused.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tradelab.cli import app
from tradelab.jobs import (JobConfigError, JobFailed, JobLocked, job_lock, load_config, parse_overrides,
                           redact, run_job)

FIXTURES = Path(__file__).parent / "fixtures"
TRADELAB = Path(sys.executable).with_name("tradelab")
SECRETS = ("sk-live-SECRET", "hunter2")


def config(tmp_path: Path, notebook: str, body: str = "", name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'notebook = "{FIXTURES / notebook}"\n{body}')
    return path


def invoke(*args: str) -> Result:
    """The command, run in this process from the current folder (papermill still starts a real kernel)."""
    return CliRunner().invoke(app, list(args))


def run_dirs(root: Path, job: str) -> list[Path]:
    return sorted(p for p in (root / "runs").glob(f"*/{job}-*") if p.is_dir())


def test_nightly_success_keeps_notebook_html_status_and_redacts_secrets(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, "job_ok.ipynb", '[parameters]\nsymbol = "MSFT"\nn = 1\napi_key = "sk-live-SECRET"')
    day = datetime.now(UTC).strftime("%Y-%m-%d")

    r = invoke("nightly", "--config", str(cfg), "-p", "n=3", "-p", "symbol=IBM", "-p", "db_password=hunter2")

    assert r.exit_code == 0, r.output
    [run] = run_dirs(tmp_path, "nightly")
    assert run.parent.name in (day, datetime.now(UTC).strftime("%Y-%m-%d"))
    assert re.fullmatch(r"nightly-\d{6}", run.name)
    assert {p.name for p in run.iterdir()} == {"nightly.ipynb", "nightly.html", "status.json",
                                               "params_seen.json", "report.html"}
    seen = json.loads((run / "params_seen.json").read_text())
    assert seen == {"symbol": "IBM", "n": 3, "api_key_len": 14, "cwd": str(FIXTURES)}  # -p beats TOML
    status = json.loads((run / "status.json").read_text())
    assert status["ok"] is True and status["exit_code"] == 0 and status["failed_cell"] is None
    assert status["parameters"] == {"symbol": "IBM", "n": 3, "api_key": "REDACTED", "db_password": "REDACTED",
                                    "run_dir": str(run), "job": "nightly", "lake": str(tmp_path / "lake"),
                                    "params_dir": str(tmp_path / "params")}  # absolute paths, from the CLI
    assert "nothing to install" in r.stdout and not (tmp_path / "params").exists()
    assert str(run) in r.stdout and str(run / "report.html") in r.stdout
    assert "done IBM 3" in (run / "nightly.html").read_text()
    for text in (r.stdout, r.stderr, *(p.read_text() for p in run.iterdir())):
        assert not any(s in text for s in SECRETS)


def test_on_success_hook_gets_the_run_folder_under_the_lock(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config(tmp_path, "job_ok.ipynb", 'runs_dir = "out/runs"\n'), "weekend")
    seen: list[tuple[Path, str]] = []

    def install(run_dir: Path) -> None:
        with pytest.raises(JobLocked) as locked:  # the next run cannot start while the hook works
            with job_lock(tmp_path / "out" / "runs", "weekend", datetime.now(UTC)):
                pass
        seen.append((run_dir, (run_dir / "report.html").read_text()))
        assert locked.value.pid == os.getpid()

    result = run_job(cfg, "weekend", overrides={"n": 2}, on_success=install,
                     now=datetime(2025, 1, 4, 9, 30, 5, tzinfo=UTC), progress_bar=False)

    assert result.ok and result.error is None
    assert result.run_dir == tmp_path / "out" / "runs" / "2025-01-04" / "weekend-093005"
    assert seen == [(result.run_dir, "<h1>AAPL x 2</h1>")]
    status = json.loads(result.status.read_text())
    assert status["on_success"] == "ok" and status["started"] == "2025-01-04T09:30:05Z"


def test_failing_notebook_exits_1_naming_the_cell_and_keeps_the_partial_run(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, "job_fail.ipynb")

    r = invoke("nightly", "--config", str(cfg))

    assert r.exit_code == 1
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    [run] = run_dirs(tmp_path, "nightly")
    for part in ("cell 3 (In [4])", "'# step two: divide by the count'", "ZeroDivisionError: division by zero",
                 str(run)):
        assert part in line
    assert "before the failure" in (run / "nightly.ipynb").read_text()  # executed up to the failure
    assert (run / "nightly.html").exists() and not (run / "after.txt").exists()
    status = json.loads((run / "status.json").read_text())
    assert status["ok"] is False and status["exit_code"] == 1
    assert status["failed_cell"] == {"index": 3, "execution_count": 4,
                                     "first_line": "# step two: divide by the count",
                                     "ename": "ZeroDivisionError", "evalue": "division by zero"}
    outside = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and run not in p.parents}
    assert outside == {Path("job.toml"), Path("runs/.nightly.lock")}


def test_cell_timeout_names_the_cell_and_skips_the_hook(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config(tmp_path, "job_sleep.ipynb", "timeout_per_cell = 1\n"), "nightly")
    calls: list[Path] = []

    with pytest.raises(JobFailed) as failed:
        run_job(cfg, "nightly", overrides={"seconds": 30}, on_success=calls.append, progress_bar=False)

    assert calls == []
    cell = failed.value.cell
    assert (cell.index, cell.first_line, cell.ename) == (2, "import os, time", "CellTimeoutError")
    assert "after 1 seconds" in str(failed.value)
    assert json.loads(failed.value.result.status.read_text())["on_success"] == "skipped"


def test_a_failing_hook_fails_the_run(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def install(run_dir: Path) -> None:
        raise RuntimeError("candidate refused")

    with pytest.raises(JobFailed, match="on_success hook failed: RuntimeError: candidate refused") as failed:
        run_job(load_config(config(tmp_path, "job_ok.ipynb"), "nightly"), "nightly", on_success=install,
                progress_bar=False)

    status = json.loads(failed.value.result.status.read_text())
    assert status["ok"] is False and status["on_success"] == "failed"
    assert "candidate refused" in status["traceback"]


def test_second_run_is_refused_with_3_and_a_kill_9_frees_the_lock(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, "job_sleep.ipynb")
    first = subprocess.Popen([str(TRADELAB), "nightly", "--config", str(cfg)], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kernel_pid = None
    try:
        pid_file = _wait_for(lambda: next((tmp_path / "runs").glob("*/nightly-*/kernel.pid"), None))
        kernel_pid = int(_wait_for(lambda: pid_file.read_text() or None))
        started = json.loads((pid_file.parent / "status.json").read_text())["started"]

        second = invoke("nightly", "--config", str(cfg))

        assert second.exit_code == 3
        lock = tmp_path / "runs" / ".nightly.lock"
        assert second.stderr.strip().splitlines() == [
            f"error: nightly is already running (pid {first.pid}, started {started}); lock {lock}"]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
        first.wait()
        if kernel_pid:  # the kernel also exits by itself within a second once its parent is gone
            _kill(kernel_pid)
    assert json.loads((pid_file.parent / "status.json").read_text())["ok"] is None  # never finished

    result = run_job(load_config(cfg, "nightly"), "nightly", overrides={"seconds": 0}, progress_bar=False)

    assert result.ok and result.run_dir != pid_file.parent


def test_lock_holder_refuses_a_run_before_any_kernel_starts(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config(tmp_path, "job_ok.ipynb"), "nightly")
    when = datetime(2025, 1, 6, 22, 30, tzinfo=UTC)

    with job_lock(tmp_path / "runs", "nightly", when), pytest.raises(JobLocked) as locked:
        run_job(cfg, "nightly", progress_bar=False)

    assert (locked.value.pid, locked.value.started) == (os.getpid(), "2025-01-06T22:30:00Z")
    assert not list((tmp_path / "runs").glob("*/nightly-*"))


BAD = ("--config", "bad.toml")


@pytest.mark.parametrize(("toml", "args", "message"), [
    ('notebok = "x.ipynb"', BAD, "unknown key 'notebok'; did you mean 'notebook'?"),
    ("[parameters", BAD, "bad TOML"),
    ('notebook = "missing.ipynb"', BAD, "notebook missing.ipynb not found"),
    (None, BAD, "config bad.toml not found"),
    (None, (), "notebook notebooks/nightly_optimize.ipynb not found"),  # no --config: the defaults
    ('notebook = "{ok}"', (*BAD, "-p", "novalue"), "-p 'novalue': expected name=value"),
    ('notebook = "{ok}"', (*BAD, "-p", "run_dir=/tmp"), "'run_dir' is set by the runner"),
    ('notebook = "{ok}"\nkernel = "cobol"', BAD, "no Jupyter kernel named 'cobol'"),
    ('notebook = "{ok}"\ntimeout_per_cell = -1', BAD, "timeout_per_cell must be a positive number"),
])
def test_bad_config_exits_2_with_one_line(tmp_path: Path, monkeypatch, toml, args, message):
    monkeypatch.chdir(tmp_path)
    if toml is not None:
        (tmp_path / "bad.toml").write_text(toml.replace("{ok}", str(FIXTURES / "job_ok.ipynb")) + "\n")

    r = invoke("nightly", *args)

    assert r.exit_code == 2
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "runs").exists()


def test_overrides_parse_json_else_text_and_redact_nested_secrets():
    assert parse_overrides(["n=3", "on=true", "s=abc", 'q="5"', "xs=[1, 2]", "e=a=b", "blank="]) == {
        "n": 3, "on": True, "s": "abc", "q": "5", "xs": [1, 2], "e": "a=b", "blank": ""}
    with pytest.raises(JobConfigError):
        parse_overrides(["bad-name=1"])
    assert redact({"API_Key": "k", "broker": {"secret_token": "t", "url": "u"}, "keys_n": 3, "n": 1}) == {
        "API_Key": "REDACTED", "broker": {"secret_token": "REDACTED", "url": "u"},
        "keys_n": "REDACTED", "n": 1}  # by name only, as asked: keys_n is hidden too


def _wait_for(probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the first run to start its kernel")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_the_nightly_prints_its_runs_summary_and_names_one_it_cannot_read(tmp_path: Path):
    from pipeline.nightly_summary import summarize_params, summary_lines, write_summary
    from tests.kit import params_file
    from tradelab.cli.jobs import _summary

    good, bad, none = (tmp_path / n for n in ("good", "bad", "none"))
    for d in (good, bad, none):
        d.mkdir()
    write_summary(summarize_params(params_file()), good / "summary.json")
    (bad / "summary.json").write_text("{not json")

    assert _summary(good) == summary_lines(summarize_params(params_file()))
    assert _summary(none) == []  # a custom notebook that writes none: the install line has said it all
    [line] = _summary(bad)
    assert line.startswith(f"summary: {bad / 'summary.json'} unreadable: ") and "not a nightly summary" in line
