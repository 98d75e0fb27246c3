"""Scheduled notebook jobs (nightly optimize, weekend sweep): one papermill run in its own run folder.

A job is a parameterized notebook run unattended by cron or a systemd timer, so the runner's work is
what nobody is there to do by hand: give each run a fresh folder (``runs/<date>/<job>-<HHMMSS>/``,
UTC) holding the executed notebook, an HTML export and ``status.json``; refuse to start while the
previous run of the same job still holds its lock; and make a failure loud (the failing cell named)
while keeping the partial notebook for the post-mortem. The lock is an ``flock`` on
``runs/.<job>.lock``: the kernel frees it when the holder dies, so a run killed with -9 never blocks
the next one, and no stale-pid guessing is needed. ``status.json`` is written when a run starts
(``ok: null``) and again when it ends, so a run that was killed shows as never finished.

Parameters named like a secret (key, secret, token, password) reach the kernel unchanged but are
written as REDACTED in ``status.json`` and in the saved notebook and HTML, where papermill would
otherwise have recorded them.

Relative paths (``notebook``, ``runs_dir``) are taken from the working directory (the project root
under cron / systemd). The notebook runs with its own folder as working directory, as in JupyterLab,
and gets the absolute ``run_dir`` as a parameter to write its outputs into.
"""

from __future__ import annotations

import difflib
import errno
import fcntl
import json
import os
import re
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from data_lake.atomic import atomic_write_bytes

DEFAULT_NOTEBOOKS = {"nightly": Path("notebooks/nightly_optimize.ipynb"),
                     "weekend": Path("notebooks/weekend_sweep.ipynb")}
CONFIG_KEYS = ("notebook", "runs_dir", "kernel", "timeout_per_cell", "parameters")
SECRET_WORDS = ("key", "secret", "token", "password")
REDACTED = "REDACTED"


class JobError(Exception):
    """Base class of the job runner's errors."""


class JobConfigError(JobError, ValueError):
    """A config the user can fix: bad TOML, an unknown key, a missing notebook, a bad -p override."""


class JobLocked(JobError):
    """Another run of the same job holds the lock (``pid`` and ``started`` name the holder)."""

    def __init__(self, job: str, lock: Path, pid: int | None, started: str | None):
        self.job, self.lock, self.pid, self.started = job, lock, pid, started
        holder = f"pid {pid}, started {started}" if pid else "holder unknown"
        super().__init__(f"{job} is already running ({holder}); lock {lock}")


@dataclass(frozen=True, slots=True)
class FailedCell:
    """The cell a notebook stopped at. ``index`` counts the cells as run (with the injected parameters)."""

    index: int
    execution_count: int | None
    first_line: str
    ename: str
    evalue: str


@dataclass(frozen=True, slots=True)
class JobConfig:
    """What to run and where; ``parameters`` go to the notebook (``run_dir`` is added by the runner)."""

    notebook: Path
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    runs_dir: Path = Path("runs")
    kernel: str = "python3"
    timeout_per_cell: float | None = None


@dataclass(frozen=True, slots=True)
class JobResult:
    """One finished run: its folder, verdict, ``status.json`` and, on failure, the one-line reason."""

    run_dir: Path
    ok: bool
    status: Path
    error: str | None = None
    failed_cell: FailedCell | None = None


class JobFailed(JobError):
    """The notebook (or the on_success hook) failed; ``result`` is the kept run, ``cell`` the failing cell."""

    def __init__(self, result: JobResult):
        self.result, self.cell = result, result.failed_cell
        super().__init__(result.error)


def load_config(path: Path | None, job: str) -> JobConfig:
    """Read a job's TOML config (None = defaults) and check it before anything runs."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise JobConfigError(f"config {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise JobConfigError(f"config {path}: bad TOML: {exc}") from None
    where = f"config {path}" if path else f"{job} defaults"
    for key in raw:
        if key not in CONFIG_KEYS:
            near = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise JobConfigError(f"{where}: unknown key {key!r}; {hint}allowed: {', '.join(CONFIG_KEYS)}")
    for key in ("notebook", "runs_dir", "kernel"):
        if key in raw and not isinstance(raw[key], str):
            raise JobConfigError(f"{where}: {key} must be a string, got {raw[key]!r}")
    params = raw.get("parameters", {})
    if not isinstance(params, dict):
        raise JobConfigError(f"{where}: 'parameters' must be a table ([parameters])")
    for name in params:
        _check_param_name(name, where)
    notebook = raw.get("notebook", DEFAULT_NOTEBOOKS.get(job))
    if notebook is None:
        raise JobConfigError(f"{where}: job {job!r} has no default notebook; set 'notebook'")
    notebook = Path(notebook)
    if not notebook.is_file():
        raise JobConfigError(f"{where}: notebook {notebook} not found (relative paths start at {Path.cwd()})")
    timeout = raw.get("timeout_per_cell")
    if timeout is not None and (type(timeout) not in (int, float) or timeout <= 0):
        raise JobConfigError(f"{where}: timeout_per_cell must be a positive number of seconds, "
                             f"got {timeout!r}")
    kernel = raw.get("kernel", "python3")
    _check_kernel(kernel, where)
    return JobConfig(notebook=notebook, parameters=MappingProxyType(dict(params)),
                     runs_dir=Path(raw.get("runs_dir", "runs")), kernel=kernel, timeout_per_cell=timeout)


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``-p name=value`` pairs; a value that parses as JSON is taken as such (5, true, [1,2]), else text."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise JobConfigError(f"-p {item!r}: expected name=value")
        _check_param_name(name, "-p")
        try:
            out[name] = json.loads(text)
        except json.JSONDecodeError:
            out[name] = text
    return out


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every value whose name holds key/secret/token/password replaced (nested tables too)."""
    return {k: REDACTED if any(w in k.lower() for w in SECRET_WORDS)
            else redact(v) if isinstance(v, Mapping) else v for k, v in params.items()}


def run_job(config: JobConfig, job: str, *, overrides: Mapping[str, Any] | None = None,
            on_success: Callable[[Path], None] | None = None, now: datetime | None = None,
            progress_bar: bool = True) -> JobResult:
    """Run one job under its lock; return the result, or raise JobLocked / JobFailed.

    ``on_success(run_dir)`` runs after the notebook succeeded and its HTML is written, still under the
    lock (so the next run cannot race it), and never after a failure. If it raises, the run is
    recorded as failed and JobFailed is raised from the hook's exception. ``now`` (a timezone-aware
    datetime) fixes the run folder's name and the recorded start time (tests).
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", job):
        raise JobConfigError(f"job name {job!r}: use letters, digits, - and _")
    params = {**config.parameters, **(overrides or {})}
    if "run_dir" in params:
        raise JobConfigError("parameter 'run_dir' is set by the runner; remove it")
    started = (now or datetime.now(UTC)).astimezone(UTC)
    runs = config.runs_dir.resolve()
    with job_lock(runs, job, started):
        run_dir = new_run_dir(runs, job, started)
        params["run_dir"] = str(run_dir)
        status = _Status(run_dir, job, config, params, started)
        status.write()
        error, cell, tb = _execute(config, job, run_dir, params, progress_bar)
        hook = None if on_success is None else "skipped"
        if error is None and on_success is not None:
            try:
                on_success(run_dir)
                hook = "ok"
            except Exception as exc:
                error = f"{job}: on_success hook failed: {type(exc).__name__}: {_one_line(exc)}"
                result = status.finish(error, hook="failed", tb=traceback.format_exc())
                raise JobFailed(result) from exc
        result = status.finish(error, cell=cell, hook=hook, tb=tb)
        if not result.ok:
            raise JobFailed(result)
        return result


@contextmanager
def job_lock(runs_dir: Path, job: str, started: datetime) -> Iterator[Path]:
    """Hold ``runs_dir/.<job>.lock`` exclusively (non-blocking) with our pid and start time written in it."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / f".{job}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the kernel (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = _read_holder(fd)
            raise JobLocked(job, path, holder.get("pid"), holder.get("started")) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": _iso(started)}).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing drops the flock; so does the process dying


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except ValueError:  # the holder is between taking the lock and writing its pid
        return {}


def new_run_dir(runs: Path, job: str, started: datetime, day: date | None = None) -> Path:
    """A new ``runs/<day>/<job>-<HHMMSS>`` folder (``day``: the started date unless given)."""
    base = runs / (day or started.date()).isoformat() / f"{job}-{started.strftime('%H%M%S')}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):  # two runs in one second (tests, a quick retry) get -2, -3, ...
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise JobError(f"no free run folder name for {base}")


def _execute(config: JobConfig, job: str, run_dir: Path, params: dict[str, Any],
             progress_bar: bool) -> tuple[str | None, FailedCell | None, str | None]:
    """Run the notebook into run_dir and export HTML; return (error, failing cell, traceback), all None if ok.

    A failure keeps the notebook as far as it got (papermill saves it before raising).
    """
    import papermill as pm  # slow to import (nbformat + jsonschema): only once we hold the lock

    out_nb = run_dir / f"{job}.ipynb"
    error, cell, tb = None, None, None
    try:
        pm.execute_notebook(str(config.notebook), str(out_nb), parameters=params, kernel_name=config.kernel,
                            cwd=str(config.notebook.resolve().parent), progress_bar=progress_bar,
                            execution_timeout=config.timeout_per_cell)
    except pm.PapermillExecutionError as exc:
        cell = FailedCell(exc.cell_index, exc.exec_count, _first_line(exc.source), exc.ename,
                          _one_line(exc.evalue))
    except Exception as exc:  # a cell timeout, a dead kernel, a kernel that would not start
        cell, tb = _cut_off_cell(out_nb, exc), traceback.format_exc()
        error = f"{job} failed: {type(exc).__name__}: {_first_line(str(exc))}"
    if cell is not None:
        error = (f"{job} failed at cell {cell.index} (In [{cell.execution_count}]) {cell.first_line!r}: "
                 f"{cell.ename}: {cell.evalue}")
    if out_nb.exists():
        try:
            _finish_notebook(out_nb, run_dir / f"{job}.html", params, config.kernel)
        except Exception as exc:
            error = error or f"{job}: HTML export failed: {type(exc).__name__}: {_one_line(exc)}"
            tb = tb or traceback.format_exc()
    return error, cell, tb


def _cut_off_cell(nb_path: Path, exc: Exception) -> FailedCell | None:
    """The cell a timeout or a dying kernel cut off (papermill names none, but the cell holds an error)."""
    import nbformat

    if not nb_path.exists():
        return None
    for i, cell in enumerate(nbformat.read(nb_path, as_version=4).cells):
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return FailedCell(i, cell.get("execution_count"), _first_line(cell.source), type(exc).__name__,
                              _first_line(str(exc)))
    return None


def _finish_notebook(nb_path: Path, html_path: Path, params: Mapping[str, Any], kernel: str) -> None:
    """Redact secrets in the injected-parameters cell and metadata, then export HTML."""
    import nbformat
    from nbconvert import HTMLExporter
    from papermill.translators import translate_parameters

    nb = nbformat.read(nb_path, as_version=4)
    safe = redact(params)
    if safe != params:  # papermill wrote the raw values into the notebook; keep them out of the files
        nb.metadata.setdefault("papermill", {})["parameters"] = safe
        for cell in nb.cells:
            if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                cell.source = translate_parameters(kernel, nb.metadata.get("kernelspec", {}).get("language"),
                                                   safe, "Parameters")
        atomic_write_bytes(nbformat.writes(nb).encode(), nb_path)
    body, _ = HTMLExporter(exclude_input_prompt=True).from_notebook_node(nb)
    atomic_write_bytes(body.encode(), html_path)


class _Status:
    """``status.json``: written when the run starts (ok null, so a killed run shows as never finished)."""

    def __init__(self, run_dir: Path, job: str, config: JobConfig, params: Mapping[str, Any],
                 started: datetime):
        self.run_dir, self.path, self.started = run_dir, run_dir / "status.json", started
        self.t0 = time.monotonic()
        self.data: dict[str, Any] = {
            "job": job, "ok": None, "exit_code": None, "started": _iso(started), "ended": None,
            "duration_s": None, "pid": os.getpid(), "notebook": str(config.notebook.resolve()),
            "kernel": config.kernel, "parameters": redact(params), "error": None, "failed_cell": None,
            "on_success": None, "traceback": None}

    def write(self) -> None:
        atomic_write_bytes((json.dumps(self.data, indent=2, default=str) + "\n").encode(), self.path)

    def finish(self, error: str | None, *, cell: FailedCell | None = None, hook: str | None = None,
               tb: str | None = None) -> JobResult:
        """Record the verdict (ok when ``error`` is None) and the end time; return the result."""
        duration = time.monotonic() - self.t0
        ok = error is None
        self.data.update(ok=ok, exit_code=0 if ok else 1, error=error, on_success=hook,
                         ended=_iso(self.started + timedelta(seconds=duration)),
                         duration_s=round(duration, 3),
                         failed_cell=asdict(cell) if cell else None, traceback=tb)
        self.write()
        return JobResult(self.run_dir, ok, self.path, error, cell)


def _check_param_name(name: str, where: str) -> None:
    if not name.isidentifier():
        raise JobConfigError(f"{where}: parameter name {name!r} is not a Python identifier")


def _check_kernel(name: str, where: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise JobConfigError(f"{where}: no Jupyter kernel named {name!r} (see: jupyter kernelspec list)") \
            from None


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return _one_line(lines[0]) if lines else ""


def _one_line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
