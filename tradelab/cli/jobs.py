"""``tradelab nightly`` / ``tradelab weekend``: scheduled notebook jobs, a few lines per run for cron logs.

After a nightly run: the run folder, the install step's line, the run's summary (``summary.json``,
``pipeline.nightly_summary``: the verdict, counts, the best candidates and the rule each failed,
the out-of-sample record against the goal; the report opens with the same lines) and the report.

Exit codes: 0 ok, 1 the notebook (or the post-success step) failed, 2 a bad config or option,
3 another run of the same job holds the lock. Scheduling recipes are in SCHEDULING.md beside this file.
"""

from __future__ import annotations

import keyword
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from data_lake import LakeError

from .ui import err, out, user_errors

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", metavar="FILE",
    help="TOML: \\[parameters], notebook, runs_dir, kernel, timeout_per_cell (default: the job's defaults).")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "-p", "--param", metavar="NAME=VALUE",
    help="Notebook parameter, JSON if it parses (3, true, [1,2]) else text; repeat; beats the config.")]


@user_errors
def nightly(config: ConfigOpt = None, param: ParamOpt = None) -> None:
    """Run the nightly optimize notebook into runs/<date>/nightly-<HHMMSS>/ (UTC)."""
    run("nightly", config, param or [])


@user_errors
def weekend(config: ConfigOpt = None, param: ParamOpt = None) -> None:
    """Run the weekend sweep notebook into runs/<date>/weekend-<HHMMSS>/ (UTC)."""
    run("weekend", config, param or [])


def run(job: str, config: Path | None, params: list[str]) -> None:
    """Load the config, run the job and turn its outcome into a printed line and an exit code."""
    from tradelab import jobs

    t0 = time.monotonic()
    installed: list[str] = []
    try:
        cfg = _config(config, job)
        overrides = _paths(job, cfg.parameters, _overrides(params))
        hook = (lambda run_dir: installed.append(_install(run_dir, Path(overrides["params_dir"])))) if job == "nightly" else None
        result = jobs.run_job(cfg, job, overrides=overrides, on_success=hook,
                              progress_bar=sys.stderr.isatty())  # no tqdm noise in cron logs
    except jobs.JobConfigError as exc:
        raise LakeError(str(exc)) from None
    except jobs.JobLocked as exc:
        _error(str(exc))
        raise typer.Exit(3) from None
    except jobs.JobFailed as exc:
        _error(f"{exc}; run folder {exc.result.run_dir}")
        raise typer.Exit(1) from None
    out.print(f"{job} ok in {time.monotonic() - t0:.1f}s: run folder {result.run_dir}",
              highlight=False, soft_wrap=True)
    for line in installed + (_summary(result.run_dir) if job == "nightly" else []):
        out.print(line, highlight=False, soft_wrap=True, markup=False)
    report = result.run_dir / "report.html"
    if report.exists():
        out.print(f"report -> {report}", highlight=False, soft_wrap=True)


def _config(path: Path | None, job: str):
    """``jobs.load_config``, with a folder, an unreadable or a binary --config named as such."""
    from tradelab import jobs

    try:
        cfg = jobs.load_config(path, job)
    except OSError as exc:
        raise LakeError(f"config {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise LakeError(f"config {path}: not UTF-8 text (a TOML file is)") from None
    _no_keywords(cfg.parameters, f"config {path}")
    return cfg


def _overrides(items: list[str]) -> dict:
    """``jobs.parse_overrides``, refusing runaway JSON and names papermill cannot assign (keywords)."""
    from tradelab import jobs

    try:
        values = jobs.parse_overrides(items)
    except RecursionError:
        raise LakeError("-p: a value nests JSON too deeply") from None
    _no_keywords(values, "-p")
    return values


def _no_keywords(params: Mapping[str, object], where: str) -> None:
    for name in params:
        if keyword.iskeyword(name):  # papermill would inject "class = 1": a SyntaxError in the notebook
            raise LakeError(f"{where}: parameter name {name!r} is a Python keyword")


def _path(value: object, name: str) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise LakeError(f"parameter {name} must be a path, got {value!r}")
    return str(Path(value).resolve())


def _paths(job: str, configured: dict, overrides: dict) -> dict:
    """Absolute lake / params paths (relative ones are from the current folder, like every command),
    and the job's name, as notebook parameters: the notebook runs in notebooks/, the install step here."""
    given = {**configured, **overrides}
    out_ = dict(overrides)
    out_["lake"] = _path(given.get("lake") or os.environ.get("TRADELAB_LAKE") or "lake", "lake")
    if job == "nightly":
        out_["params_dir"] = _path(given.get("params_dir") or "params", "params_dir")
    out_["job"] = job
    return out_


def _install(run_dir: Path, params_dir: Path) -> str:
    """The nightly's last step: file the candidate in history and, if promoted, make it current."""
    from pipeline.params_store import install
    from research.params import load

    candidate = run_dir / "params.json"
    if not candidate.exists():  # a custom notebook may not produce params (the default one always does)
        return f"the notebook wrote no {candidate.name}: nothing to install; {params_dir / 'current.json'} unchanged"
    pf = load(candidate)
    hist = install(pf, params_dir)
    current = params_dir / "current.json"
    head = pf.verdict.reasons[0] if pf.verdict.reasons else ""
    if pf.verdict.promoted:
        return f"params PROMOTED ({head}) -> {current}; history {hist.name}"
    if current.exists() and current.read_bytes() == hist.read_bytes():
        return f"params REJECTED ({head}); nothing was in force, so {current} now says flat everywhere"
    return f"params REJECTED ({head}); {current} unchanged; history {hist.name}"


def _summary(run_dir: Path) -> list[str]:
    """The run's summary.json (written by the notebook, beside the report) as a few lines for the log."""
    from pipeline.nightly_summary import SUMMARY_FILE, load_summary, summary_lines

    path = run_dir / SUMMARY_FILE
    if not path.exists():  # a custom notebook may not write one; the install line already said what happened
        return []
    try:
        return summary_lines(load_summary(path))
    except (OSError, ValueError) as exc:
        return [f"summary: {path} unreadable: {exc}"]


def _error(message: str) -> None:
    # markup=False: the message quotes notebook source and exception text
    err.print("error:", style="bold red", end=" ")
    err.print(message, markup=False, highlight=False, soft_wrap=True)

